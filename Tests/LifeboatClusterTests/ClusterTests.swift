import Foundation
import Glibc
import LifeboatCore
import LifeboatJournal
import Logging
import Synchronization
import XCTest

@testable import LifeboatCluster

/// A peer host for the tests: real journals in temp dirs, served over real TCP.
final class TestPeer: ReplicaProvider, @unchecked Sendable {
    let replicaJournal: ReplicaJournal
    let directory: String
    let isPeer = Mutex(true)
    /// The lease the coordinator holds: by default `p` at epoch 1, the tests' primary.
    let lease = Mutex<Lease?>(TestPeer.lease(holder: "p", epoch: 1))

    init(directory: String) throws {
        self.directory = directory
        replicaJournal = try ReplicaJournal(
            workload: "w", writer: try JournalWriter(directory: directory, segmentSize: 64 << 10), logger: quietLogger)
    }

    func replica(for workload: String) -> ReplicaJournal? { isPeer.withLock { $0 } ? replicaJournal : nil }
    func journalDirectory(for workload: String) -> String? { directory }
    func describe(_ workload: String) -> (durable: Position?, epoch: UInt64, role: String)? {
        (replicaJournal.writer.durablePosition, replicaJournal.acceptedEpoch, "peer")
    }
    func currentLease(_ workload: String) throws -> Lease? { lease.withLock { $0 } }

    static func lease(holder: String, epoch: UInt64) -> Lease {
        Lease(
            workload: "w", holder: holder, epoch: epoch, expiresAt: Date().timeIntervalSince1970 + 60, version: 1,
            history: [EpochStart(epoch: 1, firstSeq: 1)])
    }
    func received(_ workload: String, bytes: Int, records: Int) {}
}

final class ClusterTests: XCTestCase {
    private var root = ""
    private static let nextPort = Mutex(17_400 + Int(getpid() % 500) * 4)

    override func setUpWithError() throws {
        var template = Array("/tmp/lifeboat-cluster-XXXXXX".utf8CString)
        root = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: root)
    }

    private func port() -> Int {
        ClusterTests.nextPort.withLock { value in
            value += 1
            return value
        }
    }

    func testLocalLeaseChangesPollTheFileAndTellWhenTheLeaseRunsOut() async throws {
        let coordinator = try LocalCoordinator(directory: root + "/coord")
        let changes = WatchRecorder(coordinator.pollLeaseChanges("w", every: 0.05))
        defer { changes.stop() }
        let none = try await changes.take(within: 5) { _ in true }
        XCTAssertNil(none, "no lease yet")
        let lease = Lease(
            workload: "w", holder: "a", epoch: 1, expiresAt: Date().timeIntervalSince1970 + 0.5, version: 0,
            history: [])
        let stored = try coordinator.compareAndSwap("w", expectedVersion: nil, lease)
        let held = try await changes.take(within: 5) { $0 != nil }
        XCTAssertEqual(held, stored)
        XCTAssertEqual(held?.isExpired(), false)
        // Nothing is written when a local lease runs out: the poll still reports it.
        let expired = try await changes.take(within: 5) { _ in true }
        XCTAssertEqual(expired, stored)
        XCTAssertEqual(expired?.isExpired(), true)
    }

    func testLocalCoordinatorCompareAndSwap() throws {
        let coordinator = try LocalCoordinator(directory: root + "/coord")
        XCTAssertNil(try coordinator.lease("w"))
        let first = Lease(workload: "w", holder: "a", epoch: 1, expiresAt: 10, version: 0, history: [])
        let stored = try XCTUnwrap(try coordinator.compareAndSwap("w", expectedVersion: nil, first))
        XCTAssertEqual(stored.version, 1)
        // A second creator loses; a writer with a stale version loses.
        XCTAssertNil(try coordinator.compareAndSwap("w", expectedVersion: nil, first))
        var second = stored
        second.holder = "b"
        second.epoch = 2
        XCTAssertNotNil(try coordinator.compareAndSwap("w", expectedVersion: 1, second))
        XCTAssertNil(try coordinator.compareAndSwap("w", expectedVersion: 1, first))
        XCTAssertEqual(try coordinator.lease("w")?.holder, "b")
        XCTAssertEqual(try coordinator.lease("w")?.epoch, 2)
    }

    func testConcurrentTakersGetOneWinnerPerVersion() throws {
        let coordinator = try LocalCoordinator(directory: root + "/coord")
        let winners = Mutex(0)
        DispatchQueue.concurrentPerform(iterations: 16) { index in
            let lease = Lease(workload: "w", holder: "h\(index)", epoch: 1, expiresAt: 10, version: 0, history: [])
            if (try? coordinator.compareAndSwap("w", expectedVersion: nil, lease)) != nil {
                winners.withLock { $0 += 1 }
            }
        }
        XCTAssertEqual(winners.withLock { $0 }, 1)
    }

    func testTheLogNamesWhereAPeerTakesUpTheStream() {
        XCTAssertEqual(PeerServer.describeStart(nil), "the start")
        XCTAssertEqual(PeerServer.describeStart(Position(epoch: 2, seq: 40)), "2:40")
        XCTAssertEqual(
            PeerServer.describeStart(Position(epoch: 0, seq: 6926)),
            "seq 6927 on (an empty journal after the snapshot at seq 6926)", "no record of epoch 0 is named")
    }

    func testHistoryFindsDivergedJournals() {
        let history = [EpochStart(epoch: 1, firstSeq: 1), EpochStart(epoch: 2, firstSeq: 101)]
        XCTAssertTrue(history.contains(journalEnd: Position(epoch: 1, seq: 100)))
        XCTAssertFalse(history.contains(journalEnd: Position(epoch: 1, seq: 101)))
        XCTAssertTrue(history.contains(journalEnd: Position(epoch: 2, seq: 500)))
        XCTAssertTrue(history.contains(journalEnd: Position(epoch: 0, seq: 50)))
    }

    func testMessagesRoundTrip() throws {
        let messages: [PeerMessage] = [
            .hello(.init(workload: "w", host: "h1", epoch: 3, history: [.init(epoch: 3, firstSeq: 9)])),
            .welcome(durable: nil), .welcome(durable: Position(epoch: 2, seq: 7)), .refused("no"),
            .records([1, 2, 3]), .ack(Position(epoch: 1, seq: 2)), .reset(after: Position(epoch: 0, seq: 5)),
            .retain(through: 4), .fetch(workload: "w", from: 3), .end(last: nil), .query(workload: "w"),
            .position(durable: Position(epoch: 1, seq: 1), epoch: 2, role: "peer"),
        ]
        for message in messages {
            XCTAssertEqual(try PeerMessage.decode(message.encoded()), message)
        }
    }

    func testResetJournalStartsAfterPositionAndSurvivesReopen() throws {
        let directory = root + "/j"
        do {
            let writer = try JournalWriter(directory: directory)
            try writer.append(epoch: 1, kind: 1, payload: [1])
            try writer.reset(after: Position(epoch: 1, seq: 41))
            XCTAssertEqual(writer.firstSeq, 42)
            XCTAssertEqual(try writer.append(epoch: 2, kind: 1, payload: [2]).seq, 42)
            try writer.sync()
        }
        let reopened = try JournalWriter(directory: directory)
        XCTAssertEqual(reopened.lastPosition, Position(epoch: 2, seq: 42))
        let emptyDirectory = root + "/k"
        do {
            let writer = try JournalWriter(directory: emptyDirectory)
            try writer.reset(after: Position(epoch: 1, seq: 9))
        }
        XCTAssertEqual(try JournalWriter(directory: emptyDirectory).lastPosition?.seq, 9)
    }

    /// A primary's journal streamed to a peer over TCP: every record arrives, in order,
    /// durably, and the waits of sync mode end; an older epoch is then refused.
    func testStreamDeliversEveryRecordAndFencesOlderEpochs() throws {
        let primary = try JournalWriter(directory: root + "/primary", segmentSize: 64 << 10)
        let peer = try TestPeer(directory: root + "/peer")
        let address = "127.0.0.1:\(port())"
        let server = try PeerServer(address: address, provider: peer, logger: quietLogger)
        defer { server.close() }
        let group = ReplicationGroup(
            workload: "w", host: "p", epoch: 1, history: [EpochStart(epoch: 1, firstSeq: 1)], writer: primary,
            peers: [PeerConfiguration(host: "peer", api: "x:1", address: address)], logger: quietLogger)
        group.start()
        defer { group.stop() }
        var payloads: [[UInt8]] = []
        for index in 0..<3000 {
            let payload = [UInt8](repeating: UInt8(index % 251), count: 10 + index % 700)
            payloads.append(payload)
            try primary.append(epoch: 1, kind: 7, payload: payload)
            if index % 500 == 499 { try primary.sync() }
        }
        try primary.sync()
        XCTAssertTrue(group.waitReplicated(seq: 3000, count: 1, timeout: 30))
        var received: [JournalRecord] = []
        try JournalReader.read(directory: root + "/peer") {
            received.append($0)
            return true
        }
        XCTAssertEqual(received.count, 3000)
        XCTAssertEqual(received.map(\.payload), payloads)

        // A fetch from the peer returns exactly the records after a seq.
        let fetchedInto = try JournalWriter(directory: root + "/fetched")
        try fetchedInto.reset(after: Position(epoch: 0, seq: 2500))
        let fetched = try PeerClient.fetch(address, workload: "w", from: 2501, into: fetchedInto)
        XCTAssertEqual(fetched.records, 500)
        XCTAssertEqual(fetchedInto.lastPosition, Position(epoch: 1, seq: 3000))

        // Another primary at epoch 2 takes over the peer; the epoch-1 stream is refused.
        group.stop()
        try peer.replicaJournal.accept(epoch: 2)
        peer.lease.withLock { $0 = TestPeer.lease(holder: "q", epoch: 2) }
        let stale = ReplicationGroup(
            workload: "w", host: "p", epoch: 1, history: [EpochStart(epoch: 1, firstSeq: 1)], writer: primary,
            peers: [PeerConfiguration(host: "peer", api: "x:1", address: address)], logger: quietLogger)
        stale.start()
        defer { stale.stop() }
        try primary.append(epoch: 1, kind: 7, payload: [9])
        try primary.sync()
        XCTAssertFalse(stale.waitReplicated(seq: 3001, count: 1, timeout: 2))
        XCTAssertEqual(peer.replicaJournal.writer.lastPosition?.seq, 3000)
        XCTAssertTrue(stale.progress[0].lastError?.contains("older") ?? false, "\(stale.progress)")
    }

    /// A peer follows only the lease's holder at the lease's epoch: a host claiming epoch 999
    /// and a host claiming the holder's epoch are both refused with the reason, and the real
    /// primary is still followed afterwards.
    func testAPeerFollowsOnlyTheLeaseHolderAtTheLeaseEpoch() throws {
        let primary = try JournalWriter(directory: root + "/primary", segmentSize: 64 << 10)
        try primary.append(epoch: 1, kind: 7, payload: [1])
        try primary.sync()
        let peer = try TestPeer(directory: root + "/peer")
        let address = "127.0.0.1:\(port())"
        let server = try PeerServer(address: address, provider: peer, logger: quietLogger)
        defer { server.close() }
        let target = [PeerConfiguration(host: "peer", api: "x:1", address: address)]
        func stream(host: String, epoch: UInt64) -> ReplicationGroup {
            let group = ReplicationGroup(
                workload: "w", host: host, epoch: epoch, history: [EpochStart(epoch: 1, firstSeq: 1)],
                writer: primary, peers: target, logger: quietLogger)
            group.start()
            return group
        }

        let impostor = stream(host: "x", epoch: 999)
        XCTAssertFalse(impostor.waitReplicated(seq: 1, count: 1, timeout: 2))
        impostor.stop()
        XCTAssertEqual(
            impostor.progress[0].lastError,
            "refused: epoch 999 is newer than the lease's epoch 1 (held by p): the coordinator never gave x that epoch")
        XCTAssertEqual(peer.replicaJournal.acceptedEpoch, 0, "the impostor's epoch was not accepted")

        let sameEpoch = stream(host: "x", epoch: 1)
        XCTAssertFalse(sameEpoch.waitReplicated(seq: 1, count: 1, timeout: 2))
        sameEpoch.stop()
        XCTAssertEqual(sameEpoch.progress[0].lastError, "refused: the lease of w at epoch 1 is held by p, not x")
        XCTAssertNil(peer.replicaJournal.writer.lastPosition, "nothing of a non-holder was written")

        let holder = stream(host: "p", epoch: 1)
        defer { holder.stop() }
        XCTAssertTrue(holder.waitReplicated(seq: 1, count: 1, timeout: 10), "\(holder.progress)")
        XCTAssertEqual(peer.replicaJournal.writer.lastPosition, Position(epoch: 1, seq: 1))

        let hello = PeerMessage.Hello(workload: "w", host: "p", epoch: 1, history: [])
        peer.lease.withLock { $0 = nil }
        XCTAssertEqual(PeerServer.refusal(of: hello, provider: peer), "no host holds the lease of w yet")
        peer.lease.withLock { $0 = TestPeer.lease(holder: "p", epoch: 2) }
        XCTAssertEqual(
            PeerServer.refusal(of: hello, provider: peer),
            "epoch 1 is older than the lease's epoch 2 (held by p): p was fenced")
    }

    /// Every record batch a peer acknowledges is reported once, with the peer's host and the
    /// time from its send to its acknowledgement (the agent's replication ack histogram).
    func testEveryAcknowledgedBatchIsReportedWithItsPeerAndLatency() throws {
        let primary = try JournalWriter(directory: root + "/primary", segmentSize: 64 << 10)
        let peer = try TestPeer(directory: root + "/peer")
        let address = "127.0.0.1:\(port())"
        let server = try PeerServer(address: address, provider: peer, logger: quietLogger)
        defer { server.close() }
        let reported = Mutex<[(peer: String, latency: Duration)]>([])
        let started = ContinuousClock.now
        let group = ReplicationGroup(
            workload: "w", host: "p", epoch: 1, history: [EpochStart(epoch: 1, firstSeq: 1)], writer: primary,
            peers: [PeerConfiguration(host: "peer", api: "x:1", address: address)],
            acknowledged: { host, latency in reported.withLock { $0.append((host, latency)) } }, logger: quietLogger)
        group.start()
        defer { group.stop() }
        XCTAssertTrue(reported.withLock { $0.isEmpty }, "reported before anything was sent")
        for round in 0..<5 {
            for _ in 0..<20 { try primary.append(epoch: 1, kind: 7, payload: [UInt8](repeating: 1, count: 100)) }
            try primary.sync()
            XCTAssertTrue(group.waitReplicated(seq: UInt64(20 * (round + 1)), count: 1, timeout: 30))
        }
        // The waiters are woken before the latencies are reported: give the last one a moment.
        let deadline = ContinuousClock.now + .seconds(5)
        while reported.withLock({ $0.count }) < 5 && ContinuousClock.now < deadline { usleep(1000) }
        let elapsed = ContinuousClock.now - started
        let all = reported.withLock { $0 }
        // At least one batch per round was sent and acknowledged; a batch is never reported twice.
        XCTAssertGreaterThanOrEqual(all.count, 5)
        XCTAssertLessThanOrEqual(all.count, 100)
        XCTAssertEqual(Set(all.map(\.peer)), ["peer"])
        for report in all {
            XCTAssertGreaterThan(report.latency, .zero)
            XCTAssertLessThanOrEqual(report.latency, elapsed)
        }
    }

    /// A peer that holds records the new primary's history lacks keeps them aside and
    /// follows the new history.
    func testDivergedPeerKeepsRecordsAside() throws {
        let peer = try TestPeer(directory: root + "/peer")
        for _ in 1...10 { try peer.replicaJournal.writer.append(epoch: 1, kind: 1, payload: [1]) }
        try peer.replicaJournal.writer.sync()
        let hello = PeerMessage.Hello(
            workload: "w", host: "new", epoch: 2,
            history: [EpochStart(epoch: 1, firstSeq: 1), EpochStart(epoch: 2, firstSeq: 8)])
        let durable = try peer.replicaJournal.welcome(hello)
        XCTAssertEqual(durable?.seq, 7)
        let siblings = try FileManager.default.contentsOfDirectory(atPath: root)
        XCTAssertTrue(siblings.contains { $0.hasPrefix("peer.diverged-") }, "\(siblings)")
    }
}

/// A logger that drops every line.
let quietLogger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
