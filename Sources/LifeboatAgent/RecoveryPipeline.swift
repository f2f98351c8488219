import Foundation
import LifeboatAPI
import LifeboatCapture
import LifeboatCluster
import LifeboatCore
import LifeboatJournal
import LifeboatRepository
import Logging

/// The steps a host runs after it took a workload's lease, each timed into the
/// `RecoveryReport`:
///
/// 1. announce the epoch in the repository (older primaries' snapshots are refused from now on);
/// 2. load the newest snapshot into the backing dir (emptied first; files that no snapshot and
///    no journal covers are moved aside, never deleted), unless this host's warm copy
///    (`WarmStandby`) already holds the journal through some position: then it starts there;
/// 3. the delta: this host's own records after the snapshot, then the rest from the most
///    advanced peer;
/// 4. replay the records after the snapshot (`JournalReplay`, as `lifeboat restore --journal`);
/// 5. record the epoch's first seq in the lease's history;
/// 6. mount under the new epoch and start the streams to the peers;
/// 7. start the service and wait until it is healthy.
///
/// A bootstrap (no lease before) skips 2-4 and serves the backing dir as it is; when it holds
/// seed data, a seed snapshot of it is committed before the service starts, so every other
/// host can restore it.
final class RecoveryPipeline: Sendable {
    let configuration: WorkloadConfiguration
    let repositoryPath: String
    let host: String
    let writer: JournalWriter
    let replica: ReplicaJournal
    let leases: LeaseKeeper
    let candidacy: FailoverCandidacy
    let directory: any PeerDirectory
    let policy: ReplicationPolicy
    let peers: [PeerConfiguration]
    let clock: any AgentClock
    /// This host's warm copy of the workload (`standby: warm`), else nil.
    let standby: WarmStandby?
    /// The histograms the mount and the streams of this workload feed.
    let metrics: WorkloadMetrics
    let logger: Logger

    init(
        configuration: WorkloadConfiguration, repositoryPath: String, host: String, writer: JournalWriter,
        replica: ReplicaJournal, leases: LeaseKeeper, candidacy: FailoverCandidacy, directory: any PeerDirectory,
        policy: ReplicationPolicy, peers: [PeerConfiguration], clock: any AgentClock, standby: WarmStandby? = nil,
        metrics: WorkloadMetrics = .discarded, logger: Logger
    ) {
        self.configuration = configuration
        self.repositoryPath = repositoryPath
        self.host = host
        self.writer = writer
        self.replica = replica
        self.leases = leases
        self.candidacy = candidacy
        self.directory = directory
        self.policy = policy
        self.peers = peers
        self.clock = clock
        self.standby = standby
        self.metrics = metrics
        self.logger = logger
    }

    var name: String { configuration.name }

    /// What the recovery hands to its workload as it goes, so status shows each part as soon
    /// as it exists.
    struct Hooks {
        /// The data dir is mounted and the streams started.
        var mounted: (WorkloadRuntime, ReplicationGroup, WorkloadSnapshots) -> Void
        /// The service process was started (it may not be healthy yet).
        var serviceStarted: (ServiceProcess) -> Void
        /// Asked before a snapshot of this epoch commits: nil while this host may commit.
        var mayCommit: @Sendable () -> String?
    }

    /// Runs every step for `lease` (just taken). `fresh`: no lease existed before (bootstrap).
    /// `lostHolder`: the host whose lease ran out (a failover), asked only briefly for records.
    func run(lease: Lease, fresh: Bool, lostHolder: String? = nil, report: inout RecoveryReport, hooks: Hooks) throws {
        let epoch = lease.epoch
        // The warm copy's rounds stop here: the backing dir is the recovery's from now on.
        let warm = standby?.takeOver(history: lease.history)
        let announceStart = clock.monotonic
        try announceEpoch(epoch)
        report.announceSeconds = clock.monotonic - announceStart
        let backing = try BackingDir.state(of: configuration)
        var snapshotPosition: Position?
        if !fresh {
            if let warm {
                // The backing dir holds exactly the journal through `warm`: nothing to load.
                report.warmFrom = "\(warm)"
                snapshotPosition = warm
            } else {
                snapshotPosition = try loadSnapshot(backing: backing, history: lease.history, report: &report)
            }
            try fetchDelta(
                history: lease.history, after: snapshotPosition, lostHolder: lostHolder, report: &report)
            try replay(after: snapshotPosition?.seq ?? 0, report: &report)
        }
        try writer.sync()
        let end = writer.lastPosition
        report.position = end.map { "\($0)" }
        let history = try recordEpochStart(firstSeq: (end?.seq ?? 0) + 1)
        // A backing dir rebuilt from the snapshot and the journal (or empty) is covered from
        // here on; seed data only once its snapshot is committed.
        let seeded = fresh && backing == .seeded
        if !seeded { try BackingDir.markCaptured(configuration) }
        let runtime = try mount(epoch: epoch, history: history, report: &report, hooks: hooks)
        if seeded { try commitSeedSnapshot(runtime: runtime, epoch: epoch, end: end) }
        try startService(report: &report, hooks: hooks)
        report.totalSeconds = clock.wall - report.startedAt + report.detectionSeconds
    }

    /// Step 1: the repository refuses snapshots of older epochs from now on.
    func announceEpoch(_ epoch: UInt64) throws {
        try Repository.open(at: repositoryPath).announceEpoch(epoch, workload: name)
    }

    /// Step 2: the newest snapshot of the workload (any host's) whose position is on the
    /// lease's `history` into the emptied backing dir. Returns its position (nil: no snapshot).
    /// A snapshot past where a later epoch began (an old primary's, committed as it lost the
    /// lease) holds records the workload does not have: it is passed over.
    func loadSnapshot(backing: BackingState, history: [EpochStart], report: inout RecoveryReport) throws -> Position? {
        let loadStart = clock.monotonic
        defer { report.snapshotLoadSeconds = clock.monotonic - loadStart }
        let repository = try Repository.open(at: repositoryPath)
        let newest = try repository.newestSnapshot(of: name, on: history)
        try prepareBackingDir(backing)
        guard let newest else { return nil }
        let restored = try repository.restoreWhole(newest, into: configuration.backingDir)
        report.snapshot = newest.id.hex
        report.snapshotBytes = restored.bytes
        report.snapshotPosition = newest.snapshot.position.map { "\($0)" }
        return newest.snapshot.position
    }

    /// Empties the backing dir for a restore. Files under capture are covered by the snapshots
    /// and the journal and are removed; seed data is moved aside, never deleted.
    func prepareBackingDir(_ backing: BackingState) throws {
        switch backing {
        case .empty:
            return
        case .captured:
            try BackingDir.clear(configuration.backingDir)
        case .seeded:
            let aside = try BackingDir.moveAside(configuration.backingDir, now: Date(timeIntervalSince1970: clock.wall))
            logger.warning(
                "backing dir \(configuration.backingDir) held files that no snapshot and no journal covers (seed data); moved them aside to \(aside), nothing was deleted (see Docs/replication.md#seed-data)"
            )
        }
    }

    /// Step 3: the records after the snapshot: this host's own (when they fit the lease's
    /// history and reach back to the snapshot), then the rest from the most advanced peer.
    func fetchDelta(
        history: [EpochStart], after snapshotPosition: Position?, lostHolder: String? = nil,
        report: inout RecoveryReport
    ) throws {
        let deltaStart = clock.monotonic
        defer { report.deltaSeconds = clock.monotonic - deltaStart }
        let after = snapshotPosition?.seq ?? 0
        let own = writer.durablePosition
        let ownOnHistory = own.map { history.contains(journalEnd: $0) } ?? false
        let ownFits = ownOnHistory && (own?.seq ?? 0) >= after && writer.firstSeq <= after + 1
        // Records of this host's own past the snapshot that its journal cannot join to it (it
        // starts after the snapshot's position): kept aside, then put back after the peers'.
        var ownLater: String?
        if !ownFits {
            let aside = try replica.reset(after: snapshotPosition ?? Position(epoch: 0, seq: 0))
            if ownOnHistory, (own?.seq ?? 0) > after { ownLater = aside }
        }
        report.localRecords = Int((writer.durablePosition?.seq ?? after) - after)
        for (peer, durable) in candidacy.deltaSources(history: history, lostHolder: lostHolder)
        where durable.seq > (writer.durablePosition?.seq ?? 0) {
            do {
                let from = (writer.durablePosition?.seq ?? after) + 1
                let fetched = try directory.fetch(peer, workload: name, from: from, into: writer)
                report.deltaRecords += fetched.records
                report.deltaBytes += fetched.bytes
                report.deltaPeer = peer.host
                break
            } catch {
                logger.warning("fetching the delta from \(peer.host) failed: \(error); trying the next peer")
            }
        }
        if let ownLater, let own, own.seq > (writer.durablePosition?.seq ?? 0) {
            let joined = try replica.rejoin(from: ownLater)
            report.localRecords += joined
            if joined == 0 {
                // Serving now would lose this host's later records (acknowledged, perhaps):
                // the recovery fails, the lease is released, and a later try (when the host
                // that holds the records in between answers) gets them all.
                throw LifeboatError(
                    .operationFailed,
                    "this host's records through \(own) (kept in \(ownLater)) cannot be joined to the delta, which ends at \(writer.durablePosition.map { "\($0)" } ?? "the snapshot"): no reachable peer holds the records in between; not serving without them",
                    hint: "bring back the host that holds them (the last primary); the recovery is tried again")
            } else {
                logger.info("put back \(joined) records of this host's own after the peers' delta (through \(own))")
            }
        }
    }

    /// Step 4: replays the records after seq `after` onto the restored files.
    func replay(after: UInt64, report: inout RecoveryReport) throws {
        let replayStart = clock.monotonic
        let result = try JournalReplay.replay(
            journal: configuration.journalDir, onto: configuration.backingDir, from: after + 1)
        report.replayedRecords = result.records
        // No syncfs here: the journal holds every record after the snapshot, and in a cluster
        // a backing dir is always rebuilt by the next recovery. The checkpoint flushes it in
        // the background within seconds.
        report.replaySeconds = clock.monotonic - replayStart
    }

    /// Step 5: the new epoch begins after the last record. Returns the lease's history.
    func recordEpochStart(firstSeq: UInt64) throws -> [EpochStart] {
        try leases.recordEpochStart(firstSeq: firstSeq).history
    }

    /// Step 6: mounts the data dir under the new epoch and starts the streams to the peers.
    func mount(
        epoch: UInt64, history: [EpochStart], report: inout RecoveryReport, hooks: Hooks
    ) throws
        -> WorkloadRuntime
    {
        let mountStart = clock.monotonic
        let group = ReplicationGroup(
            workload: name, host: host, epoch: epoch, history: history, writer: writer, peers: peers,
            acknowledged: { [metrics] peer, latency in metrics.acknowledged(by: peer, after: latency) }, logger: logger)
        let journal = CaptureJournal(
            writer: writer, epoch: epoch, fence: { [leases] in leases.fenceReason() },
            replicated: { [policy] seq in policy.replicated(seq: seq, group: group) },
            flushed: { group.kick() })
        let runtime = try WorkloadRuntime(configuration, journal: journal, metrics: metrics, logger: logger)
        try runtime.start()
        group.start()
        let snapshots = WorkloadSnapshots(
            runtime: runtime, repositoryPath: repositoryPath, host: host, mayCommit: hooks.mayCommit,
            committed: { position in group.retain(through: position.seq) })
        report.mountSeconds = clock.monotonic - mountStart
        hooks.mounted(runtime, group, snapshots)
        return runtime
    }

    /// A bootstrap on seed data: commits a snapshot of it (at the journal's end, or
    /// `(epoch, 0)` for an empty journal) before the service starts, then marks the backing
    /// dir as captured. Until then the seed data is the only copy, and it stays one.
    func commitSeedSnapshot(runtime: WorkloadRuntime, epoch: UInt64, end: Position?) throws {
        let seed = WorkloadSnapshots(
            runtime: runtime, repositoryPath: repositoryPath, host: host,
            mayCommit: { [leases] in leases.fenceReason() })
        let report: SnapshotReport
        do {
            report = try seed.snapshotNow(tags: ["seed"], positionIfEmpty: Position(epoch: epoch, seq: end?.seq ?? 0))
        } catch {
            throw LifeboatError(
                .operationFailed,
                "workload \(name): the seed snapshot of \(configuration.backingDir) failed: \(error); the files stay where they are",
                hint: "fix the cause; the next host to take the lease tries again")
        }
        try BackingDir.markCaptured(configuration)
        logger.info(
            "seed data of \(configuration.backingDir) committed as snapshot \(report.snapshot.prefix(8)) at \(report.position ?? "-") (\(report.totalBytes) bytes); every host can restore it now"
        )
    }

    /// Step 7: starts the service and waits until it passes its health command.
    func startService(report: inout RecoveryReport, hooks: Hooks) throws {
        let serviceStart = clock.monotonic
        if let serviceConfiguration = configuration.service {
            let service = ServiceProcess(
                serviceConfiguration, name: name, logPath: configuration.journalDir + "/service.log")
            try service.start()
            hooks.serviceStarted(service)
            try service.waitHealthy(timeout: 120)
        }
        report.serviceStartSeconds = clock.monotonic - serviceStart
    }
}
