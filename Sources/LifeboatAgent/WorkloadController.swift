import CLifeboatPosix
import Foundation
import Glibc
import LifeboatCapture
public import LifeboatCluster
public import LifeboatCore
public import LifeboatJournal
import LifeboatRepository
import Synchronization

/// One workload on a clustered agent: its role (peer or primary), the lease that decides it,
/// and the steps between them: recovery (snapshot, delta, replay, mount, service), renewal,
/// fencing and switchover.
public final class WorkloadController: Sendable {
    public enum Role: String, Sendable, Codable {
        /// Runs alone: no coordinator, no peers.
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

    public let configuration: WorkloadConfiguration
    let agent: AgentConfiguration
    let cluster: ClusterConfiguration
    let coordinator: any Coordinator
    public let writer: JournalWriter
    let replica: ReplicaJournal
    let log: @Sendable (String) -> Void

    struct State {
        var role: Role = .peer
        var epoch: UInt64 = 0
        var lease: Lease?
        var runtime: WorkloadRuntime?
        var snapshots: WorkloadSnapshots?
        var group: ReplicationGroup?
        var service: ServiceProcess?
        var lastRecovery: RecoveryReport?
        var alert: String?
        var candidateSince: Double?
        var serviceRestarts = 0
    }
    private let state = Mutex(State())
    /// Serializes every lease write of this host (renewal, history, handover).
    private let leaseWrites = Mutex(())
    /// Monotonic nanoseconds after which this host must not acknowledge anything.
    private let fenceDeadline = Atomic<Int64>(0)
    private let stopping = Atomic<Bool>(false)
    let counters = Counters()

    final class Counters: Sendable {
        let bytesReceived = Atomic<UInt64>(0)
        let recordsReceived = Atomic<UInt64>(0)
        let syncTimeouts = Atomic<UInt64>(0)
    }

    init(
        _ configuration: WorkloadConfiguration, agent: AgentConfiguration, cluster: ClusterConfiguration,
        coordinator: any Coordinator, log: @escaping @Sendable (String) -> Void
    ) throws {
        self.configuration = configuration
        self.agent = agent
        self.cluster = cluster
        self.coordinator = coordinator
        self.log = log
        try WorkloadRuntime.checkDirectories(configuration)
        writer = try JournalWriter(directory: configuration.journalDir)
        replica = ReplicaJournal(workload: configuration.name, writer: writer, log: log)
        state.withLock { $0.epoch = replica.acceptedEpoch }
    }

    var name: String { configuration.name }
    var ttl: Double { configuration.replication.leaseTTL }

    public var role: Role { state.withLock { $0.role } }
    public var runtime: WorkloadRuntime? { state.withLock { $0.runtime } }
    public var snapshots: WorkloadSnapshots? { state.withLock { $0.snapshots } }

    /// Starts the control loop on a thread of its own.
    func start() {
        let thread = Thread { [self] in controlLoop() }
        thread.name = "control-\(name)"
        thread.start()
    }

    /// Stops the service and unmounts (SIGTERM of the agent). The lease is not renewed any
    /// more, so it expires and a peer takes over.
    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        let (service, runtime, group) = state.withLock { state in
            state.role = .stopped
            return (state.service, state.runtime, state.group)
        }
        service?.stop()
        runtime?.stop()
        group?.stop()
    }

    // MARK: - control loop

    private func controlLoop() {
        while !stopping.load(ordering: .sequentiallyConsistent) {
            let isPrimary = role == .primary
            // A primary looks often: its renewals must never come near its fencing deadline.
            let tick = isPrimary ? min(max(ttl / 10, 0.05), 0.5) : min(max(ttl / 5, 0.1), 1)
            Thread.sleep(forTimeInterval: tick)
            if stopping.load(ordering: .sequentiallyConsistent) { break }
            switch role {
            case .peer:
                peerTick()
            case .primary:
                if monotonicSeconds() - lastRenewal.withLock({ $0 }) >= ttl / 4 { renew() }
                if role == .primary, let reason = state.withLock({ $0.runtime?.journal.failureReason }) {
                    // The journal refuses writes (fenced by its own deadline, or a failed
                    // write): this host cannot serve any more. Give the lease up at once.
                    release(epoch: state.withLock { $0.epoch })
                    demote(reason: "the journal refuses writes (\(reason))")
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

    private let lastServiceRestart = Mutex<Double>(0)
    private let lastFailedRecovery = Mutex<Double>(-1e9)
    /// Set while sync replication is degraded to async (`on_sync_timeout: degrade`).
    private let degraded = Atomic<Bool>(false)

    /// When the lease was last renewed (monotonic seconds).
    private let lastRenewal = Mutex<Double>(0)

    /// A peer checks the lease and takes it when it is free and this host is the best choice.
    private func peerTick() {
        let lease: Lease?
        do {
            lease = try coordinator.lease(name)
        } catch {
            log("workload \(name): cannot read the lease: \(error)")
            return
        }
        state.withLock { $0.lease = lease }
        guard let lease else {
            acquire(previous: nil, kind: "bootstrap")
            return
        }
        if lease.holder == agent.host && lease.handedOverBy != nil {
            acquire(previous: lease, kind: "switchover")
            return
        }
        guard lease.isExpired() else {
            state.withLock { $0.candidateSince = nil }
            return
        }
        // After a failed recovery, leave the lease to the others for a while.
        if monotonicSeconds() - lastFailedRecovery.withLock({ $0 }) < 2 * ttl { return }
        if shouldWait(lease) { return }
        acquire(previous: lease, kind: "failover")
    }

    /// True while a reachable peer holds more of the journal than this host (or as much,
    /// with a smaller name): it should take the lease. After one more lease TTL this host
    /// goes ahead anyway.
    private func shouldWait(_ lease: Lease) -> Bool {
        let now = monotonicSeconds()
        let since = state.withLock { state in
            if state.candidateSince == nil { state.candidateSince = now }
            return state.candidateSince!
        }
        if now - since > ttl { return false }
        let mine = ownEnd(history: lease.history)?.seq ?? 0
        for peer in cluster.peers where peer.host != lease.holder {
            guard let info = PeerClient.query(peer.address, workload: name, timeout: 0.5), info.role == "peer" else {
                continue
            }
            let theirs = info.durable?.seq ?? 0
            if theirs > mine || (theirs == mine && peer.host < agent.host) { return true }
        }
        return false
    }

    /// This host's durable journal end, when it belongs to `history`.
    private func ownEnd(history: [EpochStart]) -> Position? {
        guard let durable = writer.durablePosition else { return nil }
        return history.contains(journalEnd: durable) ? durable : nil
    }

    /// Takes the lease with the next epoch by compare-and-swap, then recovers.
    private func acquire(previous: Lease?, kind: String) {
        let detected = Date().timeIntervalSince1970
        let leaseStart = monotonicSeconds()
        let epoch = max(previous?.epoch ?? 0, replica.acceptedEpoch, writer.lastPosition?.epoch ?? 0) + 1
        let proposal = Lease(
            workload: name, holder: agent.host, epoch: epoch, expiresAt: Date().timeIntervalSince1970 + ttl,
            version: 0, history: previous?.history ?? [])
        let taken: Lease?
        do {
            taken = try leaseWrites.withLock { _ in
                try coordinator.compareAndSwap(name, expectedVersion: previous?.version, proposal)
            }
        } catch {
            log("workload \(name): cannot write the lease: \(error)")
            return
        }
        guard let taken else { return }  // another host was faster
        armFence(from: leaseStart)
        lastRenewal.withLock { $0 = leaseStart }
        do {
            try replica.accept(epoch: epoch)
        } catch {
            log("workload \(name): \(error)")
        }
        var report = RecoveryReport(epoch: epoch, kind: kind, startedAt: detected)
        report.detectionSeconds = kind == "failover" ? max(0, detected - (previous?.expiresAt ?? detected)) : 0
        report.leaseSeconds = monotonicSeconds() - leaseStart
        state.withLock { state in
            state.role = .recovering
            state.epoch = epoch
            state.lease = taken
            state.candidateSince = nil
        }
        log(
            "workload \(name): took the lease at epoch \(epoch) (\(kind)\(previous.map { ", previous holder \($0.holder) at epoch \($0.epoch)" } ?? ""))"
        )
        let keeper = Thread { [self] in keepLeaseWhileRecovering(epoch: epoch) }
        keeper.name = "lease-\(name)"
        keeper.start()
        do {
            try recover(lease: taken, fresh: previous == nil, report: &report)
        } catch {
            lastFailedRecovery.withLock { $0 = monotonicSeconds() }
            log(
                "workload \(name): recovery at epoch \(epoch) failed: \(error); releasing the lease (this host waits \(fmt(2 * ttl)) s before trying again)"
            )
            release(epoch: epoch)
            demote(reason: "recovery failed")
        }
    }

    /// Renews the lease every TTL/3 until the recovery ends (the control loop renews after).
    private func keepLeaseWhileRecovering(epoch: UInt64) {
        while role == .recovering && state.withLock({ $0.epoch }) == epoch {
            Thread.sleep(forTimeInterval: ttl / 4)
            if role == .recovering { _ = renew() }
        }
    }

    /// From here on, nothing is acknowledged after `start + ttl - margin`.
    private func armFence(from start: Double) {
        let margin = max(ttl * 0.2, 0.2)
        fenceDeadline.store(Int64((start + ttl - margin) * 1e9), ordering: .sequentiallyConsistent)
    }

    /// Why this host may not acknowledge writes, or nil.
    func fenceReason() -> String? {
        let deadline = fenceDeadline.load(ordering: .sequentiallyConsistent)
        if Int64(monotonicSeconds() * 1e9) >= deadline {
            return "the lease of workload \(name) was not renewed in time; this host stops acknowledging writes"
        }
        return nil
    }

    /// Renews the lease; demotes this host when another one holds it now.
    @discardableResult
    private func renew() -> Bool {
        let start = monotonicSeconds()
        let epoch = state.withLock { $0.epoch }
        do {
            let renewed = try leaseWrites.withLock { _ -> Lease? in
                guard let current = try coordinator.lease(name), current.holder == agent.host, current.epoch == epoch,
                    current.handedOverBy == nil
                else { return nil }
                var next = current
                next.expiresAt = Date().timeIntervalSince1970 + ttl
                return try coordinator.compareAndSwap(name, expectedVersion: current.version, next)
            }
            guard let renewed else {
                let holder = (try? coordinator.lease(name)).flatMap { $0 }
                demote(
                    reason:
                        "lost the lease\(holder.map { " to \($0.holder) at epoch \($0.epoch)" } ?? "") while at epoch \(epoch)"
                )
                return false
            }
            state.withLock { $0.lease = renewed }
            armFence(from: start)
            lastRenewal.withLock { $0 = start }
            return true
        } catch {
            log("workload \(name): cannot renew the lease: \(error)")
            if fenceReason() != nil { demote(reason: "the lease could not be renewed before it ran out") }
            return false
        }
    }

    /// Gives the lease up at once so another host need not wait for it to run out.
    private func release(epoch: UInt64) {
        _ = try? leaseWrites.withLock { _ in
            if let current = try coordinator.lease(name), current.holder == agent.host, current.epoch == epoch {
                var next = current
                next.expiresAt = Date().timeIntervalSince1970
                _ = try coordinator.compareAndSwap(name, expectedVersion: current.version, next)
            }
        }
    }

    /// Stops acknowledging, stops the service, unmounts, and rejoins as a peer.
    private func demote(reason: String) {
        fenceDeadline.store(0, ordering: .sequentiallyConsistent)
        let (service, runtime, group) = state.withLock {
            state -> (ServiceProcess?, WorkloadRuntime?, ReplicationGroup?) in
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

    /// Newest snapshot → backing dir; records after it from this host and the most advanced
    /// peer; replay; mount under the new epoch; stream to peers; start the service.
    private func recover(lease: Lease, fresh: Bool, report: inout RecoveryReport) throws {
        let epoch = lease.epoch
        // Fence older primaries in the repository too: their snapshots are refused from now on.
        try Repository.open(at: agent.repository).announceEpoch(epoch, workload: name)
        var snapshotPosition: Position?
        if !fresh {
            // 1. The newest snapshot of the workload, from the volume.
            let loadStart = monotonicSeconds()
            let repository = try Repository.open(at: agent.repository)
            let newest = try repository.listSnapshots().last {
                $0.snapshot.workload == name && $0.snapshot.position != nil
            }
            try clearDirectory(configuration.backingDir)
            if let newest {
                let restored = try repository.restore(snapshot: newest, target: configuration.backingDir)
                if !restored.failures.isEmpty {
                    throw LifeboatError(
                        .integrity, "snapshot \(newest.id.short) did not restore whole: \(restored.failures[0].error)")
                }
                report.snapshot = newest.id.hex
                report.snapshotBytes = restored.bytes
                snapshotPosition = newest.snapshot.position
                report.snapshotPosition = snapshotPosition.map { "\($0)" }
            }
            report.snapshotLoadSeconds = monotonicSeconds() - loadStart

            // 2. The delta: what this host holds after the snapshot, then the rest from a peer.
            let deltaStart = monotonicSeconds()
            let after = snapshotPosition?.seq ?? 0
            let own = writer.durablePosition
            let ownFits =
                own.map { lease.history.contains(journalEnd: $0) && $0.seq >= after && writer.firstSeq <= after + 1 }
                ?? false
            if !ownFits {
                try replica.reset(after: snapshotPosition ?? Position(epoch: 0, seq: 0))
            }
            report.localRecords = Int((writer.durablePosition?.seq ?? after) - after)
            let candidates = cluster.peers.compactMap { peer -> (PeerConfiguration, Position)? in
                guard let info = PeerClient.query(peer.address, workload: name, timeout: 1), let durable = info.durable,
                    info.role == "peer", lease.history.contains(journalEnd: durable)
                else { return nil }
                return (peer, durable)
            }.sorted { $0.1.seq > $1.1.seq }
            for (peer, durable) in candidates where durable.seq > (writer.durablePosition?.seq ?? 0) {
                do {
                    let from = (writer.durablePosition?.seq ?? after) + 1
                    let fetched = try PeerClient.fetch(peer.address, workload: name, from: from, into: writer)
                    report.deltaRecords += fetched.records
                    report.deltaBytes += fetched.bytes
                    report.deltaPeer = peer.host
                    break
                } catch {
                    log("workload \(name): fetching the delta from \(peer.host) failed: \(error); trying the next peer")
                }
            }
            report.deltaSeconds = monotonicSeconds() - deltaStart

            // 3. Replay the records after the snapshot onto the restored files.
            let replayStart = monotonicSeconds()
            let replayer = try Replayer(root: configuration.backingDir)
            try JournalReader.read(directory: configuration.journalDir, from: after + 1) { record in
                try replayer.apply(record)
                return true
            }
            replayer.closeFiles()
            report.replayedRecords = replayer.applied
            // No syncfs here: the journal holds every record after the snapshot, and in a
            // cluster a backing dir is always rebuilt by the next recovery. The checkpoint
            // flushes it in the background within seconds.
            report.replaySeconds = monotonicSeconds() - replayStart
        }
        try writer.sync()
        let end = writer.lastPosition
        report.position = end.map { "\($0)" }

        // 4. The new epoch begins after the last record: record it in the lease's history.
        let history = try leaseWrites.withLock { _ -> [EpochStart] in
            guard var current = try coordinator.lease(name), current.holder == agent.host, current.epoch == epoch else {
                throw LifeboatError(.operationFailed, "the lease of \(name) moved to another host during recovery")
            }
            current.history.append(EpochStart(epoch: epoch, firstSeq: (end?.seq ?? 0) + 1))
            current.expiresAt = Date().timeIntervalSince1970 + ttl
            guard let stored = try coordinator.compareAndSwap(name, expectedVersion: current.version, current) else {
                throw LifeboatError(.operationFailed, "the lease of \(name) changed during recovery")
            }
            state.withLock { $0.lease = stored }
            return stored.history
        }

        // 5. Mount under the new epoch, streaming to the peers.
        let mountStart = monotonicSeconds()
        let group = ReplicationGroup(
            workload: name, host: agent.host, epoch: epoch, history: history, writer: writer, peers: cluster.peers,
            log: log)
        let replication = configuration.replication
        let journal = CaptureJournal(
            writer: writer, epoch: epoch, fence: { [self] in fenceReason() },
            replicated: { [self] seq in
                if replication.mode == .async {
                    group.kick()
                    return true
                }
                if degraded.load(ordering: .relaxed) {
                    // Degraded: acknowledge from the local journal until enough peers are back.
                    if group.progress.filter(\.connected).count < replication.minSyncPeers {
                        group.kick()
                        return true
                    }
                    degraded.store(false, ordering: .relaxed)
                    state.withLock { $0.alert = nil }
                    log(
                        "workload \(name): \(replication.minSyncPeers) sync peer(s) connected again; sync replication resumes"
                    )
                }
                if group.waitReplicated(seq: seq, count: replication.minSyncPeers, timeout: replication.syncTimeout) {
                    return true
                }
                counters.syncTimeouts.add(1, ordering: .relaxed)
                let reason =
                    "fewer than \(replication.minSyncPeers) sync peer(s) acknowledged seq \(seq) within \(replication.syncTimeout) s"
                state.withLock { $0.alert = reason }
                if replication.onTimeout == .degrade {
                    degraded.store(true, ordering: .relaxed)
                    log(
                        "workload \(name): ALERT \(reason); acknowledging from the local journal only (degraded to async)"
                    )
                    return true
                }
                log("workload \(name): \(reason); the fsync fails with EIO")
                return false
            },
            flushed: { group.kick() })
        let runtime = try WorkloadRuntime(configuration, journal: journal, log: log)
        try runtime.start()
        group.start()
        let snapshots = WorkloadSnapshots(
            runtime: runtime, repositoryPath: agent.repository, host: agent.host,
            mayCommit: { [self] in fenceReason() ?? (role == .primary ? nil : "this host is not the primary") },
            committed: { position in group.retain(through: position.seq) })
        report.mountSeconds = monotonicSeconds() - mountStart
        state.withLock { state in
            state.runtime = runtime
            state.group = group
            state.snapshots = snapshots
        }

        // 6. The service.
        let serviceStart = monotonicSeconds()
        if let serviceConfiguration = configuration.service {
            let service = ServiceProcess(
                serviceConfiguration, name: name, logPath: configuration.journalDir + "/service.log")
            try service.start()
            state.withLock { $0.service = service }
            try service.waitHealthy(timeout: 120)
        }
        report.serviceStartSeconds = monotonicSeconds() - serviceStart
        report.totalSeconds = Date().timeIntervalSince1970 - report.startedAt + report.detectionSeconds
        let finished = report
        state.withLock { state in
            state.role = .primary
            state.lastRecovery = finished
            state.serviceRestarts = 0
        }
        log(
            "workload \(name): primary at epoch \(epoch) from \(report.position ?? "an empty journal") (\(report.kind): snapshot \(report.snapshotBytes) bytes in \(fmt(report.snapshotLoadSeconds)) s, delta \(report.deltaRecords) records / \(report.deltaBytes) bytes from \(report.deltaPeer ?? "no peer") in \(fmt(report.deltaSeconds)) s, replay \(report.replayedRecords) records in \(fmt(report.replaySeconds)) s, service in \(fmt(report.serviceStartSeconds)) s, total \(fmt(report.totalSeconds)) s)"
        )
    }

    private let snapshotRunning = Atomic<Bool>(false)
    private let lastScheduled = Mutex<Double?>(nil)

    /// Takes the scheduled snapshot (`snapshot_every`) on a thread of its own, so the lease
    /// keeps being renewed meanwhile.
    private func scheduleSnapshot() {
        guard let every = configuration.snapshotEvery, let snapshots = state.withLock({ $0.snapshots }) else { return }
        let now = monotonicSeconds()
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
        let now = monotonicSeconds()
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
        guard role == .primary, let group, let runtime else {
            throw LifeboatError(.badInput, "workload \(name) is not primary on \(agent.host) (it is \(role.rawValue))")
        }
        let progress = group.progress
        let chosen: String
        if let target {
            guard let peer = progress.first(where: { $0.host == target }) else {
                throw LifeboatError(
                    .badInput, "\(target) is not a peer of workload \(name)",
                    hint: "peers: \(progress.map(\.host).joined(separator: ", "))")
            }
            guard peer.connected else {
                throw LifeboatError(.operationFailed, "peer \(target) is not connected; it cannot take over now")
            }
            chosen = target
        } else {
            guard let best = progress.filter(\.connected).max(by: { ($0.acked?.seq ?? 0) < ($1.acked?.seq ?? 0) })
            else {
                throw LifeboatError(.operationFailed, "no connected peer can take workload \(name) over")
            }
            chosen = best.host
        }
        log("workload \(name): switchover to \(chosen): stopping the service")
        service?.stop()
        runtime.stop()
        let last = writer.lastPosition?.seq ?? 0
        let caughtUp = group.waitReplicatedBy(host: chosen, seq: last, timeout: 30)
        guard caughtUp else {
            log("workload \(name): \(chosen) did not catch up; the service stays here")
            try restartAfterAbortedSwitchover(runtime: runtime, service: service)
            throw LifeboatError(.operationFailed, "\(chosen) did not receive every record within 30 s; nothing changed")
        }
        let epoch = state.withLock { $0.epoch }
        try leaseWrites.withLock { _ in
            guard var current = try coordinator.lease(name), current.holder == agent.host, current.epoch == epoch else {
                throw LifeboatError(.operationFailed, "this host no longer holds the lease of \(name)")
            }
            current.holder = chosen
            current.handedOverBy = agent.host
            current.expiresAt = Date().timeIntervalSince1970 + ttl
            guard try coordinator.compareAndSwap(name, expectedVersion: current.version, current) != nil else {
                throw LifeboatError(.operationFailed, "the lease of \(name) changed during the switchover")
            }
        }
        fenceDeadline.store(0, ordering: .sequentiallyConsistent)
        group.stop()
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
        let runtime = try WorkloadRuntime(configuration, journal: old.journal, log: log)
        try runtime.start()
        state.withLock { $0.runtime = runtime }
        try service?.start()
    }

    // MARK: - status

    public struct Status: Codable, Sendable {
        public var name: String
        public var role: Role
        public var epoch: UInt64
        public var position: String?
        public var durablePosition: String?
        public var oldestSeq: UInt64
        public var leaseHolder: String?
        public var leaseExpiresIn: Double?
        public var replication: String
        public var peers: [PeerStatus]
        public var service: ServiceStatus
        /// The newest snapshot this host knows of: its own last one, else the one it recovered from.
        public var newestSnapshot: SnapshotReference?
        /// The report of the last snapshot this host took.
        public var lastSnapshot: SnapshotReport?
        public var lastRecovery: RecoveryReport?
        public var alert: String?
        public var mounted: Bool

        enum CodingKeys: String, CodingKey {
            case name, role, epoch, position, replication, peers, service, alert, mounted
            case durablePosition = "durable_position"
            case oldestSeq = "oldest_seq"
            case leaseHolder = "lease_holder"
            case leaseExpiresIn = "lease_expires_in"
            case newestSnapshot = "newest_snapshot"
            case lastSnapshot = "last_snapshot"
            case lastRecovery = "last_recovery"
        }
    }

    public struct PeerStatus: Codable, Sendable {
        public var host: String
        public var connected: Bool
        public var acked: String?
        public var lag: UInt64?
        public var bytesSent: UInt64
        public var lastError: String?

        enum CodingKeys: String, CodingKey {
            case host, connected, acked, lag
            case bytesSent = "bytes_sent"
            case lastError = "last_error"
        }
    }

    public struct SnapshotReference: Codable, Sendable {
        public var snapshot: String
        public var position: String?
    }

    public struct ServiceStatus: Codable, Sendable {
        public var state: String
        public var pid: Int32?
    }

    public var status: Status {
        let snapshot = state.withLock { $0 }
        let last = writer.lastPosition
        let peers = (snapshot.group?.progress ?? []).map { progress in
            PeerStatus(
                host: progress.host, connected: progress.connected, acked: progress.acked.map { "\($0)" },
                lag: progress.acked.map { (last?.seq ?? 0) &- $0.seq }, bytesSent: progress.bytesSent,
                lastError: progress.lastError)
        }
        let serviceState: String
        if let service = snapshot.service {
            serviceState = service.isRunning ? (snapshot.role == .primary ? "running" : "starting") : "exited"
        } else {
            serviceState = "stopped"
        }
        return Status(
            name: name, role: snapshot.role, epoch: max(snapshot.epoch, replica.acceptedEpoch),
            position: last.map { "\($0)" },
            durablePosition: writer.durablePosition.map { "\($0)" }, oldestSeq: writer.firstSeq,
            leaseHolder: snapshot.lease?.holder,
            leaseExpiresIn: snapshot.lease.map { $0.expiresAt - Date().timeIntervalSince1970 },
            replication: configuration.replication.mode.rawValue, peers: peers,
            service: ServiceStatus(state: serviceState, pid: snapshot.service?.pid),
            newestSnapshot: snapshot.snapshots?.lastReport.map {
                SnapshotReference(snapshot: $0.snapshot, position: $0.position)
            }
                ?? snapshot.lastRecovery.flatMap { recovery in
                    recovery.snapshot.map { SnapshotReference(snapshot: $0, position: recovery.snapshotPosition) }
                },
            lastSnapshot: snapshot.snapshots?.lastReport, lastRecovery: snapshot.lastRecovery, alert: snapshot.alert,
            mounted: snapshot.runtime?.mount.isServing ?? false)
    }
}

func fmt(_ seconds: Double) -> String { String(format: "%.3f", seconds) }

/// Removes everything inside `directory` (not the directory itself).
func clearDirectory(_ directory: String) throws {
    let manager = FileManager.default
    for name in (try? manager.contentsOfDirectory(atPath: directory)) ?? [] {
        try manager.removeItem(atPath: directory + "/" + name)
    }
}

extension WorkloadController: ReplicaProvider {
    public func replica(for workload: String) -> ReplicaJournal? {
        workload == name && role == .peer ? replica : nil
    }
    public func journalDirectory(for workload: String) -> String? {
        workload == name ? configuration.journalDir : nil
    }
    public func describe(_ workload: String) -> (durable: Position?, epoch: UInt64, role: String)? {
        guard workload == name else { return nil }
        return (writer.durablePosition, max(state.withLock { $0.epoch }, replica.acceptedEpoch), role.rawValue)
    }
    public func leaseEpoch(_ workload: String) -> UInt64? {
        (try? coordinator.lease(workload))??.epoch
    }
    public func received(_ workload: String, bytes: Int, records: Int) {
        counters.bytesReceived.add(UInt64(bytes), ordering: .relaxed)
        counters.recordsReceived.add(UInt64(records), ordering: .relaxed)
    }
}
