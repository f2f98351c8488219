import Foundation
import LifeboatAPI
import LifeboatCapture
public import LifeboatCluster
public import LifeboatCore
public import LifeboatJournal
import LifeboatRepository
public import Logging
import Synchronization

/// One workload on this agent: wires its parts together and runs its control loop.
///
/// Without a cluster the workload is `standalone`: mounted from the start, no lease, no
/// peers. In a cluster its role follows the lease: the `FailoverCandidacy` decides when a peer
/// takes it, the `LeaseKeeper` holds and renews it, the `RecoveryPipeline` rebuilds the data
/// and starts the service, the `ReplicationPolicy` answers fsyncs, a `Switchover` hands the
/// role on.
public final class WorkloadSupervisor: Sendable {
    public let configuration: WorkloadConfiguration
    let agent: AgentConfiguration
    public let writer: JournalWriter
    let clock: any AgentClock
    let logger: Logger
    /// The histograms this workload's mounts, snapshots and streams feed.
    let metrics: WorkloadMetrics
    /// The clustered parts; nil for a standalone workload.
    let cluster: Clustered?

    /// The parts a clustered workload has and a standalone one has not.
    struct Clustered: Sendable {
        let configuration: ClusterConfiguration
        let replica: ReplicaJournal
        let leases: LeaseKeeper
        let candidacy: FailoverCandidacy
        let policy: ReplicationPolicy
        let pipeline: RecoveryPipeline
        /// The warm copy (`standby: warm`), else nil.
        let standby: WarmStandby?
    }

    struct State {
        /// Where log lines read the role from; set with every change of `role`.
        let logContext: WorkloadLogContext
        var role: WorkloadRole { didSet { logContext.set(role: role) } }
        var runtime: WorkloadRuntime?
        var snapshots: WorkloadSnapshots?
        var group: (any ReplicationProgress)?
        var service: ServiceProcess?
        var lastRecovery: RecoveryReport?
        var serviceRestarts = 0
        /// Set while a switchover stops the service and hands the lease on: supervision
        /// must not start the service again meanwhile.
        var switchingOver = false
    }
    private let state: Mutex<State>
    private let stopping = Atomic<Bool>(false)
    let counters = Counters()

    final class Counters: Sendable {
        let bytesReceived = Atomic<UInt64>(0)
        let recordsReceived = Atomic<UInt64>(0)
    }

    /// A standalone workload: checks its dirs, opens (and recovers) its journal, prepares the
    /// mount. Nothing is mounted until `start()`.
    init(
        standalone configuration: WorkloadConfiguration, agent: AgentConfiguration, metrics: WorkloadMetrics,
        logger: Logger
    ) throws {
        self.configuration = configuration
        self.agent = agent
        let logContext = WorkloadLogContext(role: .standalone)
        let logger = logContext.logger(logger, workload: configuration.name)
        self.logger = logger
        self.metrics = metrics
        clock = SystemClock()
        cluster = nil
        let runtime = try WorkloadRuntime(
            configuration, repository: agent.repository, host: agent.host, metrics: metrics, logger: logger)
        let epoch = runtime.journal.epoch
        logContext.readEpoch { epoch }
        writer = runtime.journal.writer
        let snapshots = WorkloadSnapshots(runtime: runtime, repositoryPath: agent.repository, host: agent.host)
        state = Mutex(State(logContext: logContext, role: .standalone, runtime: runtime, snapshots: snapshots))
    }

    /// A workload of a cluster: starts as a peer; `start()` runs its control loop.
    init(
        _ configuration: WorkloadConfiguration, agent: AgentConfiguration, cluster: ClusterConfiguration,
        coordinator: any Coordinator, peers directory: any PeerDirectory = NetworkPeers(),
        clock: any AgentClock = SystemClock(), metrics: WorkloadMetrics, logger: Logger
    ) throws {
        self.configuration = configuration
        self.agent = agent
        self.clock = clock
        self.metrics = metrics
        try WorkloadRuntime.checkDirectories(configuration)
        let writer = try JournalWriter(directory: configuration.journalDir)
        self.writer = writer
        let ttl = configuration.replication.leaseTTL
        let leases = LeaseKeeper(
            workload: configuration.name, host: agent.host, ttl: ttl, coordinator: coordinator, clock: clock)
        let logContext = WorkloadLogContext(role: .peer)
        let logger = logContext.logger(logger, workload: configuration.name)
        self.logger = logger
        let replica = try ReplicaJournal(workload: configuration.name, writer: writer, logger: logger)
        logContext.readEpoch { max(leases.epoch, replica.acceptedEpoch) }
        let candidacy = FailoverCandidacy(
            workload: configuration.name, host: agent.host, ttl: ttl, peers: cluster.peers, directory: directory,
            clock: clock)
        let policy = ReplicationPolicy(
            workload: configuration.name, settings: configuration.replication, logger: logger)
        let standby =
            configuration.standby == .warm
            ? WarmStandby(
                configuration: configuration, repositoryPath: agent.repository, writer: writer, clock: clock,
                logger: logger) : nil
        let pipeline = RecoveryPipeline(
            configuration: configuration, repositoryPath: agent.repository, host: agent.host, writer: writer,
            replica: replica, leases: leases, candidacy: candidacy, directory: directory, policy: policy,
            peers: cluster.peers, clock: clock, standby: standby, metrics: metrics, logger: logger)
        self.cluster = Clustered(
            configuration: cluster, replica: replica, leases: leases, candidacy: candidacy, policy: policy,
            pipeline: pipeline, standby: standby)
        state = Mutex(State(logContext: logContext, role: .peer))
    }

    var name: String { configuration.name }
    var ttl: Double { configuration.replication.leaseTTL }

    public var role: WorkloadRole { state.withLock { $0.role } }
    public var runtime: WorkloadRuntime? { state.withLock { $0.runtime } }
    public var snapshots: WorkloadSnapshots? { state.withLock { $0.snapshots } }
    public var isStandalone: Bool { cluster == nil }

    /// The epoch this host works under: its lease's, or the highest it accepted as a peer.
    var epoch: UInt64 {
        guard let cluster else { return runtime?.journal.epoch ?? 0 }
        return max(cluster.leases.epoch, cluster.replica.acceptedEpoch)
    }

    /// Standalone: mounts the data dir. Clustered: nothing yet; the lease decides when to mount,
    /// and `WorkloadService` drives the control loop (`controlTick`).
    func start() throws {
        guard let cluster else {
            guard let runtime else { return }
            try runtime.start()
            let position = runtime.journal.writer.lastPosition.map { "\($0)" } ?? "empty"
            let recovery = runtime.journal.writer.recovery
            let torn = recovery.tornBytesRemoved > 0 ? " (cut a torn tail of \(recovery.tornBytesRemoved) bytes)" : ""
            logger.info(
                "data dir \(configuration.dataDir) mounted over \(configuration.backingDir), epoch \(runtime.journal.epoch), journal at \(position)\(torn)"
            )
            return
        }
        _ = cluster
    }

    /// From now on control turns, renewals and scheduled snapshots do nothing (the agent is
    /// shutting down); `stop` follows.
    func beginStopping() { stopping.store(true, ordering: .sequentiallyConsistent) }

    /// Throws when a standalone workload's data dir was unmounted from outside the agent.
    func checkMounted() throws {
        guard isStandalone, !isStopping, let runtime, !runtime.mount.isServing else { return }
        throw LifeboatError(
            .operationFailed,
            "the data dir \(configuration.dataDir) of workload \(name) was unmounted from outside the agent",
            hint: "restart the agent")
    }

    /// Stops the service and unmounts (SIGTERM of the agent). A clustered lease is not renewed
    /// any more, so it expires and a peer takes over.
    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        guard cluster != nil else {
            runtime?.stop()
            return
        }
        let (service, runtime, group) = state.withLock { state in
            state.role = .stopped
            return (state.service, state.runtime, state.group)
        }
        service?.stop()
        runtime?.stop()
        group?.stop()
    }

    // MARK: - control loop

    private var isStopping: Bool { stopping.load(ordering: .sequentiallyConsistent) }

    /// How long the control loop waits between ticks: a primary looks often, so its renewals
    /// never come near its fencing deadline.
    var controlInterval: Double {
        role == .primary ? min(max(ttl / 10, 0.05), 0.5) : min(max(ttl / 5, 0.1), 1)
    }

    /// One turn of the control loop (blocking: it may take the lease and recover). A peer
    /// reads the lease and may take it; a primary renews, gives up a lease its journal can no
    /// longer honour, and restarts a service that exited.
    func controlTick() {
        guard let cluster, !isStopping else { return }
        switch role {
        case .peer:
            peerTick(cluster)
        case .primary:
            if cluster.leases.renewalDue { renew(cluster) }
            if role == .primary, let reason = state.withLock({ $0.runtime?.journal.failureReason }) {
                // The journal refuses writes (fenced by its own deadline, or a failed
                // write): this host cannot serve any more. Give the lease up at once.
                cluster.leases.release(epoch: cluster.leases.epoch)
                demote(cluster, reason: "the journal refuses writes (\(reason))")
            }
            if role == .primary { superviseService() }
        case .recovering, .fenced, .standalone, .stopped:
            break
        }
    }

    private let leaseChanged = Atomic<Bool>(false)
    /// Why the last read or renewal of the lease failed; nil once one succeeds again.
    private let coordinatorProblem = Mutex<String?>(nil)

    /// Why this host cannot reach the coordinator now (status and `/readyz` say it).
    public var coordinatorError: String? { coordinatorProblem.withLock { $0 } }

    /// The coordinator's changes of this workload's lease (empty for a standalone workload).
    func leaseChanges() -> AsyncStream<Lease?> {
        guard let cluster else { return AsyncStream { $0.finish() } }
        return cluster.leases.coordinator.leaseChanges(name)
    }

    /// Notes a change of the lease for the next control turn (only a peer acts on it).
    func noteLeaseChange() {
        if role == .peer { leaseChanged.store(true, ordering: .relaxed) }
    }

    /// True once after a change of the lease was noted.
    func takeLeaseChange() -> Bool { leaseChanged.exchange(false, ordering: .relaxed) }

    /// Steps down at once when this primary's fencing deadline has passed (its renewals have
    /// failed for most of a TTL, e.g. its link is cut), without waiting for the renewal in
    /// flight to give up: the service is stopped and the data dir unmounted before another
    /// host can take the lease. Called beside the control loop every `fenceCheckInterval`.
    func fenceIfPastDeadline() {
        guard let cluster, !isStopping, role == .primary, let reason = cluster.leases.fenceReason() else { return }
        demote(cluster, reason: reason)
    }

    /// How often `fenceIfPastDeadline` looks.
    static let fenceCheckInterval = 0.1

    /// How often the lease is renewed while a recovery runs (the control loop is busy with it).
    var recoveryRenewalInterval: Double { ttl / 4 }

    /// Renews the lease while this host recovers (called beside the busy control loop).
    func renewWhileRecovering() {
        guard let cluster, !isStopping, role == .recovering else { return }
        renew(cluster)
    }

    /// How often a warm copy applies what arrived (`standby: warm`).
    static let warmRoundInterval = 1.0

    /// One round of the warm copy while this host is a peer (blocking: beside the control loop).
    func warmRound() {
        guard let cluster, let standby = cluster.standby, !isStopping, role == .peer else { return }
        standby.round(history: cluster.leases.lease?.history)
    }

    /// The warm copy's status (`standby: warm` only).
    var standbyStatus: StandbyStatus? { cluster?.standby?.status }

    /// What this host holds, for the candidacy. A backing dir that cannot be listed counts as
    /// holding data (so this host never defers to others on a guess).
    private func holding() -> LocalHolding {
        let backing: BackingState
        do {
            backing = try BackingDir.state(of: configuration)
        } catch {
            logger.error("\(error)")
            backing = .captured
        }
        return LocalHolding(durable: writer.durablePosition, backing: backing)
    }

    /// A peer reads the lease and takes it when it is free and this host is the best choice.
    private func peerTick(_ cluster: Clustered) {
        let lease: Lease?
        do {
            lease = try cluster.leases.read()
            coordinatorProblem.withLock { $0 = nil }
        } catch {
            logger.warning("cannot read the lease: \(error)")
            coordinatorProblem.withLock { $0 = "cannot read the lease: \(error)" }
            return
        }
        switch cluster.candidacy.decide(lease: lease, local: holding()) {
        case .bootstrap: takeLease(cluster, previous: nil, kind: .bootstrap)
        case .switchover(let lease): takeLease(cluster, previous: lease, kind: .switchover)
        case .failover(let lease): takeLease(cluster, previous: lease, kind: .failover)
        case .held, .wait: return
        }
    }

    /// Takes the lease with the next epoch, then recovers; a failed recovery releases it.
    private func takeLease(_ cluster: Clustered, previous: Lease?, kind: RecoveryKind) {
        let takeover = Takeover(leases: cluster.leases, candidacy: cluster.candidacy, clock: clock, logger: logger)
        let outcome = takeover.run(
            previous: previous, kind: kind, acceptedEpoch: cluster.replica.acceptedEpoch,
            journalEpoch: writer.lastPosition?.epoch ?? 0,
            taken: { lease in
                do {
                    try cluster.replica.accept(epoch: lease.epoch)
                } catch {
                    logger.error("\(error)")
                }
                state.withLock { $0.role = .recovering }
                logger.info(
                    "took the lease at epoch \(lease.epoch) (\(kind.rawValue)\(previous.map { ", previous holder \($0.holder) at epoch \($0.epoch)" } ?? ""))"
                )
            },
            recover: { lease, report in
                try recover(
                    cluster, lease: lease, fresh: previous == nil,
                    lostHolder: kind == .failover ? previous?.holder : nil, report: &report)
            })
        if case .failed = outcome { demote(cluster, reason: "recovery failed") }
    }

    /// Renews the lease; demotes this host when another one holds it now, or when the
    /// coordinator stayed unreachable past the fencing deadline.
    private func renew(_ cluster: Clustered) {
        let epoch = cluster.leases.epoch
        let renewal = cluster.leases.renew()
        if case .unreachable(let reason, _) = renewal {
            logger.warning("cannot renew the lease: \(reason)")
            coordinatorProblem.withLock { $0 = "cannot renew the lease: \(reason)" }
        } else {
            coordinatorProblem.withLock { $0 = nil }
        }
        if let reason = renewal.demotionReason(epoch: epoch) { demote(cluster, reason: reason) }
    }

    /// Stops acknowledging, stops the service, unmounts, and rejoins as a peer.
    private func demote(_ cluster: Clustered, reason: String) {
        cluster.leases.disarm()
        lastScheduled.withLock { $0 = nil }
        let (service, runtime, group) = state.withLock {
            state -> (ServiceProcess?, WorkloadRuntime?, (any ReplicationProgress)?) in
            if state.role == .stopped { return (nil, nil, nil) }
            state.role = .fenced
            defer {
                state.service = nil
                state.runtime = nil
                state.snapshots = nil
                state.group = nil
            }
            return (state.service, state.runtime, state.group)
        }
        logger.warning("\(reason); fenced: stopping the service and rejoining as a peer")
        runtime?.journal.refuse("this host lost the lease of workload \(name)")
        service?.kill()
        runtime?.stop()
        group?.stop()
        state.withLock { state in
            if state.role == .fenced { state.role = .peer }
        }
        cluster.standby?.resume()
    }

    // MARK: - recovery

    private func recover(
        _ cluster: Clustered, lease: Lease, fresh: Bool, lostHolder: String?, report: inout RecoveryReport
    ) throws {
        let leases = cluster.leases
        let hooks = RecoveryPipeline.Hooks(
            mounted: { [self] runtime, group, snapshots in
                state.withLock { state in
                    state.runtime = runtime
                    state.group = group
                    state.snapshots = snapshots
                }
            },
            serviceStarted: { [self] service in state.withLock { $0.service = service } },
            mayCommit: { [self] in leases.fenceReason() ?? (role == .primary ? nil : "this host is not the primary") })
        try cluster.pipeline.run(lease: lease, fresh: fresh, lostHolder: lostHolder, report: &report, hooks: hooks)
        let finished = report
        state.withLock { state in
            state.role = .primary
            state.lastRecovery = finished
            state.serviceRestarts = 0
        }
        logger.info(
            "primary at epoch \(lease.epoch) from \(report.position ?? "an empty journal") (\(report.kind.rawValue): \(report.warmFrom.map { "warm copy at \($0), " } ?? "")snapshot \(report.snapshotBytes) bytes in \(fmt(report.snapshotLoadSeconds)) s, delta \(report.deltaRecords) records / \(report.deltaBytes) bytes from \(report.deltaPeer ?? "no peer") in \(fmt(report.deltaSeconds)) s, replay \(report.replayedRecords) records in \(fmt(report.replaySeconds)) s, service in \(fmt(report.serviceStartSeconds)) s, total \(fmt(report.totalSeconds)) s)"
        )
    }

    /// When (monotonic seconds) the schedule counts the last snapshot of this primary term;
    /// nil until the term's first look at the repository.
    private let lastScheduled = Mutex<Double?>(nil)
    private let lastServiceRestart = Mutex<Double>(0)

    /// Where a new term's schedule starts (the monotonic time it counts as the last snapshot):
    /// the newest snapshot in the repository, of any host, `age` seconds old (nil: none, or
    /// unreadable), so a primary that changes more often than `every` still takes snapshots
    /// and one is due at once when the newest is `every` old or older.
    static func scheduleStart(now: Double, newestAge age: Double?, every: Double) -> Double {
        now - min(max(age ?? every, 0), every)
    }

    /// Takes the scheduled snapshot (`snapshot_every`) when one is due and this host is primary
    /// (blocking: `WorkloadService` calls it beside the control loop, so the lease keeps being
    /// renewed meanwhile). A term's first call reads the newest snapshot's age from the
    /// repository (`scheduleStart`).
    func snapshotIfDue() {
        guard let every = configuration.snapshotEvery, !isStopping, role == .primary,
            let snapshots = state.withLock({ $0.snapshots })
        else { return }
        if lastScheduled.withLock({ $0 }) == nil {
            let start = WorkloadSupervisor.scheduleStart(
                now: clock.monotonic, newestAge: newestSnapshotAge(), every: every)
            lastScheduled.withLock { $0 = start }
        }
        let now = clock.monotonic
        let due = lastScheduled.withLock { last -> Bool in
            if let previous = last, now - previous < every { return false }
            last = now
            return true
        }
        guard due else { return }
        // A failure is logged by snapshotNow; the next one is due after `every` again.
        _ = try? snapshots.snapshotNow(tags: ["scheduled"])
    }

    /// Seconds since the newest snapshot of this workload in the repository was taken; nil
    /// when there is none or the repository cannot be read (the snapshot is then due).
    private func newestSnapshotAge() -> Double? {
        do {
            let repository = try Repository.open(at: agent.repository)
            guard let newest = try repository.listSnapshots().last(where: { $0.snapshot.workload == name }) else {
                return nil
            }
            let taken = Double(newest.snapshot.time.seconds) + Double(newest.snapshot.time.nanoseconds) / 1e9
            return clock.wall - taken
        } catch {
            logger.warning("cannot read the newest snapshot's time for the schedule: \(error); taking one now")
            return nil
        }
    }

    /// Whether supervision starts an exited service again: never while a switchover stopped
    /// it on purpose, and never over a data dir that is not served (the service would write
    /// into the bare mount point, past the capture: writes it acknowledged would be lost).
    static func mayRestartService(running: Bool, switchingOver: Bool, mounted: Bool) -> Bool {
        !running && !switchingOver && mounted
    }

    /// Held while supervision restarts the service and while a switchover begins, so a
    /// restart in flight finishes before the switchover stops the service.
    private let serviceControl = NSLock()

    /// Restarts a service that exited on its own while this host is primary.
    private func superviseService() {
        serviceControl.lock()
        defer { serviceControl.unlock() }
        let (found, switchingOver, mounted) = state.withLock {
            ($0.service, $0.switchingOver, $0.runtime?.mount.isServing ?? false)
        }
        guard let service = found,
            WorkloadSupervisor.mayRestartService(
                running: service.isRunning, switchingOver: switchingOver, mounted: mounted)
        else { return }
        // At most one restart a second, so a service that cannot start does not spin.
        let now = clock.monotonic
        let due = lastServiceRestart.withLock { last -> Bool in
            if now - last < 1 { return false }
            last = now
            return true
        }
        guard due else { return }
        let restarts = state.withLock { state -> Int in
            state.serviceRestarts += 1
            return state.serviceRestarts
        }
        logger.warning("the service exited; restarting it (restart \(restarts))")
        do {
            try service.start()
        } catch {
            logger.error("\(error)")
        }
    }

    // MARK: - switchover

    /// Hands the primary role to `target` (or the most advanced connected peer) with no loss:
    /// stop the service, unmount, wait until the target holds every record, hand the lease.
    public func switchover(to target: String?) throws -> String {
        let (role, group, runtime, service) = state.withLock { ($0.role, $0.group, $0.runtime, $0.service) }
        guard let cluster, role == .primary, let group, let runtime else {
            throw LifeboatError(.badInput, "workload \(name) is not primary on \(agent.host) (it is \(role.rawValue))")
        }
        let switchover = Switchover(workload: name, host: agent.host, leases: cluster.leases, logger: logger)
        serviceControl.lock()
        state.withLock { $0.switchingOver = true }
        serviceControl.unlock()
        defer { state.withLock { $0.switchingOver = false } }
        let (chosen, last) = try switchover.run(
            to: target, group: group, lastSeq: { writer.lastPosition?.seq ?? 0 },
            stopServing: {
                service?.stop()
                runtime.stop()
            },
            resumeServing: { try restartAfterAbortedSwitchover(runtime: runtime, service: service) })
        state.withLock { state in
            state.role = .peer
            state.runtime = nil
            state.snapshots = nil
            state.group = nil
            state.service = nil
        }
        lastScheduled.withLock { $0 = nil }
        cluster.standby?.resume()
        logger.info("handed the lease to \(chosen) at \(last); rejoining as a peer")
        return chosen
    }

    private func restartAfterAbortedSwitchover(runtime old: WorkloadRuntime, service: ServiceProcess?) throws {
        let runtime = try WorkloadRuntime(configuration, journal: old.journal, metrics: metrics, logger: logger)
        try runtime.start()
        state.withLock { $0.runtime = runtime }
        try service?.start()
    }

    // MARK: - status

    /// Everything status and metrics show, read at once.
    struct Snapshot {
        var state: State
        var lease: Lease?
        var alert: String?
    }

    var current: Snapshot {
        Snapshot(state: state.withLock { $0 }, lease: cluster?.leases.lease, alert: cluster?.policy.alert)
    }

    var syncTimeouts: UInt64 { cluster?.policy.syncTimeouts ?? 0 }
}

extension WorkloadSupervisor: ReplicaProvider {
    public func replica(for workload: String) -> ReplicaJournal? {
        workload == name && role == .peer ? cluster?.replica : nil
    }
    public func journalDirectory(for workload: String) -> String? {
        workload == name ? configuration.journalDir : nil
    }
    public func describe(_ workload: String) -> (durable: Position?, epoch: UInt64, role: String)? {
        guard workload == name else { return nil }
        return (writer.durablePosition, epoch, role.rawValue)
    }
    public func currentLease(_ workload: String) throws -> Lease? {
        guard workload == name, let cluster else { return nil }
        return try cluster.leases.coordinator.lease(workload)
    }
    public func received(_ workload: String, bytes: Int, records: Int) {
        counters.bytesReceived.add(UInt64(bytes), ordering: .relaxed)
        counters.recordsReceived.add(UInt64(records), ordering: .relaxed)
    }
    public func hasSeedData(_ workload: String) -> Bool {
        workload == name && (try? BackingDir.state(of: configuration)) == .seeded
    }
}
