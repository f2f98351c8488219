/// Every metric family `GET /metrics` shows: its name, Prometheus type and HELP text
/// (Docs/agent.md lists them). Every series is labelled `host` and `workload`.
enum MetricFamily: String, CaseIterable, Sendable {
    case journalSeq = "lifeboat_journal_seq"
    case journalDurableSeq = "lifeboat_journal_durable_seq"
    case journalOldestSeq = "lifeboat_journal_oldest_seq"
    case epoch = "lifeboat_epoch"
    case role = "lifeboat_role"
    case peerConnected = "lifeboat_peer_connected"
    case peerLagRecords = "lifeboat_peer_lag_records"
    case peerBytesSent = "lifeboat_peer_bytes_sent_total"
    case bytesReceived = "lifeboat_bytes_received_total"
    case recordsReceived = "lifeboat_records_received_total"
    case syncTimeouts = "lifeboat_sync_timeouts_total"
    case snapshotSeconds = "lifeboat_snapshot_seconds"
    case snapshotStallSeconds = "lifeboat_snapshot_stall_seconds"
    case recoverySeconds = "lifeboat_recovery_seconds"
    case recoveryDeltaBytes = "lifeboat_recovery_delta_bytes"
    case recoverySnapshotBytes = "lifeboat_recovery_snapshot_bytes"
    case dataFsyncSeconds = "lifeboat_data_fsync_seconds"
    case snapshotDurationSeconds = "lifeboat_snapshot_duration_seconds"
    case replicationAckSeconds = "lifeboat_replication_ack_seconds"

    /// The Prometheus type, as its `# TYPE` line says.
    enum Kind: String, Sendable {
        case counter, gauge, histogram
    }

    var name: String { rawValue }

    var kind: Kind {
        switch self {
        case .peerBytesSent, .bytesReceived, .recordsReceived, .syncTimeouts: .counter
        case .dataFsyncSeconds, .snapshotDurationSeconds, .replicationAckSeconds: .histogram
        default: .gauge
        }
    }

    var help: String {
        switch self {
        case .journalSeq: "Seq of the last record in the workload's journal."
        case .journalDurableSeq: "Seq of the last record the journal holds durably (fsynced)."
        case .journalOldestSeq: "Seq of the oldest record the journal still keeps."
        case .epoch: "The epoch this host works under for the workload."
        case .role: "1 for the workload's current role on this host (label role), 0 for the others."
        case .peerConnected: "1 while the primary's stream to the peer is connected."
        case .peerLagRecords: "Records the peer has not acknowledged yet, as the primary sees it."
        case .peerBytesSent: "Journal bytes the primary sent to the peer since it became primary."
        case .bytesReceived: "Journal bytes this host received from primaries as a peer."
        case .recordsReceived: "Journal records this host received from primaries as a peer."
        case .syncTimeouts: "Fsyncs on the data dir that waited sync_timeout for sync peers in vain."
        case .snapshotSeconds: "Duration of the workload's last snapshot on this host."
        case .snapshotStallSeconds: "How long the last snapshot held the service's writes back."
        case .recoverySeconds: "Duration of each part (label part) of the last recovery on this host."
        case .recoveryDeltaBytes: "Journal bytes the last recovery fetched from a peer."
        case .recoverySnapshotBytes: "Bytes the last recovery restored from the snapshot."
        case .dataFsyncSeconds:
            "Time of each fsync, fdatasync and directory fsync the service made on the data dir, from the request to its answer (sync peers included)."
        case .snapshotDurationSeconds: "Duration of each committed snapshot, scheduled or on demand."
        case .replicationAckSeconds:
            "Time from sending a record batch to the peer to reading its acknowledgement of it."
        }
    }

    /// Histogram buckets: 50 µs to 10 s, where fsyncs and acknowledgements fall on local disks,
    /// SSDs and networks; snapshots also get 30 s to 5 min, where large scans fall.
    var buckets: [Duration] {
        let common: [Duration] = [
            .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
            .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25),
            .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
            .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        ]
        switch self {
        case .snapshotDurationSeconds: return common + [.seconds(30), .seconds(60), .seconds(120), .seconds(300)]
        case .dataFsyncSeconds, .replicationAckSeconds: return common
        default: return []
        }
    }
}
