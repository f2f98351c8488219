import LifeboatCluster
import LifeboatCore
import LifeboatRepository

/// What a recovery, a warm copy and an unclean start share: which snapshot to start from, and
/// restoring it whole.
extension Repository {
    /// The newest snapshot of `workload` whose position is on `history`, or nil. One past where
    /// a later epoch began (an old primary's, committed as it lost the lease) holds records the
    /// workload does not have: it is passed over.
    func newestSnapshot(of workload: String, on history: [EpochStart]) throws -> SnapshotRecord? {
        try listSnapshots().last {
            guard $0.snapshot.workload == workload, let position = $0.snapshot.position else { return false }
            return history.contains(journalEnd: position)
        }
    }

    /// Restores `snapshot` into `target`; throws (integrity) when any file did not restore, so a
    /// partial tree is never taken for the snapshot.
    func restoreWhole(_ snapshot: SnapshotRecord, into target: String) throws -> RestoreResult {
        let restored = try restore(snapshot: snapshot, target: target)
        if let failure = restored.failures.first {
            throw LifeboatError(
                .integrity, "snapshot \(snapshot.id.short) did not restore whole: \(failure.path): \(failure.error)")
        }
        return restored
    }
}
