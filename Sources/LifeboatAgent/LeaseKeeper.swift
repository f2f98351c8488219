public import LifeboatCluster
import LifeboatCore
import Synchronization

/// This host's side of one workload's lease: take it (compare-and-swap with the next epoch),
/// renew it, record an epoch's start in its history, hand it over, release it, and the
/// self-fencing deadline that keeps a primary from acknowledging once the lease may be gone.
///
/// Every lease write of this host goes through one lock, so a renewal never races a history
/// write or a handover. Time comes from the injected clock only.
public final class LeaseKeeper: Sendable {
    public let workload: String
    public let host: String
    /// Seconds a lease lasts without renewal.
    public let ttl: Double
    let coordinator: any Coordinator
    let clock: any AgentClock

    private struct State {
        var epoch: UInt64 = 0
        var lease: Lease?
        /// When the held lease was last renewed (monotonic seconds).
        var lastRenewal: Double = 0
    }
    private let state = Mutex(State())
    /// Serializes every lease write of this host (renewal, history, handover, release).
    private let writes = Mutex(())
    /// Monotonic nanoseconds after which this host must not acknowledge anything.
    private let fenceDeadline = Atomic<Int64>(0)

    public init(workload: String, host: String, ttl: Double, coordinator: any Coordinator, clock: any AgentClock) {
        self.workload = workload
        self.host = host
        self.ttl = ttl
        self.coordinator = coordinator
        self.clock = clock
    }

    /// The epoch this host last took (0 before it took any).
    public var epoch: UInt64 { state.withLock { $0.epoch } }
    /// The lease as this host last read or wrote it.
    public var lease: Lease? { state.withLock { $0.lease } }

    /// Reads the lease from the coordinator (and remembers it for status).
    public func read() throws -> Lease? {
        let lease = try coordinator.lease(workload)
        state.withLock { $0.lease = lease }
        return lease
    }

    /// The epoch a take proposes: one past every epoch this host has seen (the lease's, the
    /// one it accepted from a stream, the one of its last journal record), so an epoch is
    /// never used twice even when the lease file was lost.
    public static func nextEpoch(lease: UInt64, accepted: UInt64, journal: UInt64) -> UInt64 {
        max(lease, accepted, journal) + 1
    }

    /// How much before the lease's end this host stops acknowledging: TTL/5, at least 0.2 s.
    public var fenceMargin: Double { max(ttl * 0.2, 0.2) }

    /// Takes the lease after `previous` (nil: none exists yet) with the next epoch by
    /// compare-and-swap. Returns the stored lease, or nil when another host was faster. On
    /// success the fencing deadline is armed from the instant the take began.
    public func acquire(previous: Lease?, acceptedEpoch: UInt64, journalEpoch: UInt64) throws -> Lease? {
        let start = clock.monotonic
        let epoch = LeaseKeeper.nextEpoch(
            lease: previous?.epoch ?? 0, accepted: acceptedEpoch, journal: journalEpoch)
        let proposal = Lease(
            workload: workload, holder: host, epoch: epoch, expiresAt: clock.wall + ttl, version: 0,
            history: previous?.history ?? [])
        let taken = try writes.withLock { _ in
            try coordinator.compareAndSwap(workload, expectedVersion: previous?.version, proposal)
        }
        guard let taken else { return nil }
        armFence(from: start)
        state.withLock { state in
            state.epoch = epoch
            state.lease = taken
            state.lastRenewal = start
        }
        return taken
    }

    /// What a renewal found.
    public enum Renewal: Sendable, Equatable {
        /// Renewed; the deadline moved on.
        case renewed(Lease)
        /// Another host or epoch holds the lease now (`holder`: the lease read after, if any).
        case lost(holder: Lease?)
        /// The coordinator did not answer; `fenced` when the deadline has passed meanwhile.
        case unreachable(reason: String, fenced: Bool)

        /// Why the primary must step down after this renewal, or nil while it may go on.
        public func demotionReason(epoch: UInt64) -> String? {
            switch self {
            case .renewed: return nil
            case .lost(let holder):
                return
                    "lost the lease\(holder.map { " to \($0.holder) at epoch \($0.epoch)" } ?? "") while at epoch \(epoch)"
            case .unreachable(_, let fenced):
                return fenced ? "the lease could not be renewed before it ran out" : nil
            }
        }
    }

    /// True when the held lease should be renewed now (a quarter TTL since the last renewal).
    public var renewalDue: Bool {
        clock.monotonic - state.withLock { $0.lastRenewal } >= ttl / 4
    }

    /// Renews the held lease. The deadline moves to `renewal start + ttl - margin` only when
    /// the write succeeded.
    public func renew() -> Renewal {
        let start = clock.monotonic
        let epoch = self.epoch
        do {
            let renewed = try writes.withLock { _ -> Lease? in
                guard let current = try coordinator.lease(workload), current.holder == host, current.epoch == epoch,
                    current.handedOverBy == nil
                else { return nil }
                var next = current
                next.expiresAt = clock.wall + ttl
                return try coordinator.compareAndSwap(workload, expectedVersion: current.version, next)
            }
            guard let renewed else {
                let holder = (try? coordinator.lease(workload)).flatMap { $0 }
                return .lost(holder: holder)
            }
            state.withLock { state in
                state.lease = renewed
                state.lastRenewal = start
            }
            armFence(from: start)
            return .renewed(renewed)
        } catch {
            return .unreachable(reason: "\(error)", fenced: fenceReason() != nil)
        }
    }

    /// Appends `EpochStart(epoch, firstSeq)` to the held lease's history (and renews it).
    /// Throws when the lease moved to another host or changed meanwhile.
    public func recordEpochStart(firstSeq: UInt64) throws -> Lease {
        let epoch = self.epoch
        return try writes.withLock { _ in
            guard var current = try coordinator.lease(workload), current.holder == host, current.epoch == epoch else {
                throw LifeboatError(.operationFailed, "the lease of \(workload) moved to another host during recovery")
            }
            current.history.append(EpochStart(epoch: epoch, firstSeq: firstSeq))
            current.expiresAt = clock.wall + ttl
            guard let stored = try coordinator.compareAndSwap(workload, expectedVersion: current.version, current)
            else {
                throw LifeboatError(.operationFailed, "the lease of \(workload) changed during recovery")
            }
            state.withLock { $0.lease = stored }
            return stored
        }
    }

    /// Hands the held lease to `target` (a switchover): it takes it with the next epoch once it
    /// sees `handedOverBy`. This host stops acknowledging at once.
    public func handOver(to target: String) throws {
        let epoch = self.epoch
        try writes.withLock { _ in
            guard var current = try coordinator.lease(workload), current.holder == host, current.epoch == epoch else {
                throw LifeboatError(.operationFailed, "this host no longer holds the lease of \(workload)")
            }
            current.holder = target
            current.handedOverBy = host
            current.expiresAt = clock.wall + ttl
            guard let stored = try coordinator.compareAndSwap(workload, expectedVersion: current.version, current)
            else {
                throw LifeboatError(.operationFailed, "the lease of \(workload) changed during the switchover")
            }
            state.withLock { $0.lease = stored }
        }
        disarm()
    }

    /// Gives the lease of `epoch` up at once (expiry now) so another host need not wait for it
    /// to run out. Does nothing when this host no longer holds it; errors are ignored.
    public func release(epoch: UInt64) {
        _ = try? writes.withLock { _ in
            if let current = try coordinator.lease(workload), current.holder == host, current.epoch == epoch {
                var next = current
                next.expiresAt = clock.wall
                _ = try coordinator.compareAndSwap(workload, expectedVersion: current.version, next)
            }
        }
    }

    /// From here on, nothing is acknowledged at or after `start + ttl - margin`.
    private func armFence(from start: Double) {
        fenceDeadline.store(Int64((start + ttl - fenceMargin) * 1e9), ordering: .sequentiallyConsistent)
    }

    /// The instant (monotonic seconds) from which this host refuses to acknowledge.
    public var deadline: Double { Double(fenceDeadline.load(ordering: .sequentiallyConsistent)) / 1e9 }

    /// Stops acknowledging at once (demotion, handover).
    public func disarm() {
        fenceDeadline.store(0, ordering: .sequentiallyConsistent)
    }

    /// Why this host may not acknowledge writes now, or nil.
    public func fenceReason() -> String? {
        let deadline = fenceDeadline.load(ordering: .sequentiallyConsistent)
        if Int64(clock.monotonic * 1e9) >= deadline {
            return "the lease of workload \(workload) was not renewed in time; this host stops acknowledging writes"
        }
        return nil
    }
}
