public import LifeboatCore

/// What one snapshot of a captured workload did (`POST /v1/workloads/NAME/snapshot`, `last_snapshot`).
public struct SnapshotReport: Codable, Sendable, Equatable {
    public var snapshot: String
    public var workload: String
    public var position: String?
    public var parent: String?
    /// `delta` (the dirty map on the previous snapshot) or `scan` (a full scan first).
    public var method: String
    /// How long the service's writes waited for the cut, in milliseconds (`stall_ms`).
    public var stallMs: Double
    public var changedBytesRead: UInt64
    public var changedBytesReadDuringStall: UInt64
    public var baseBytesRead: UInt64
    public var scanBytesRead: UInt64
    public var newBytes: UInt64
    public var storedBytes: UInt64
    public var files: UInt64
    public var totalBytes: UInt64
    public var seconds: Double
    public var journalSegmentsRemoved: Int

    public init(
        snapshot: String, workload: String, position: String?, parent: String?, method: String, stallMs: Double,
        changedBytesRead: UInt64, changedBytesReadDuringStall: UInt64, baseBytesRead: UInt64, scanBytesRead: UInt64,
        newBytes: UInt64, storedBytes: UInt64, files: UInt64, totalBytes: UInt64, seconds: Double,
        journalSegmentsRemoved: Int
    ) {
        self.snapshot = snapshot
        self.workload = workload
        self.position = position
        self.parent = parent
        self.method = method
        self.stallMs = stallMs
        self.changedBytesRead = changedBytesRead
        self.changedBytesReadDuringStall = changedBytesReadDuringStall
        self.baseBytesRead = baseBytesRead
        self.scanBytesRead = scanBytesRead
        self.newBytes = newBytes
        self.storedBytes = storedBytes
        self.files = files
        self.totalBytes = totalBytes
        self.seconds = seconds
        self.journalSegmentsRemoved = journalSegmentsRemoved
    }
}

/// What one recovery did, part by part (`last_recovery` in a clustered status).
public struct RecoveryReport: Codable, Sendable, Equatable {
    public var epoch: UInt64
    /// `failover` (the lease expired), `switchover` (handed over) or `bootstrap` (first start).
    public var kind: RecoveryKind
    public var startedAt: Double
    public var snapshot: String?
    public var snapshotPosition: String?
    /// Set when the recovery started from this host's warm copy at that position (nothing
    /// was restored from the volume).
    public var warmFrom: String?
    /// Bytes restored from the volume's repository.
    public var snapshotBytes: UInt64
    /// Records after the snapshot that this host already held.
    public var localRecords: Int
    /// Records and bytes fetched from a peer, and which one.
    public var deltaRecords: Int
    public var deltaBytes: Int
    public var deltaPeer: String?
    public var replayedRecords: Int
    public var position: String?
    public var detectionSeconds: Double
    public var leaseSeconds: Double
    /// Announcing the epoch in the repository: the recovery's first write into the volume
    /// (it waits out a lost brick's timeout on a replicated volume). Nil from older agents.
    public var announceSeconds: Double?
    public var snapshotLoadSeconds: Double
    public var deltaSeconds: Double
    public var replaySeconds: Double
    public var mountSeconds: Double
    public var serviceStartSeconds: Double
    /// From the lease's expiry (or the handover) to the service answering.
    public var totalSeconds: Double

    /// A report of a recovery that has just begun: every count and time is zero until its part runs.
    public init(
        epoch: UInt64, kind: RecoveryKind, startedAt: Double, snapshot: String? = nil, snapshotPosition: String? = nil,
        snapshotBytes: UInt64 = 0, localRecords: Int = 0, deltaRecords: Int = 0, deltaBytes: Int = 0,
        deltaPeer: String? = nil, replayedRecords: Int = 0, position: String? = nil, detectionSeconds: Double = 0,
        leaseSeconds: Double = 0, announceSeconds: Double? = nil, snapshotLoadSeconds: Double = 0,
        deltaSeconds: Double = 0, replaySeconds: Double = 0,
        mountSeconds: Double = 0, serviceStartSeconds: Double = 0, totalSeconds: Double = 0
    ) {
        self.epoch = epoch
        self.kind = kind
        self.startedAt = startedAt
        self.snapshot = snapshot
        self.snapshotPosition = snapshotPosition
        self.snapshotBytes = snapshotBytes
        self.localRecords = localRecords
        self.deltaRecords = deltaRecords
        self.deltaBytes = deltaBytes
        self.deltaPeer = deltaPeer
        self.replayedRecords = replayedRecords
        self.position = position
        self.detectionSeconds = detectionSeconds
        self.leaseSeconds = leaseSeconds
        self.announceSeconds = announceSeconds
        self.snapshotLoadSeconds = snapshotLoadSeconds
        self.deltaSeconds = deltaSeconds
        self.replaySeconds = replaySeconds
        self.mountSeconds = mountSeconds
        self.serviceStartSeconds = serviceStartSeconds
        self.totalSeconds = totalSeconds
    }
}
