public import LifeboatCore

/// What `GET /v1/status` answers: a clustered agent's status or a standalone one's.
///
/// Encodes as the wrapped value alone (no tag); decoding reads a clustered status when the
/// body has one (`coordinator`, `peers`), else a standalone one.
public enum AgentStatus: Codable, Sendable, Equatable {
    case cluster(ClusterStatus)
    case standalone(StandaloneStatus)

    /// The host the agent runs on.
    public var host: String {
        switch self {
        case .cluster(let status): status.host
        case .standalone(let status): status.host
        }
    }

    /// The other hosts of the cluster (none for a standalone agent).
    public var peers: [ClusterStatus.Peer] {
        switch self {
        case .cluster(let status): status.peers
        case .standalone: []
        }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let cluster = try? container.decode(ClusterStatus.self) {
            self = .cluster(cluster)
        } else {
            self = .standalone(try container.decode(StandaloneStatus.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .cluster(let status): try container.encode(status)
        case .standalone(let status): try container.encode(status)
        }
    }
}

/// The status of an agent with a cluster: its peers and every clustered workload.
public struct ClusterStatus: Codable, Sendable, Equatable {
    /// Another host of the cluster, as the config names it (`host`, `api`, `address`).
    public typealias Peer = PeerConfiguration

    public var host: String
    public var repository: String
    /// `BACKEND:PATH`, e.g. `local:/mnt/volume/coordinator`.
    public var coordinator: String
    public var peers: [Peer]
    public var workloads: [ClusteredWorkloadStatus]

    public init(
        host: String, repository: String, coordinator: String, peers: [Peer], workloads: [ClusteredWorkloadStatus]
    ) {
        self.host = host
        self.repository = repository
        self.coordinator = coordinator
        self.peers = peers
        self.workloads = workloads
    }
}

/// One clustered workload as this host sees it (Docs/agent.md).
public struct ClusteredWorkloadStatus: Codable, Sendable, Equatable {
    /// How far one peer has acknowledged the primary's journal stream (on the primary only).
    public struct Peer: Codable, Sendable, Equatable {
        public var host: String
        public var connected: Bool
        public var acked: String?
        /// Records the peer is behind the primary's last record.
        public var lag: UInt64?
        public var bytesSent: UInt64
        public var lastError: String?

        public init(
            host: String, connected: Bool, acked: String? = nil, lag: UInt64? = nil, bytesSent: UInt64,
            lastError: String? = nil
        ) {
            self.host = host
            self.connected = connected
            self.acked = acked
            self.lag = lag
            self.bytesSent = bytesSent
            self.lastError = lastError
        }
    }

    /// The workload's service process on this host.
    public struct Service: Codable, Sendable, Equatable {
        /// `running`, `starting`, `exited` or `stopped`.
        public var state: String
        public var pid: Int32?

        public init(state: String, pid: Int32? = nil) {
            self.state = state
            self.pid = pid
        }
    }

    public var name: String
    public var role: WorkloadRole
    public var epoch: UInt64
    public var position: String?
    public var durablePosition: String?
    public var oldestSeq: UInt64
    public var leaseHolder: String?
    public var leaseExpiresIn: Double?
    public var replication: String
    public var peers: [Peer]
    public var service: Service
    /// The newest snapshot this host knows of: its own last one, else the one it recovered from.
    public var newestSnapshot: SnapshotReference?
    /// The report of the last snapshot this host took.
    public var lastSnapshot: SnapshotReport?
    public var lastRecovery: RecoveryReport?
    /// Set when sync peers timed out.
    public var alert: String?
    public var mounted: Bool
    /// Why this host cannot reach the coordinator now (a failed lease read or renewal); a
    /// primary past its fencing deadline has fenced itself, a peer waits.
    public var coordinatorError: String?
    /// The warm copy (`standby: warm` only).
    public var standby: StandbyStatus?

    public init(
        name: String, role: WorkloadRole, epoch: UInt64, position: String?, durablePosition: String?,
        oldestSeq: UInt64, leaseHolder: String?, leaseExpiresIn: Double?, replication: String, peers: [Peer],
        service: Service, newestSnapshot: SnapshotReference?, lastSnapshot: SnapshotReport?,
        lastRecovery: RecoveryReport?, alert: String?, mounted: Bool, coordinatorError: String? = nil,
        standby: StandbyStatus? = nil
    ) {
        self.name = name
        self.role = role
        self.epoch = epoch
        self.position = position
        self.durablePosition = durablePosition
        self.oldestSeq = oldestSeq
        self.leaseHolder = leaseHolder
        self.leaseExpiresIn = leaseExpiresIn
        self.replication = replication
        self.peers = peers
        self.service = service
        self.newestSnapshot = newestSnapshot
        self.lastSnapshot = lastSnapshot
        self.lastRecovery = lastRecovery
        self.alert = alert
        self.mounted = mounted
        self.coordinatorError = coordinatorError
        self.standby = standby
    }
}

/// A peer's warm copy of a workload (`standby: warm`; Docs/agent.md).
public struct StandbyStatus: Codable, Sendable, Equatable {
    /// `warm`.
    public var mode: String
    /// `warm` (the backing dir holds `position` exactly), `warming` (restoring the snapshot),
    /// `cold` (nothing to start from; `problem` says why), `off` (this host is not a peer).
    public var state: String
    public var position: String?
    /// The snapshot the copy was warmed from.
    public var snapshot: String?
    /// Records applied to the copy since the agent started.
    public var appliedRecords: UInt64
    /// Snapshots restored into the copy since the agent started.
    public var warmUps: Int
    public var problem: String?

    public init(
        mode: String, state: String, position: String?, snapshot: String?, appliedRecords: UInt64, warmUps: Int,
        problem: String?
    ) {
        self.mode = mode
        self.state = state
        self.position = position
        self.snapshot = snapshot
        self.appliedRecords = appliedRecords
        self.warmUps = warmUps
        self.problem = problem
    }
}

/// A snapshot by id and journal position (`newest_snapshot`).
public struct SnapshotReference: Codable, Sendable, Equatable {
    public var snapshot: String
    public var position: String?

    public init(snapshot: String, position: String?) {
        self.snapshot = snapshot
        self.position = position
    }
}

/// The status of an agent with no cluster: its standalone workloads.
public struct StandaloneStatus: Codable, Sendable, Equatable {
    /// One standalone workload: its dirs, journal positions, dirty map and last snapshot.
    public struct Workload: Codable, Sendable, Equatable {
        public var name: String
        public var dataDir: String
        public var backingDir: String
        public var journalDir: String
        public var epoch: UInt64
        public var position: String?
        public var durablePosition: String?
        public var dirtyFiles: Int
        public var dirtyBytes: UInt64
        public var mounted: Bool
        public var lastSnapshot: SnapshotReport?

        public init(
            name: String, dataDir: String, backingDir: String, journalDir: String, epoch: UInt64, position: String?,
            durablePosition: String?, dirtyFiles: Int, dirtyBytes: UInt64, mounted: Bool,
            lastSnapshot: SnapshotReport?
        ) {
            self.name = name
            self.dataDir = dataDir
            self.backingDir = backingDir
            self.journalDir = journalDir
            self.epoch = epoch
            self.position = position
            self.durablePosition = durablePosition
            self.dirtyFiles = dirtyFiles
            self.dirtyBytes = dirtyBytes
            self.mounted = mounted
            self.lastSnapshot = lastSnapshot
        }
    }

    public var host: String
    public var repository: String
    public var workloads: [Workload]

    public init(host: String, repository: String, workloads: [Workload]) {
        self.host = host
        self.repository = repository
        self.workloads = workloads
    }
}
