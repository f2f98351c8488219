import Foundation
import InMemoryLogging
import LifeboatCluster
import LifeboatCore
import LifeboatJournal
import Logging
import Synchronization

@testable import LifeboatAgent

/// A clock that moves only when the test says so.
final class ManualClock: AgentClock {
    private let now: Mutex<(monotonic: Double, wall: Double)>

    init(monotonic: Double = 100, wall: Double = 1_000_000) {
        now = Mutex((monotonic, wall))
    }

    var monotonic: Double { now.withLock { $0.monotonic } }
    var wall: Double { now.withLock { $0.wall } }

    /// Moves both clocks on by `seconds`.
    func advance(_ seconds: Double) {
        now.withLock {
            $0.monotonic += seconds
            $0.wall += seconds
        }
    }

    /// Sets the monotonic clock to `seconds` (the wall clock moves by as much).
    func set(monotonic seconds: Double) {
        now.withLock {
            $0.wall += seconds - $0.monotonic
            $0.monotonic = seconds
        }
    }
}

/// The coordinator as a dictionary: the same compare-and-swap rule as `LocalCoordinator`,
/// with a switch that makes every call fail (the coordinator is unreachable).
final class MemoryCoordinator: Coordinator {
    private let leases = Mutex<[String: Lease]>([:])
    private let down = Atomic<Bool>(false)
    private let writes = Atomic<Int>(0)

    var unreachable: Bool {
        get { down.load(ordering: .relaxed) }
        set { down.store(newValue, ordering: .relaxed) }
    }
    /// Successful writes so far.
    var writeCount: Int { writes.load(ordering: .relaxed) }

    func lease(_ workload: String) throws -> Lease? {
        if unreachable { throw LifeboatError(.operationFailed, "coordinator unreachable") }
        return leases.withLock { $0[workload] }
    }

    func compareAndSwap(_ workload: String, expectedVersion: UInt64?, _ new: Lease) throws -> Lease? {
        if unreachable { throw LifeboatError(.operationFailed, "coordinator unreachable") }
        return leases.withLock { leases in
            let current = leases[workload]
            guard current?.version == expectedVersion else { return nil }
            var stored = new
            stored.version = (current?.version ?? 0) + 1
            leases[workload] = stored
            writes.add(1, ordering: .relaxed)
            return stored
        }
    }

    /// Stores `lease` as it is (another host's write).
    func put(_ lease: Lease) {
        leases.withLock { $0[lease.workload] = lease }
    }

    func stored(_ workload: String = "db") -> Lease? { leases.withLock { $0[workload] } }
}

/// Peers that answer what the test set (nil: the peer does not answer).
final class FakePeers: PeerDirectory {
    private let answers = Mutex<[String: PeerInfo]>([:])
    private let queries = Atomic<Int>(0)
    private let asked = Mutex<[String: Double]>([:])
    /// When set, each query waits (at most 5 s) until this many queries are in flight at once:
    /// a caller that asks one peer after the other never gets there.
    let rendezvous = Mutex<Int?>(nil)
    private let inFlight = Mutex<Int>(0)
    private let allMet = Atomic<Bool>(true)

    /// The timeout of the last query to each host.
    var timeouts: [String: Double] { asked.withLock { $0 } }
    /// False once a query gave up waiting for the others (see `rendezvous`).
    var queriesMet: Bool { allMet.load(ordering: .relaxed) }

    func set(_ host: String, _ info: PeerInfo?) {
        answers.withLock { $0[host] = info }
    }

    var queryCount: Int { queries.load(ordering: .relaxed) }

    func query(_ peer: PeerConfiguration, workload: String, timeout: Double) -> PeerInfo? {
        queries.add(1, ordering: .relaxed)
        asked.withLock { $0[peer.host] = timeout }
        if let count = rendezvous.withLock({ $0 }) {
            inFlight.withLock { $0 += 1 }
            let deadline = Date(timeIntervalSinceNow: 5)
            while inFlight.withLock({ $0 }) < count {
                if Date() > deadline {
                    allMet.store(false, ordering: .relaxed)
                    break
                }
                usleep(1000)
            }
        }
        return answers.withLock { $0[peer.host] }
    }

    private let journals = Mutex<[String: String]>([:])

    /// `host` serves the records of the journal in `directory`.
    func serve(_ host: String, journal directory: String) { journals.withLock { $0[host] = directory } }

    func fetch(
        _ peer: PeerConfiguration, workload: String, from: UInt64, into writer: JournalWriter
    ) throws
        -> PeerClient.Fetched
    {
        guard let directory = journals.withLock({ $0[peer.host] }) else {
            throw LifeboatError(.operationFailed, "the fake peer \(peer.host) serves no records")
        }
        var fetched = PeerClient.Fetched()
        let tail = JournalTail(directory: directory, from: from)
        while let batch = try tail.next() {
            try batch.frames.withUnsafeBytes { _ = try writer.appendFrames($0) }
            fetched.records += batch.records
            fetched.bytes += batch.frames.count
            fetched.last = batch.last
        }
        try writer.sync()
        return fetched
    }
}

/// A replication group whose peers' progress the test sets. Waits never block: they answer
/// from the progress at once (a wait that would time out answers false).
final class FakeGroup: ReplicationProgress {
    private let state = Mutex<[GroupPeer]>([])
    private let kicks = Atomic<Int>(0)
    private let waits = Atomic<Int>(0)
    private let stopped = Atomic<Bool>(false)

    init(_ peers: [GroupPeer] = []) {
        state.withLock { $0 = peers }
    }

    func set(_ peers: [GroupPeer]) { state.withLock { $0 = peers } }

    var kickCount: Int { kicks.load(ordering: .relaxed) }
    var waitCount: Int { waits.load(ordering: .relaxed) }
    var isStopped: Bool { stopped.load(ordering: .relaxed) }

    var peers: [GroupPeer] { state.withLock { $0 } }

    func kick() { kicks.add(1, ordering: .relaxed) }

    func waitReplicated(seq: UInt64, count: Int, timeout: Double) -> Bool {
        waits.add(1, ordering: .relaxed)
        return peers.filter { ($0.acked?.seq ?? 0) >= seq }.count >= count
    }

    func waitReplicatedBy(host: String, seq: UInt64, timeout: Double) -> Bool {
        waits.add(1, ordering: .relaxed)
        return peers.contains { $0.host == host && ($0.acked?.seq ?? 0) >= seq }
    }

    func stop() { stopped.store(true, ordering: .relaxed) }
}

/// Collects log lines in memory, with their levels.
final class LogLines: Sendable {
    let handler = InMemoryLogHandler()
    var logger: Logger {
        let handler = handler
        return Logger(label: "test", factory: { _ in handler })
    }
    var all: [String] { handler.entries.map { "\($0.message)" } }
    /// The lines logged at `level`.
    func at(_ level: Logger.Level) -> [String] {
        handler.entries.filter { $0.level == level }.map { "\($0.message)" }
    }
}

func peer(_ host: String) -> PeerConfiguration {
    PeerConfiguration(host: host, api: "\(host):7440", address: "\(host):7441")
}

func position(_ epoch: UInt64, _ seq: UInt64) -> Position { Position(epoch: epoch, seq: seq) }

/// One host of a three-host test cluster, on shared doubles.
struct TestHost {
    let keeper: LeaseKeeper
    let candidacy: FailoverCandidacy

    init(
        _ host: String, peers: [String], coordinator: MemoryCoordinator, clock: ManualClock,
        directory: FakePeers = FakePeers(), ttl: Double = 10
    ) {
        keeper = LeaseKeeper(workload: "db", host: host, ttl: ttl, coordinator: coordinator, clock: clock)
        candidacy = FailoverCandidacy(
            workload: "db", host: host, ttl: ttl, peers: peers.map(peer), directory: directory, clock: clock)
    }
}
