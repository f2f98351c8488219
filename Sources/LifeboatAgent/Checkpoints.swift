import CLifeboatPosix
import Foundation
import Glibc
import LifeboatCapture
import LifeboatCore
import LifeboatJournal
import LifeboatSystem

/// The backing dir's flush points and the agent's "running" marker, kept in the journal dir.
///
/// fsync on the data dir makes a change durable in the journal only; the backing dir is
/// flushed in the background (`syncfs`) and the journal position it covers is written to
/// `checkpoint`. While the agent runs, `running` holds the host's boot id. A `running` left
/// behind means an unclean stop (of the agent or the host); `UncleanStart` then rebuilds the
/// backing dir from the newest snapshot and the journal before it is served again.
enum Checkpoints {
    static func bootID() -> String {
        (try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "unknown"
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

    /// Writes `name` in `directory` durably (`FileIO.writeFileAtomically`).
    static func writeAtomically(_ directory: String, _ name: String, _ text: String) throws {
        do {
            try FileIO.real.writeFileAtomically(directory: directory, name: name, bytes: Array(text.utf8), mode: 0o600)
        } catch {
            throw LifeboatError(
                .operationFailed, "cannot write \(directory)/\(name): \(errnoText(error.code))", underlying: error)
        }
    }
}
