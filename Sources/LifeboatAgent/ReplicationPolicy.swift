public import LifeboatCluster
public import LifeboatCore
public import Logging
import Synchronization

/// One peer as the primary's replication group sees it.
public struct GroupPeer: Sendable, Equatable {
    public var host: String
    public var connected: Bool
    /// The last position the peer said it holds durably.
    public var acked: Position?
    public var bytesSent: UInt64
    public var lastError: String?

    public init(host: String, connected: Bool, acked: Position?, bytesSent: UInt64 = 0, lastError: String? = nil) {
        self.host = host
        self.connected = connected
        self.acked = acked
        self.bytesSent = bytesSent
        self.lastError = lastError
    }
}

/// How far the primary's peers are: what the replication policy and a switchover wait on.
/// `ReplicationGroup` is the real one; a test drives its own.
public protocol ReplicationProgress: Sendable {
    var peers: [GroupPeer] { get }
    /// Wakes the streams: new records were written.
    func kick()
    /// Waits until `count` peers hold `seq` durably; false after `timeout` seconds.
    func waitReplicated(seq: UInt64, count: Int, timeout: Double) -> Bool
    /// Waits until the peer `host` holds `seq` durably; false after `timeout` seconds.
    func waitReplicatedBy(host: String, seq: UInt64, timeout: Double) -> Bool
    /// Stops every stream.
    func stop()
}

extension ReplicationGroup: ReplicationProgress {
    public var peers: [GroupPeer] {
        progress.map {
            GroupPeer(
                host: $0.host, connected: $0.connected, acked: $0.acked, bytesSent: $0.bytesSent,
                lastError: $0.lastError)
        }
    }
}

/// When an fsync on the primary's data dir may be answered (the `replication` keys):
///
/// - `async`: after the local journal (the streams are woken).
/// - `sync`: once `min_sync_peers` peers hold the record durably, waiting `sync_timeout`.
///   Then `on_sync_timeout: fail` answers EIO; `degrade` answers from the local journal,
///   sets the alert and acknowledges from the local journal from then on, until
///   `min_sync_peers` peers are connected again (sync resumes, the alert is cleared).
///
/// One per workload: the degraded state and the alert outlive an epoch, as before the split.
public final class ReplicationPolicy: Sendable {
    public let workload: String
    public let settings: ReplicationConfiguration
    let logger: Logger
    /// Set while sync replication is degraded to async.
    private let degradedFlag = Atomic<Bool>(false)
    private let alertText = Mutex<String?>(nil)
    private let timeouts = Atomic<UInt64>(0)

    public init(workload: String, settings: ReplicationConfiguration, logger: Logger) {
        self.workload = workload
        self.settings = settings
        self.logger = logger
    }

    public var degraded: Bool { degradedFlag.load(ordering: .relaxed) }
    /// Set when sync peers timed out (shown as `alert` in status).
    public var alert: String? { alertText.withLock { $0 } }
    /// How many fsyncs waited `sync_timeout` in vain.
    public var syncTimeouts: UInt64 { timeouts.load(ordering: .relaxed) }

    /// True when the record `seq` (and everything before it) may be acknowledged as durable;
    /// false: the fsync answers EIO.
    public func replicated(seq: UInt64, group: any ReplicationProgress) -> Bool {
        if settings.mode == .async {
            group.kick()
            return true
        }
        if degradedFlag.load(ordering: .relaxed) {
            // Degraded: acknowledge from the local journal until enough peers are back.
            if group.peers.filter(\.connected).count < settings.minSyncPeers {
                group.kick()
                return true
            }
            degradedFlag.store(false, ordering: .relaxed)
            alertText.withLock { $0 = nil }
            logger.info("\(settings.minSyncPeers) sync peer(s) connected again; sync replication resumes")
        }
        if group.waitReplicated(seq: seq, count: settings.minSyncPeers, timeout: settings.syncTimeout) {
            return true
        }
        timeouts.add(1, ordering: .relaxed)
        let reason =
            "fewer than \(settings.minSyncPeers) sync peer(s) acknowledged seq \(seq) within \(settings.syncTimeout) s"
        alertText.withLock { $0 = reason }
        if settings.onTimeout == .degrade {
            degradedFlag.store(true, ordering: .relaxed)
            logger.warning("\(reason); acknowledging from the local journal only (degraded to async)")
            return true
        }
        logger.error("\(reason); the fsync fails with EIO")
        return false
    }
}
