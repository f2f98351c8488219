public import LifeboatCluster
public import LifeboatCore
import Synchronization

/// What this host holds of a workload, as the candidacy weighs it.
public struct LocalHolding: Sendable, Equatable {
    /// This host's durable journal end.
    public var durable: Position?
    /// What its backing dir holds.
    public var backing: BackingState

    public init(durable: Position?, backing: BackingState) {
        self.durable = durable
        self.backing = backing
    }
}

/// A peer's decision, tick by tick, whether to take a workload's lease: the first lease
/// (bootstrap), a lease handed to this host (switchover), or a lease that ran out (failover).
///
/// - A failover prefers the reachable peer with the highest durable position that belongs to
///   the lease's history; on a tie the smaller host name goes first. A host waits for a more
///   advanced peer at most one TTL, then goes ahead.
/// - After a failed recovery this host leaves the lease to the others for two TTLs.
/// - A bootstrap prefers a host whose backing dir holds seed data: a host with an empty
///   backing dir and an empty journal waits (at most one TTL) while a peer reports seed data
///   or has not answered yet, so it never wins the first lease over the only copy of the data.
public final class FailoverCandidacy: Sendable {
    public let workload: String
    public let host: String
    public let ttl: Double
    let peers: [PeerConfiguration]
    let directory: any PeerDirectory
    let clock: any AgentClock
    /// How long one `query` may take during the decision.
    static let queryTimeout = 0.5

    private struct State {
        /// When this host first found the lease free (monotonic seconds), while it waits.
        var candidateSince: Double?
        var lastFailedRecovery: Double?
    }
    private let state = Mutex(State())

    public init(
        workload: String, host: String, ttl: Double, peers: [PeerConfiguration], directory: any PeerDirectory,
        clock: any AgentClock
    ) {
        self.workload = workload
        self.host = host
        self.ttl = ttl
        self.peers = peers
        self.directory = directory
        self.clock = clock
    }

    public enum Decision: Sendable, Equatable {
        /// Take the first lease.
        case bootstrap
        /// Take the lease the previous primary handed to this host.
        case switchover(Lease)
        /// Take the lease that ran out.
        case failover(Lease)
        /// The lease is held by a live primary: nothing to do.
        case held
        /// Not yet: another host should go first (the reason says which), or this host backs
        /// off after a failed recovery.
        case wait(String)
    }

    /// Decides what to do with `lease` (nil: no host ever held it).
    public func decide(lease: Lease?, local: LocalHolding) -> Decision {
        guard let lease else {
            if let reason = bootstrapWait(local) { return .wait(reason) }
            return .bootstrap
        }
        if lease.holder == host && lease.handedOverBy != nil { return .switchover(lease) }
        guard lease.isExpired(now: clock.wall) else {
            state.withLock { $0.candidateSince = nil }
            return .held
        }
        if let failed = state.withLock({ $0.lastFailedRecovery }), clock.monotonic - failed < 2 * ttl {
            return .wait("backing off after a failed recovery")
        }
        if let reason = failoverWait(lease, local: local) { return .wait(reason) }
        return .failover(lease)
    }

    /// This host took the lease: the wait is over.
    public func tookLease() { state.withLock { $0.candidateSince = nil } }

    /// This host's recovery failed: it leaves the lease to the others for two TTLs.
    public func recoveryFailed() {
        let now = clock.monotonic
        state.withLock { state in
            state.lastFailedRecovery = now
            state.candidateSince = nil
        }
    }

    /// Seconds this host has been a candidate (starting the count now if it was not one).
    private func candidacySeconds() -> Double {
        let now = clock.monotonic
        let since = state.withLock { state in
            if state.candidateSince == nil { state.candidateSince = now }
            return state.candidateSince!
        }
        return now - since
    }

    /// Why this host should not take the first lease yet, or nil.
    private func bootstrapWait(_ local: LocalHolding) -> String? {
        guard local.backing == .empty, local.durable == nil else { return nil }
        if candidacySeconds() > ttl { return nil }
        let answers = directory.queryAll(peers, workload: workload) { _ in FailoverCandidacy.queryTimeout }
        if let seeded = peers.first(where: { answers[$0.host]?.seeded == true }) {
            return "\(seeded.host) holds seed data; it takes the first lease"
        }
        let silent = peers.map(\.host).filter { answers[$0] == nil }
        if !silent.isEmpty {
            return "waiting for \(silent.joined(separator: ", ")) to answer: one of them may hold seed data"
        }
        return nil
    }

    /// Why this host should leave a free lease to a more advanced peer, or nil. A peer that
    /// does not answer (yet: after every agent restarted, it may still be starting) may hold
    /// acknowledged records no one else has, so it is waited for too. After one TTL of
    /// waiting this host goes ahead anyway. The lease's last holder is not asked: it let the
    /// lease run out, so it is lost or fenced.
    private func failoverWait(_ lease: Lease, local: LocalHolding) -> String? {
        if candidacySeconds() > ttl { return nil }
        let mine = FailoverCandidacy.end(local.durable, in: lease.history)?.seq ?? 0
        let others = peers.filter { $0.host != lease.holder }
        let answers = directory.queryAll(others, workload: workload) { _ in FailoverCandidacy.queryTimeout }
        let silent = others.map(\.host).filter { answers[$0] == nil }
        if !silent.isEmpty {
            return "waiting for \(silent.joined(separator: ", ")) to answer: it may hold more of the journal"
        }
        for peer in others {
            guard let info = answers[peer.host], info.isPeer,
                let theirs = FailoverCandidacy.end(info.durable ?? Position(epoch: 0, seq: 0), in: lease.history)
            else { continue }
            if theirs.seq > mine || (theirs.seq == mine && peer.host < host) {
                return "\(peer.host) holds more of the journal (\(theirs)) or as much with a smaller name"
            }
        }
        return nil
    }

    /// `durable` when it belongs to `history`, else nil.
    static func end(_ durable: Position?, in history: [EpochStart]) -> Position? {
        guard let durable else { return nil }
        return history.contains(journalEnd: durable) ? durable : nil
    }

    /// The peers a recovering host may fetch the delta from: those that answer as peers with a
    /// durable end in `history`, most advanced first. All are asked at once; `lostHolder` (the
    /// host whose lease ran out) is given only `lostHolderTimeout`: it is most likely gone, and
    /// when it came back (every agent restarted) it answers within milliseconds.
    public func deltaSources(
        history: [EpochStart], lostHolder: String? = nil, timeout: Double = 1
    ) -> [(peer: PeerConfiguration, durable: Position)] {
        let answers = directory.queryAll(peers, workload: workload) { peer in
            peer.host == lostHolder ? min(timeout, FailoverCandidacy.lostHolderTimeout) : timeout
        }
        return peers.compactMap { peer -> (peer: PeerConfiguration, durable: Position)? in
            guard let info = answers[peer.host], let durable = info.durable, info.isPeer,
                history.contains(journalEnd: durable)
            else { return nil }
            return (peer, durable)
        }.sorted { $0.durable.seq > $1.durable.seq }
    }

    /// How long a recovery waits for the lease's lost holder to answer.
    static let lostHolderTimeout = 0.25
}
