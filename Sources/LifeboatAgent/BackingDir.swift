import Foundation
import Glibc
public import LifeboatCore

/// What a workload's backing dir holds, as far as the cluster is concerned.
public enum BackingState: String, Sendable, Equatable {
    /// Nothing: this host starts from a snapshot and the journal.
    case empty
    /// Files this host never captured (an `initdb`, a copied database): no snapshot and no
    /// journal covers them, so they are the only copy and must never be deleted.
    case seeded
    /// Files under capture: the marker says this host mounted them, so the snapshots and the
    /// journal cover them.
    case captured
}

/// The backing dir's bookkeeping: the capture marker in the journal dir, emptying the dir for
/// a restore, and keeping seed data aside instead of deleting it.
enum BackingDir {
    /// The marker's name in the journal dir: this host's backing dir is under capture.
    static let markerName = "backing-captured"

    /// What `workload`'s backing dir holds. Throws when it cannot be listed (never "empty").
    static func state(of workload: WorkloadConfiguration) throws -> BackingState {
        if access(workload.journalDir + "/" + markerName, F_OK) == 0 { return .captured }
        if errno != ENOENT {
            throw LifeboatError(
                .operationFailed,
                "cannot read \(workload.journalDir)/\(markerName): \(String(cString: strerror(errno)))",
                hint: "check the journal dir's disk")
        }
        return try list(workload.backingDir).isEmpty ? .empty : .seeded
    }

    /// Records (atomically, the journal dir fsynced) that the backing dir is under capture:
    /// from here on the snapshots and the journal cover what it holds.
    static func markCaptured(_ workload: WorkloadConfiguration) throws {
        if access(workload.journalDir + "/" + markerName, F_OK) == 0 { return }
        try Checkpoints.writeAtomically(workload.journalDir, markerName, "\(workload.backingDir)\n")
    }

    /// The names in `directory`. Throws when it cannot be listed.
    static func list(_ directory: String) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw LifeboatError(
                .operationFailed, "cannot list \(directory): \(reason(error)); nothing in it was changed",
                hint: "check the directory and its disk")
        }
    }

    /// Removes everything inside `directory` (not the directory itself). A listing that fails
    /// throws before anything is removed: it is never read as "empty".
    static func clear(_ directory: String) throws {
        for name in try list(directory) {
            try FileManager.default.removeItem(atPath: directory + "/" + name)
        }
    }

    /// Moves the backing dir's files aside (the dir is renamed to `BACKING.seed-TIME` next to
    /// it, and an empty dir with the same mode and owner takes its place). Returns the new path.
    static func moveAside(_ directory: String, now: Date = Date()) throws -> String {
        let attributes: [FileAttributeKey: Any]
        do {
            attributes = try FileManager.default.attributesOfItem(atPath: directory)
        } catch {
            throw LifeboatError(.operationFailed, "cannot read the attributes of \(directory): \(reason(error))")
        }
        let mode = mode_t((attributes[.posixPermissions] as? NSNumber)?.uint32Value ?? 0o755)
        let uid = uid_t((attributes[.ownerAccountID] as? NSNumber)?.uint32Value ?? 0)
        let gid = gid_t((attributes[.groupOwnerAccountID] as? NSNumber)?.uint32Value ?? 0)
        let stamp = Int(now.timeIntervalSince1970)
        var aside = "\(directory).seed-\(stamp)"
        var n = 1
        while access(aside, F_OK) == 0 {
            n += 1
            aside = "\(directory).seed-\(stamp)-\(n)"
        }
        guard rename(directory, aside) == 0 else {
            throw LifeboatError(
                .operationFailed,
                "cannot move the uncovered files of \(directory) aside to \(aside): \(String(cString: strerror(errno))); nothing was deleted",
                hint: "move them out of the backing dir yourself (or take a snapshot of them), then restart the agent")
        }
        guard mkdir(directory, mode & 0o7777) == 0 else {
            throw LifeboatError(
                .operationFailed, "cannot create \(directory) again: \(String(cString: strerror(errno)))",
                hint: "the files are in \(aside)")
        }
        _ = chown(directory, uid, gid)
        _ = chmod(directory, mode & 0o7777)
        let parent = (directory as NSString).deletingLastPathComponent
        let fd = open(parent.isEmpty ? "/" : parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            _ = fsync(fd)
            close(fd)
        }
        return aside
    }

    private static func reason(_ error: any Error) -> String {
        if let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? NSError,
            underlying.domain == NSPOSIXErrorDomain
        {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return (error as NSError).localizedDescription
    }
}
