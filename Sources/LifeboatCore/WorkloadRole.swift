/// What this host does for one workload. The API prints the raw values (`role` in
/// `/v1/status`, `lifeboat_role{role}`), so they never change.
public enum WorkloadRole: String, Sendable, Codable, CaseIterable {
    /// Runs alone: no coordinator, no lease, no peers; always mounted.
    case standalone
    /// Keeps the primary's journal; becomes primary when the lease is free.
    case peer
    /// Took the lease; rebuilding the data and starting the service.
    case recovering
    case primary
    /// Lost the lease while primary; stopping everything before it rejoins as a peer.
    case fenced
    case stopped
}

/// Why a host took a workload's lease. The raw values are `last_recovery.kind` in the API.
public enum RecoveryKind: String, Sendable, Codable {
    /// No lease existed: the first primary of the workload.
    case bootstrap
    /// The previous primary's lease ran out.
    case failover
    /// The previous primary handed the lease over after this host caught up.
    case switchover
}
