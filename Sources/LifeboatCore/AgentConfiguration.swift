/// What one agent runs, as read from its YAML config (Docs/examples/agent.yaml).
public struct AgentConfiguration: Sendable, Equatable {
    /// This host's name, as peers and `lifeboat status` show it.
    public var host: String
    /// Address of the agent's HTTP API, `HOST:PORT`.
    public var listen: String
    /// The repository on the volume that snapshots go to.
    public var repository: String
    public var workloads: [WorkloadConfiguration]

    public init(host: String, listen: String, repository: String, workloads: [WorkloadConfiguration]) {
        self.host = host
        self.listen = listen
        self.repository = repository
        self.workloads = workloads
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

    public init(name: String, capture: Capture, dataDir: String, backingDir: String, journalDir: String) {
        self.name = name
        self.capture = capture
        self.dataDir = dataDir
        self.backingDir = backingDir
        self.journalDir = journalDir
    }
}
