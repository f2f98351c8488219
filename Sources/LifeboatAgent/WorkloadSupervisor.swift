import Foundation
import LifeboatAPI
import LifeboatCapture
public import LifeboatCluster
public import LifeboatCore
public import LifeboatJournal
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
    let log: @Sendable (String) -> Void
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
    }

    struct State {
        var role: WorkloadRole
        var runtime: WorkloadRuntime?
        var snapshots: WorkloadSnapshots?
        var group: (any ReplicationProgress)?
        var service: ServiceProcess?
        var lastRecovery: RecoveryReport?
        var serviceRestarts = 0
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
        log: @escaping @Sendable (String) -> Void
    ) throws {
        self.configuration = configuration
        self.agent = agent
        self.log = log
        self.metrics = metrics
        clock = SystemClock()
        cluster = nil
        let runtime = try WorkloadRuntime(
            configuration, repository: agent.repository, host: agent.host, metrics: metrics, log: log)
        writer = runtime.journal.writer
        let snapshots = WorkloadSnapshots(runtime: runtime, repositoryPath: agent.repository, host: agent.host)
        state = Mutex(State(role: .standalone, runtime: runtime, snapshots: snapshots))
    }

    /// A workload of a cluster: starts as a peer; `start()` runs its control loop.
    init(
        _ configuration: WorkloadConfiguration, agent: AgentConfiguration, cluster: ClusterConfiguration,
        coordinator: any Coordinator, peers directory: any PeerDirectory = NetworkPeers(),
        clock: any AgentClock = SystemClock(), metrics: WorkloadMetrics, log: @escaping @Sendable (String) -> Void
    ) throws {
        self.configuration = configuration
        self.agent = agent
        self.clock = clock
        self.log = log
        self.metrics = metrics
        try WorkloadRuntime.checkDirectories(configuration)
        let writer = try JournalWriter(directory: configuration.journalDir)
        self.writer = writer
        let replica = ReplicaJournal(workload: configuration.name, writer: writer, log: log)
        let ttl = configuration.replication.leaseTTL
        let leases = LeaseKeeper(
            workload: configuration.name, host: agent.host, ttl: ttl, coordinator: coordinator, clock: clock)
        let candidacy = FailoverCandidacy(
            workload: configuration.name, host: agent.host, ttl: ttl, peers: cluster.peers, directory: directory,
            clock: clock)
        let policy = ReplicationPolicy(workload: configuration.name, settings: configuration.replication, log: log)
        let pipeline = RecoveryPipeline(
            configuration: configuration, repositoryPath: agent.repository, host: agent.host, writer: writer,
            replica: replica, leases: leases, candidacy: candidacy, directory: directory, policy: policy,
            peers: cluster.peers, clock: clock, metrics: metrics, log: log)
        self.cluster = Clustered(
            configuration: cluster, replica: replica, leases: leases, candidacy: candidacy, policy: policy,
            pipeline: pipeline)
        state = Mutex(State(role: .peer))
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

    /// Standalone: mounts the data dir. Clustered: starts the control loop on a thread of its
    /// own (the lease decides when to mount).
    func start() throws {
        guard let cluster else {
            guard let runtime else { return }
            try runtime.start()
            let position = runtime.journal.writer.lastPosition.map { "\($0)" } ?? "empty"
            let recovery = runtime.journal.writer.recovery
            log(
                "workload \(name): data dir \(configuration.dataDir) mounted over \(configuration.backingDir), epoch \(runtime.journal.epoch), journal at \(position)"
                    + (recovery.tornBytesRemoved > 0 ? " (cut a torn tail of \(recovery.tornBytesRemoved) bytes)" : ""))
            return
        }
        let thread = Thread { [self] in controlLoop(cluster) }
        thread.name = "control-\(name)"
        thread.start()
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

    private func controlLoop(_ cluster: Clustered) {
        while !isStopping {
            let isPrimary = role == .primary
            // A primary looks often: its renewals must never come near its fencing deadline.
            let tick = isPrimary ? min(max(ttl / 10, 0.05), 0.5) : min(max(ttl / 5, 0.1), 1)
            Thread.sleep(forTimeInterval: tick)
            if isStopping { break }
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
                if role == .primary {
                    superviseService()
                    scheduleSnapshot()
                }
            case .recovering, .fenced, .standalone, .stopped:
                break
            }
        }
    }

    /// What this host holds, for the candidacy. A backing dir that cannot be listed counts as
    /// holding data (so this host never defers to others on a guess).
    private func holding() -> LocalHolding {
        let backing: BackingState
        do {
            backing = try BackingDir.state(of: configuration)
        } catch {
            log("workload \(name): \(error)")
            backing = .captured
        }
        return LocalHolding(durable: writer.durablePosition, backing: backing)
    }

    /// A peer reads the lease and takes it when it is free and this host is the best choice.
    private func peerTick(_ cluster: Clustered) {
        let lease: Lease?
        do {
            lease = try cluster.leases.read()
        } catch {
            log("workload \(name): cannot read the lease: \(error)")
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
        let takeover = Takeover(leases: cluster.leases, candidacy: cluster.candidacy, clock: clock, log: log)
        let outcome = takeover.run(
            previous: previous, kind: kind, acceptedEpoch: cluster.replica.acceptedEpoch,
            journalEpoch: writer.lastPosition?.epoch ?? 0,
            taken: { lease in
                do {
                    try cluster.replica.accept(epoch: lease.epoch)
                } catch {
                    log("workload \(name): \(error)")
                }
                state.withLock { $0.role = .recovering }
                log(
                    "workload \(name): took the lease at epoch \(lease.epoch) (\(kind.rawValue)\(previous.map { ", previous holder \($0.holder) at epoch \($0.epoch)" } ?? ""))"
                )
                let keeper = Thread { [self] in keepLeaseWhileRecovering(cluster, epoch: lease.epoch) }
                keeper.name = "lease-\(name)"
                keeper.start()
            },
            recover: { lease, report in try recover(cluster, lease: lease, fresh: previous == nil, report: &report) })
        if case .failed = outcome { demote(cluster, reason: "recovery failed") }
    }

    /// Renews the lease every TTL/4 until the recovery ends (the control loop renews after).
    private func keepLeaseWhileRecovering(_ cluster: Clustered, epoch: UInt64) {
        while role == .recovering && cluster.leases.epoch == epoch {
            Thread.sleep(forTimeInterval: ttl / 4)
            if role == .recovering { renew(cluster) }
        }
    }

    /// Renews the lease; demotes this host when another one holds it now, or when the
    /// coordinator stayed unreachable past the fencing deadline.
    private func renew(_ cluster: Clustered) {
        let epoch = cluster.leases.epoch
        let renewal = cluster.leases.renew()
        if case .unreachable(let reason, _) = renewal {
            log("workload \(name): cannot renew the lease: \(reason)")
        }
        if let reason = renewal.demotionReason(epoch: epoch) { demote(cluster, reason: reason) }
    }

    /// Stops acknowledging, stops the service, unmounts, and rejoins as a peer.
    private func demote(_ cluster: Clustered, reason: String) {
        cluster.leases.disarm()
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
        log("workload \(name): \(reason); fenced: stopping the service and rejoining as a peer")
        runtime?.journal.refuse("this host lost the lease of workload \(name)")
        service?.kill()
        runtime?.stop()
        group?.stop()
        state.withLock { state in
            if state.role == .fenced { state.role = .peer }
        }
    }

    // MARK: - recovery

    private func recover(_ cluster: Clustered, lease: Lease, fresh: Bool, report: inout RecoveryReport) throws {
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
        try cluster.pipeline.run(lease: lease, fresh: fresh, report: &report, hooks: hooks)
        let finished = report
        state.withLock { state in
            state.role = .primary
            state.lastRecovery = finished
            state.serviceRestarts = 0
        }
        log(
            "workload \(name): primary at epoch \(lease.epoch) from \(report.position ?? "an empty journal") (\(report.kind.rawValue): snapshot \(report.snapshotBytes) bytes in \(fmt(report.snapshotLoadSeconds)) s, delta \(report.deltaRecords) records / \(report.deltaBytes) bytes from \(report.deltaPeer ?? "no peer") in \(fmt(report.deltaSeconds)) s, replay \(report.replayedRecords) records in \(fmt(report.replaySeconds)) s, service in \(fmt(report.serviceStartSeconds)) s, total \(fmt(report.totalSeconds)) s)"
        )
    }

    private let snapshotRunning = Atomic<Bool>(false)
    private let lastScheduled = Mutex<Double?>(nil)
    private let lastServiceRestart = Mutex<Double>(0)

    /// Takes the scheduled snapshot (`snapshot_every`) on a thread of its own, so the lease
    /// keeps being renewed meanwhile.
    private func scheduleSnapshot() {
        guard let every = configuration.snapshotEvery, let snapshots = state.withLock({ $0.snapshots }) else { return }
        let now = clock.monotonic
        let due = lastScheduled.withLock { last -> Bool in
            guard let previous = last else {
                last = now
                return false
            }
            if now - previous < every { return false }
            last = now
            return true
        }
        guard due, !snapshotRunning.exchange(true, ordering: .sequentiallyConsistent) else { return }
        let thread = Thread { [self] in
            defer { snapshotRunning.store(false, ordering: .sequentiallyConsistent) }
            do {
                _ = try snapshots.snapshotNow(tags: ["scheduled"])
            } catch {
                log("workload \(name): scheduled snapshot failed: \(error)")
            }
        }
        thread.name = "snapshot-\(name)"
        thread.start()
    }

    /// Restarts a service that exited on its own while this host is primary.
    private func superviseService() {
        guard let service = state.withLock({ $0.service }), !service.isRunning else { return }
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
        log("workload \(name): the service exited; restarting it (restart \(restarts))")
        do {
            try service.start()
        } catch {
            log("workload \(name): \(error)")
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
        let switchover = Switchover(workload: name, host: agent.host, leases: cluster.leases, log: log)
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
        log("workload \(name): handed the lease to \(chosen) at \(last); rejoining as a peer")
        return chosen
    }

    private func restartAfterAbortedSwitchover(runtime old: WorkloadRuntime, service: ServiceProcess?) throws {
        let runtime = try WorkloadRuntime(configuration, journal: old.journal, metrics: metrics, log: log)
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
    public func leaseEpoch(_ workload: String) -> UInt64? {
        (try? cluster?.leases.coordinator.lease(workload))??.epoch
    }
    public func received(_ workload: String, bytes: Int, records: Int) {
        counters.bytesReceived.add(UInt64(bytes), ordering: .relaxed)
        counters.recordsReceived.add(UInt64(records), ordering: .relaxed)
    }
    public func hasSeedData(_ workload: String) -> Bool {
        workload == name && (try? BackingDir.state(of: configuration)) == .seeded
    }
}
