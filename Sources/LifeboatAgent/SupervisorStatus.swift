import Foundation
import LifeboatCapture
import LifeboatCluster
import LifeboatCore
import LifeboatJournal

/// A clustered workload's `/v1/status` entry (Docs/agent.md), and the one of a standalone one.
extension WorkloadSupervisor {
    public struct Status: Codable, Sendable {
        public var name: String
        public var role: WorkloadRole
        public var epoch: UInt64
        public var position: String?
        public var durablePosition: String?
        public var oldestSeq: UInt64
        public var leaseHolder: String?
        public var leaseExpiresIn: Double?
        public var replication: String
        public var peers: [PeerStatus]
        public var service: ServiceStatus
        /// The newest snapshot this host knows of: its own last one, else the one it recovered from.
        public var newestSnapshot: SnapshotReference?
        /// The report of the last snapshot this host took.
        public var lastSnapshot: SnapshotReport?
        public var lastRecovery: RecoveryReport?
        public var alert: String?
        public var mounted: Bool

        enum CodingKeys: String, CodingKey {
            case name, role, epoch, position, replication, peers, service, alert, mounted
            case durablePosition = "durable_position"
            case oldestSeq = "oldest_seq"
            case leaseHolder = "lease_holder"
            case leaseExpiresIn = "lease_expires_in"
            case newestSnapshot = "newest_snapshot"
            case lastSnapshot = "last_snapshot"
            case lastRecovery = "last_recovery"
        }
    }

    public struct PeerStatus: Codable, Sendable {
        public var host: String
        public var connected: Bool
        public var acked: String?
        public var lag: UInt64?
        public var bytesSent: UInt64
        public var lastError: String?

        enum CodingKeys: String, CodingKey {
            case host, connected, acked, lag
            case bytesSent = "bytes_sent"
            case lastError = "last_error"
        }
    }

    public struct SnapshotReference: Codable, Sendable {
        public var snapshot: String
        public var position: String?
    }

    public struct ServiceStatus: Codable, Sendable {
        public var state: String
        public var pid: Int32?
    }

    /// The clustered status (`/v1/status` of an agent with a cluster).
    public var status: Status {
        let current = self.current
        let snapshot = current.state
        let last = writer.lastPosition
        let peers = (snapshot.group?.peers ?? []).map { progress in
            PeerStatus(
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
        return Status(
            name: name, role: snapshot.role, epoch: epoch,
            position: last.map { "\($0)" },
            durablePosition: writer.durablePosition.map { "\($0)" }, oldestSeq: writer.firstSeq,
            leaseHolder: current.lease?.holder,
            leaseExpiresIn: current.lease.map { $0.expiresAt - clock.wall },
            replication: configuration.replication.mode.rawValue, peers: peers,
            service: ServiceStatus(state: serviceState, pid: snapshot.service?.pid),
            newestSnapshot: snapshot.snapshots?.lastReport.map {
                SnapshotReference(snapshot: $0.snapshot, position: $0.position)
            }
                ?? snapshot.lastRecovery.flatMap { recovery in
                    recovery.snapshot.map { SnapshotReference(snapshot: $0, position: recovery.snapshotPosition) }
                },
            lastSnapshot: snapshot.snapshots?.lastReport, lastRecovery: snapshot.lastRecovery, alert: current.alert,
            mounted: snapshot.runtime?.mount.isServing ?? false)
    }
}
