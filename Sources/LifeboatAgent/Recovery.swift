import Foundation

/// What one recovery did, part by part: what `lifeboat status` and the API show.
public struct RecoveryReport: Codable, Sendable {
    public var epoch: UInt64
    /// `failover` (the lease expired), `switchover` (handed over) or `bootstrap` (first start).
    public var kind: RecoveryKind
    public var startedAt: Double
    public var snapshot: String?
    public var snapshotPosition: String?
    /// Bytes restored from the volume's repository.
    public var snapshotBytes: UInt64 = 0
    /// Records after the snapshot that this host already held.
    public var localRecords: Int = 0
    /// Records and bytes fetched from a peer, and which one.
    public var deltaRecords: Int = 0
    public var deltaBytes: Int = 0
    public var deltaPeer: String?
    public var replayedRecords: Int = 0
    public var position: String?
    public var detectionSeconds: Double = 0
    public var leaseSeconds: Double = 0
    public var snapshotLoadSeconds: Double = 0
    public var deltaSeconds: Double = 0
    public var replaySeconds: Double = 0
    public var mountSeconds: Double = 0
    public var serviceStartSeconds: Double = 0
    /// From the lease's expiry (or the handover) to the service answering.
    public var totalSeconds: Double = 0

    enum CodingKeys: String, CodingKey {
        case epoch, kind, snapshot, position
        case startedAt = "started_at"
        case snapshotPosition = "snapshot_position"
        case snapshotBytes = "snapshot_bytes"
        case localRecords = "local_records"
        case deltaRecords = "delta_records"
        case deltaBytes = "delta_bytes"
        case deltaPeer = "delta_peer"
        case replayedRecords = "replayed_records"
        case detectionSeconds = "detection_seconds"
        case leaseSeconds = "lease_seconds"
        case snapshotLoadSeconds = "snapshot_load_seconds"
        case deltaSeconds = "delta_seconds"
        case replaySeconds = "replay_seconds"
        case mountSeconds = "mount_seconds"
        case serviceStartSeconds = "service_start_seconds"
        case totalSeconds = "total_seconds"
    }
}
