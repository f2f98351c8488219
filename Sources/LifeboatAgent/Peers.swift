import Dispatch
public import LifeboatCluster
public import LifeboatCore
public import LifeboatJournal
import Synchronization

/// What another agent says it holds of a workload (peer protocol `query`).
public struct PeerInfo: Sendable, Equatable {
    /// Its durable journal end.
    public var durable: Position?
    /// The highest epoch it accepted.
    public var epoch: UInt64
    /// Its role, as `WorkloadRole`'s raw value (an unknown role is kept as text).
    public var role: String
    /// Its backing dir holds seed data (files no snapshot or journal covers).
    public var seeded: Bool

    public init(durable: Position?, epoch: UInt64, role: String, seeded: Bool = false) {
        self.durable = durable
        self.epoch = epoch
        self.role = role
        self.seeded = seeded
    }

    public var isPeer: Bool { role == WorkloadRole.peer.rawValue }
}

/// How the failover core reaches the other agents: injected, so a test can answer for them.
public protocol PeerDirectory: Sendable {
    /// What `peer` holds of `workload`, or nil when it does not answer within `timeout` s.
    func query(_ peer: PeerConfiguration, workload: String, timeout: Double) -> PeerInfo?
    /// Fetches every record of `workload` from seq `from` on into `writer`.
    func fetch(
        _ peer: PeerConfiguration, workload: String, from: UInt64, into writer: JournalWriter
    ) throws
        -> PeerClient.Fetched
}

extension PeerDirectory {
    /// Asks every one of `peers` at once, each waiting at most `timeout(peer)` seconds, and
    /// returns the answers by host (a silent peer has none). The call takes as long as its
    /// slowest peer, not the sum: a lost host costs its timeout once.
    public func queryAll(
        _ peers: [PeerConfiguration], workload: String, timeout: (PeerConfiguration) -> Double
    ) -> [String: PeerInfo] {
        let answers = Mutex<[String: PeerInfo]>([:])
        let group = DispatchGroup()
        for peer in peers {
            let wait = timeout(peer)
            DispatchQueue.global().async(group: group) {
                guard let info = self.query(peer, workload: workload, timeout: wait) else { return }
                answers.withLock { $0[peer.host] = info }
            }
        }
        group.wait()
        return answers.withLock { $0 }
    }
}

/// The real peers, over the peer protocol (`PeerClient`).
public struct NetworkPeers: PeerDirectory {
    public init() {}

    public func query(_ peer: PeerConfiguration, workload: String, timeout: Double) -> PeerInfo? {
        PeerClient.query(peer.address, workload: workload, timeout: timeout).map {
            PeerInfo(durable: $0.durable, epoch: $0.epoch, role: $0.role, seeded: $0.seeded)
        }
    }

    public func fetch(
        _ peer: PeerConfiguration, workload: String, from: UInt64, into writer: JournalWriter
    ) throws
        -> PeerClient.Fetched
    {
        try PeerClient.fetch(peer.address, workload: workload, from: from, into: writer)
    }
}
