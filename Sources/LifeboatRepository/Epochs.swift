import Glibc
public import LifeboatCore
import LifeboatSystem

/// Fencing in the repository: each workload's newest epoch, announced by every new primary
/// before it mounts, in `epochs/WORKLOAD`. A snapshot stamped with an older epoch is refused,
/// so a primary that lost its lease cannot commit one after its successor started.
extension Repository {
    var epochsDir: String { paths.root + "/epochs" }

    /// The newest epoch announced for `workload` (0 when none was).
    ///
    /// Only a missing file (ENOENT) means "none announced"; any other failure to look (EIO,
    /// EACCES on a flaky volume) throws, so a commit is refused rather than left unfenced.
    public func fencingEpoch(workload: String) throws -> UInt64 {
        let path = epochsDir + "/" + workload
        let announced: Bool
        do {
            announced = try io.exists(path)
        } catch {
            throw LifeboatError(
                error, action: "looking for the announced epoch in",
                hint: "the repository cannot tell whether a newer primary announced itself; fix the volume and retry")
        }
        guard announced else { return 0 }
        let text = String(decoding: try Posix.readFile(path), as: UTF8.self)
        guard let epoch = UInt64(String(text.filter { !$0.isWhitespace })) else {
            throw LifeboatError(
                .integrity, "\(path) does not hold an epoch", hint: "write the workload's epoch into it")
        }
        return epoch
    }

    /// Records that a primary of `workload` runs under `epoch` now; never lowers it.
    public func announceEpoch(_ epoch: UInt64, workload: String) throws {
        if mkdir(epochsDir, 0o755) != 0 && errno != EEXIST { throw ioError(errno, "creating", epochsDir) }
        guard epoch > (try fencingEpoch(workload: workload)) else { return }
        try writeFileAtomically(directory: epochsDir, name: workload, bytes: Array("\(epoch)\n".utf8), crashPrefix: nil)
    }

    /// Throws when a snapshot of `workload` stamped with `epoch` must not be committed: a
    /// newer primary announced itself. Epoch 0 (offline backups) is never fenced.
    public func checkEpoch(_ epoch: UInt64, workload: String) throws {
        guard epoch > 0 else { return }
        let newest = try fencingEpoch(workload: workload)
        if epoch < newest {
            throw LifeboatError(
                .operationFailed,
                "snapshot of \(workload) at epoch \(epoch) refused: a primary of epoch \(newest) already announced itself in the repository (this host was fenced)"
            )
        }
    }
}
