import LifeboatCore
import Logging

/// A planned handover of the primary role with no loss: stop the service, unmount, wait until
/// the target holds every record, hand the lease to it. When the target does not catch up in
/// time, the service is started again here and nothing changes.
struct Switchover {
    let workload: String
    let host: String
    let leases: LeaseKeeper
    let logger: Logger
    /// How long the target may take to receive the last records.
    var catchUpTimeout: Double = 30

    /// The peer to hand over to: `target` (it must be a connected peer), else the connected
    /// peer that acknowledged the most.
    static func chooseTarget(_ target: String?, among peers: [GroupPeer], workload: String) throws -> String {
        if let target {
            guard let peer = peers.first(where: { $0.host == target }) else {
                throw LifeboatError(
                    .badInput, "\(target) is not a peer of workload \(workload)",
                    hint: "peers: \(peers.map(\.host).joined(separator: ", "))")
            }
            guard peer.connected else {
                throw LifeboatError(.operationFailed, "peer \(target) is not connected; it cannot take over now")
            }
            return target
        }
        guard let best = peers.filter(\.connected).max(by: { ($0.acked?.seq ?? 0) < ($1.acked?.seq ?? 0) }) else {
            throw LifeboatError(.operationFailed, "no connected peer can take workload \(workload) over")
        }
        return best.host
    }

    /// Runs the switchover to `target` (nil: the best peer). `stopServing` stops the service
    /// and unmounts; `lastSeq` is read after it (nothing is written any more);
    /// `resumeServing` mounts and starts the service again when the target did not catch up.
    /// Returns the host that holds the lease now; on a throw this host is still primary.
    func run(
        to target: String?, group: any ReplicationProgress, lastSeq: () -> UInt64, stopServing: () -> Void,
        resumeServing: () throws -> Void
    ) throws -> (host: String, last: UInt64) {
        let chosen = try Switchover.chooseTarget(target, among: group.peers, workload: workload)
        logger.info("switchover to \(chosen): stopping the service")
        stopServing()
        let last = lastSeq()
        guard group.waitReplicatedBy(host: chosen, seq: last, timeout: catchUpTimeout) else {
            logger.warning("\(chosen) did not catch up; the service stays here")
            try resumeServing()
            throw LifeboatError(
                .operationFailed,
                "\(chosen) did not receive every record within \(Int(catchUpTimeout)) s; nothing changed")
        }
        try leases.handOver(to: chosen)
        group.stop()
        return (chosen, last)
    }
}
