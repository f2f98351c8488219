import LifeboatAPI
import LifeboatCluster
import LifeboatCore
import Logging

/// Taking a workload's lease and recovering under it: the compare-and-swap with the next
/// epoch, the report's first parts (detection, lease), the recovery, and on its failure the
/// immediate release of the lease and the candidacy's backoff.
struct Takeover {
    let leases: LeaseKeeper
    let candidacy: FailoverCandidacy
    let clock: any AgentClock
    let logger: Logger

    enum Outcome {
        /// Another host was faster (the compare-and-swap lost), or the coordinator failed.
        case notTaken
        /// Recovered: this host is primary now.
        case recovered(RecoveryReport)
        /// Took the lease of `epoch`, but the recovery failed; the lease is released.
        case failed(epoch: UInt64, error: any Error)
    }

    /// Takes the lease after `previous` (nil: bootstrap) and runs `recover` under it.
    /// `taken` is told the lease and the report right after the take, before the recovery.
    func run(
        previous: Lease?, kind: RecoveryKind, acceptedEpoch: UInt64, journalEpoch: UInt64,
        taken: (Lease) -> Void, recover: (Lease, inout RecoveryReport) throws -> Void
    ) -> Outcome {
        let detected = clock.wall
        let leaseStart = clock.monotonic
        let lease: Lease?
        do {
            lease = try leases.acquire(previous: previous, acceptedEpoch: acceptedEpoch, journalEpoch: journalEpoch)
        } catch {
            logger.warning("cannot write the lease: \(error)")
            return .notTaken
        }
        guard let lease else { return .notTaken }  // another host was faster
        candidacy.tookLease()
        var report = RecoveryReport(epoch: lease.epoch, kind: kind, startedAt: detected)
        report.detectionSeconds = kind == .failover ? max(0, detected - (previous?.expiresAt ?? detected)) : 0
        report.leaseSeconds = clock.monotonic - leaseStart
        taken(lease)
        do {
            try recover(lease, &report)
            return .recovered(report)
        } catch {
            candidacy.recoveryFailed()
            logger.error(
                "recovery at epoch \(lease.epoch) failed: \(error); releasing the lease (this host waits \(fmt(2 * leases.ttl)) s before trying again)"
            )
            leases.release(epoch: lease.epoch)
            return .failed(epoch: lease.epoch, error: error)
        }
    }
}
