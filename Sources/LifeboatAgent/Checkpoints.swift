import CLifeboatPosix
import Foundation
import Glibc
import LifeboatCapture
import LifeboatCore
import LifeboatJournal

/// The backing dir's flush points and the agent's "running" marker, kept in the journal dir.
///
/// fsync on the data dir makes a change durable in the journal only; the backing dir is
/// flushed in the background (`syncfs`) and the journal position it covers is written to
/// `checkpoint`. While the agent runs, `running` holds the host's boot id. If the agent finds
/// `running` from another boot, the host went down with the agent: backing files may lack
/// changes after the checkpoint, and the workload must be rebuilt from its snapshot and
/// journal before it is served again.
enum Checkpoints {
    static func bootID() -> String {
        (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "unknown"
    }

    /// Refuses to start when the host crashed while the agent served this workload and the
    /// backing dir was not flushed through the journal's end.
    static func checkCleanStart(_ workload: WorkloadConfiguration, journalEnd: Position?) throws {
        let marker = workload.journalDir + "/running"
        guard let previous = try? String(contentsOfFile: marker, encoding: .utf8) else { return }
        let boot = previous.trimmingCharacters(in: .whitespacesAndNewlines)
        if boot == bootID() { return }  // the agent died, the host did not: the page cache survived
        let checkpoint = read(workload.journalDir)
        if let journalEnd, checkpoint.map({ $0 < journalEnd }) ?? true {
            throw LifeboatError(
                .operationFailed,
                "workload \(workload.name): the host restarted while the agent was running; \(workload.backingDir) is flushed only through \(checkpoint.map { "\($0)" } ?? "no checkpoint") but the journal reaches \(journalEnd)",
                hint:
                    "rebuild the data: `lifeboat restore --repo REPO NEWEST_SNAPSHOT --target NEW_DIR --journal \(workload.journalDir)`, then use NEW_DIR as backing_dir (see Docs/capture.md)"
            )
        }
    }

    static func markRunning(_ workload: WorkloadConfiguration) throws {
        try writeAtomically(workload.journalDir, "running", bootID() + "\n")
    }

    static func markStopped(_ workload: WorkloadConfiguration) {
        unlink(workload.journalDir + "/running")
        try? JournalWriter.syncDirectory(workload.journalDir)
    }

    /// Flushes the backing dir's filesystem and records `position` as covered.
    static func flush(_ workload: WorkloadConfiguration, through position: Position) throws {
        let fd = open(workload.backingDir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw LifeboatError(.operationFailed, "cannot open \(workload.backingDir) to flush it") }
        defer { close(fd) }
        if lifeboat_syncfs(fd) != 0 {
            throw LifeboatError(
                .operationFailed, "flushing \(workload.backingDir) failed: \(String(cString: strerror(errno)))")
        }
        try writeAtomically(workload.journalDir, "checkpoint", "\(position)\n")
    }

    static func read(_ journalDir: String) -> Position? {
        guard let text = try? String(contentsOfFile: journalDir + "/checkpoint", encoding: .utf8) else { return nil }
        return Position(parsing: text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    static func writeAtomically(_ directory: String, _ name: String, _ text: String) throws {
        let temp = directory + "/." + name + ".tmp"
        let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw LifeboatError(.operationFailed, "cannot write \(temp): \(String(cString: strerror(errno)))")
        }
        let bytes = Array(text.utf8)
        let wrote = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd) == 0
        close(fd)
        guard wrote == bytes.count, synced, rename(temp, directory + "/" + name) == 0 else {
            throw LifeboatError(
                .operationFailed, "cannot write \(directory)/\(name): \(String(cString: strerror(errno)))")
        }
        try JournalWriter.syncDirectory(directory)
    }
}
