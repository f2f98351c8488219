import Foundation
public import LifeboatAPI
import LifeboatCapture
import LifeboatCluster
import LifeboatCore
import LifeboatJournal

/// A clustered workload's `/v1/status` entry (Docs/agent.md).
extension WorkloadSupervisor {
    /// The role status shows: a primary whose fencing deadline has passed is `fenced` at
    /// once, before its demotion has run (it acknowledges nothing any more). Seen on the lab:
    /// a primary woken from SIGSTOP answered one status request as `primary` in the
    /// milliseconds before its fencing check ran, while the new primary served.
    static func reportedRole(_ role: WorkloadRole, fenceReason: String?) -> WorkloadRole {
        role == .primary && fenceReason != nil ? .fenced : role
    }

    /// The clustered status (`/v1/status` of an agent with a cluster).
    public var status: ClusteredWorkloadStatus {
        let current = self.current
        let snapshot = current.state
        let last = writer.lastPosition
        let peers = (snapshot.group?.peers ?? []).map { progress in
            ClusteredWorkloadStatus.Peer(
                host: progress.host, connected: progress.connected, acked: progress.acked.map { "\($0)" },
                lag: progress.acked.map { (last?.seq ?? 0) &- $0.seq }, bytesSent: progress.bytesSent,
                lastError: progress.lastError)
        }
        let serviceState: String
        if let service = snapshot.service {
            serviceState = service.isRunning ? (snapshot.role == .primary ? "running" : "starting") : "exited"
        } else {
            serviceState = "stopped"
        }
        return ClusteredWorkloadStatus(
            name: name,
            role: WorkloadSupervisor.reportedRole(snapshot.role, fenceReason: cluster?.leases.fenceReason()),
            epoch: epoch,
            position: last.map { "\($0)" },
            durablePosition: writer.durablePosition.map { "\($0)" }, oldestSeq: writer.firstSeq,
            leaseHolder: current.lease?.holder,
            leaseExpiresIn: current.lease.map { $0.expiresAt - clock.wall },
            replication: configuration.replication.mode.rawValue, peers: peers,
            service: ClusteredWorkloadStatus.Service(state: serviceState, pid: snapshot.service?.pid),
            newestSnapshot: snapshot.snapshots?.lastReport.map {
                SnapshotReference(snapshot: $0.snapshot, position: $0.position)
            }
                ?? snapshot.lastRecovery.flatMap { recovery in
                    recovery.snapshot.map { SnapshotReference(snapshot: $0, position: recovery.snapshotPosition) }
                },
            lastSnapshot: snapshot.snapshots?.lastReport, lastRecovery: snapshot.lastRecovery, alert: current.alert,
            mounted: snapshot.runtime?.mount.isServing ?? false, coordinatorError: coordinatorError,
            standby: standbyStatus)
    }
}
