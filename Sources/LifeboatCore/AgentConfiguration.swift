/// What one agent runs, as read from its YAML config (Docs/examples/agent.yaml).
public struct AgentConfiguration: Sendable, Equatable {
    /// This host's name, as peers and `lifeboat status` show it.
    public var host: String
    /// Address of the agent's HTTP API, `HOST:PORT`.
    public var listen: String
    /// The repository on the volume that snapshots go to.
    public var repository: String
    public var workloads: [WorkloadConfiguration]
    /// Where leases and epochs live; nil runs the agent alone (no peers, no failover).
    public var cluster: ClusterConfiguration?
    /// The lowest level the agent logs (`log_level`).
    public var logLevel: LogLevel

    public init(
        host: String, listen: String, repository: String, workloads: [WorkloadConfiguration],
        cluster: ClusterConfiguration? = nil, logLevel: LogLevel = .info
    ) {
        self.host = host
        self.listen = listen
        self.repository = repository
        self.workloads = workloads
        self.cluster = cluster
        self.logLevel = logLevel
    }
}

/// The agent's log levels, lowest first: the names of swift-log's levels.
public enum LogLevel: String, Sendable, CaseIterable {
    case trace, debug, info, notice, warning, error, critical
}

/// How this agent works with the others: the coordinator, its peer address, its peers.
public struct ClusterConfiguration: Sendable, Equatable {
    public enum Backend: String, Sendable, CaseIterable {
        /// Lease files on one machine's filesystem.
        case local
        /// Leases, epochs and history in etcd v3 (a real cluster).
        case etcd
    }

    /// Address the journal stream and peer requests listen on, `HOST:PORT`.
    public var peerListen: String
    public var backend: Backend
    /// The `local` coordinator's directory, or the `etcd` coordinator's key prefix.
    public var coordinatorPath: String
    public var peers: [PeerConfiguration]
    /// The `etcd` coordinator's client URLs (empty for `local`).
    public var etcdEndpoints: [String]
    /// Seconds one connection attempt to an etcd endpoint may take.
    public var etcdDialTimeout: Double

    public init(
        peerListen: String, backend: Backend, coordinatorPath: String, peers: [PeerConfiguration],
        etcdEndpoints: [String] = [], etcdDialTimeout: Double = 2
    ) {
        self.peerListen = peerListen
        self.backend = backend
        self.coordinatorPath = coordinatorPath
        self.peers = peers
        self.etcdEndpoints = etcdEndpoints
        self.etcdDialTimeout = etcdDialTimeout
    }
}

/// Another agent of the cluster.
public struct PeerConfiguration: Codable, Sendable, Equatable {
    public var host: String
    /// Its HTTP API, `HOST:PORT`.
    public var api: String
    /// Its peer-protocol address, `HOST:PORT`.
    public var address: String

    public init(host: String, api: String, address: String) {
        self.host = host
        self.api = api
        self.address = address
    }
}

/// How a workload's journal reaches the peers.
public struct ReplicationConfiguration: Sendable, Equatable {
    public enum Mode: String, Sendable, CaseIterable {
        /// A durable answer waits for the local journal only.
        case async
        /// A durable answer waits for `minSyncPeers` peers to hold the records durably.
        case sync
    }

    public enum OnTimeout: String, Sendable, CaseIterable {
        /// The fsync fails with EIO (nothing is answered as durable that is not on the peers).
        case fail
        /// The fsync succeeds after the local journal and the agent raises an alert.
        case degrade
    }

    public var mode: Mode
    public var minSyncPeers: Int
    /// Seconds an fsync waits for the peers before `onTimeout` applies.
    public var syncTimeout: Double
    public var onTimeout: OnTimeout
    /// Seconds a lease lasts without renewal.
    public var leaseTTL: Double

    public init(
        mode: Mode = .async, minSyncPeers: Int = 1, syncTimeout: Double = 5, onTimeout: OnTimeout = .fail,
        leaseTTL: Double = 10
    ) {
        self.mode = mode
        self.minSyncPeers = minSyncPeers
        self.syncTimeout = syncTimeout
        self.onTimeout = onTimeout
        self.leaseTTL = leaseTTL
    }
}

/// The commands that run a workload's service on the primary (through `/bin/sh -c`).
public struct ServiceConfiguration: Sendable, Equatable {
    /// Starts the service in the foreground; the agent keeps its process.
    public var start: String
    /// Stops it; when nil the agent sends SIGTERM to the service's process group.
    public var stop: String?
    /// Exits 0 when the service answers.
    public var health: String?

    public init(start: String, stop: String?, health: String?) {
        self.start = start
        self.stop = stop
        self.health = health
    }
}

/// One captured service's directories.
public struct WorkloadConfiguration: Sendable, Equatable {
    public enum Capture: String, Sendable, CaseIterable {
        /// A FUSE passthrough that journals every write.
        case fuse
    }

    public var name: String
    public var capture: Capture
    /// Where the service reads and writes (the FUSE mount point).
    public var dataDir: String
    /// Where the files really are on this host.
    public var backingDir: String
    /// Where this host keeps the workload's journal segments.
    public var journalDir: String

    public var replication: ReplicationConfiguration
    public var service: ServiceConfiguration?
    /// Seconds between scheduled snapshots on the primary; nil: only on request.
    public var snapshotEvery: Double?
    /// What a peer keeps of the workload between failovers (`standby`).
    public var standby: Standby

    /// `standby`: what a peer's backing dir holds while another host is primary.
    public enum Standby: String, Sendable, CaseIterable {
        /// Whatever it held last; a failover restores the newest snapshot from the volume.
        case cold
        /// The newest snapshot with the stream applied as it arrives: a failover on this host
        /// loads nothing from the volume (`WarmStandby`).
        case warm
    }

    public init(
        name: String, capture: Capture, dataDir: String, backingDir: String, journalDir: String,
        replication: ReplicationConfiguration = ReplicationConfiguration(), service: ServiceConfiguration? = nil,
        snapshotEvery: Double? = nil, standby: Standby = .cold
    ) {
        self.name = name
        self.capture = capture
        self.dataDir = dataDir
        self.backingDir = backingDir
        self.journalDir = journalDir
        self.replication = replication
        self.service = service
        self.snapshotEvery = snapshotEvery
        self.standby = standby
    }
}
