import Foundation
import LifeboatCluster
import Synchronization
import XCTest

/// `EtcdCoordinator` against a real etcd the test starts itself.
final class EtcdCoordinatorTests: XCTestCase {
    private var servers: EtcdServers?
    private var coordinators: [EtcdCoordinator] = []
    private var recorders: [WatchRecorder<Lease?>] = []

    override func tearDown() async throws {
        for recorder in recorders { recorder.stop() }
        recorders = []
        let coordinators = self.coordinators
        self.coordinators = []
        await onThread { for coordinator in coordinators { coordinator.close() } }
        servers?.stop()
        servers = nil
    }

    /// Starts etcd and `count` coordinators, each with a client of its own (as on two hosts).
    private func coordinators(_ count: Int) async throws -> (EtcdServers, [EtcdCoordinator]) {
        let servers = try EtcdServers(count: 1)
        self.servers = servers
        try await servers.start()
        let made = try (0..<count).map { _ in
            try EtcdCoordinator(endpoints: servers.endpoints, prefix: "/lifeboat", dialTimeout: 1, requestTimeout: 2)
        }
        coordinators += made
        return (servers, made)
    }

    private static func proposal(_ holder: String, after lease: Lease?, ttl: Double = 2) -> Lease {
        let epoch = (lease?.epoch ?? 0) + 1
        return Lease(
            workload: "db", holder: holder, epoch: epoch, expiresAt: Date().timeIntervalSince1970 + ttl, version: 0,
            history: (lease?.history ?? []) + [EpochStart(epoch: epoch, firstSeq: epoch * 10)])
    }

    func testTwoCoordinatorsRacingForTheNextEpochExactlyOneWins() async throws {
        let (_, pair) = try await coordinators(2)
        for round in 1...4 {
            let outcomes = try await onThread { () throws -> [Lease?] in
                // Both read the same lease, then both swap at once.
                let read = try pair.map { try $0.lease("db") }
                // Each host knows the expiry of a free lease only from what it saw itself.
                XCTAssertEqual(read.map { $0?.isExpired() }, [round == 1 ? nil : true, round == 1 ? nil : true])
                XCTAssertEqual(read[0]?.version, read[1]?.version)
                XCTAssertEqual(read[0]?.epoch, read[1]?.epoch)
                let results = Mutex<[Int: Result<Lease?, any Error>]>([:])
                DispatchQueue.concurrentPerform(iterations: 2) { index in
                    let name = index == 0 ? "a" : "b"
                    let taken = Result {
                        try pair[index].compareAndSwap(
                            "db", expectedVersion: read[index]?.version, Self.proposal(name, after: read[index]))
                    }
                    results.withLock { $0[index] = taken }
                }
                return try results.withLock { results in try [0, 1].map { try results[$0]!.get() } }
            }
            let winners = outcomes.compactMap { $0 }
            XCTAssertEqual(winners.count, 1, "round \(round): exactly one host takes epoch \(round): \(outcomes)")
            let stored = try await onThread { try pair[0].lease("db") }
            XCTAssertEqual(stored?.epoch, UInt64(round))
            XCTAssertEqual(stored?.holder, winners.first?.holder)
            XCTAssertEqual(stored?.history.map(\.epoch), Array(1...UInt64(round)))
            XCTAssertEqual(stored?.isExpired(), false)
            // The winner gives the lease up so the next round races again.
            let winner = outcomes[0] != nil ? pair[0] : pair[1]
            var release = try XCTUnwrap(stored)
            release.expiresAt = Date().timeIntervalSince1970
            let released = try await onThread { [release] in
                try winner.compareAndSwap("db", expectedVersion: release.version, release)
            }
            XCTAssertEqual(released?.isExpired(), true)
        }
    }

    func testAStaleVersionWritesNothing() async throws {
        let (_, pair) = try await coordinators(2)
        let (a, b) = (pair[0], pair[1])
        try await onThread {
            let first = try XCTUnwrap(try a.compareAndSwap("db", expectedVersion: nil, Self.proposal("a", after: nil)))
            XCTAssertNil(try b.compareAndSwap("db", expectedVersion: nil, Self.proposal("b", after: nil)))
            // The holder records an epoch start: the version moves on.
            var appended = first
            appended.history.append(EpochStart(epoch: 1, firstSeq: 99))
            let second = try XCTUnwrap(try a.compareAndSwap("db", expectedVersion: first.version, appended))
            XCTAssertGreaterThan(second.version, first.version)
            // Swaps that name the old version write nothing: not a handover, not a history, not a take.
            var handover = first
            handover.holder = "b"
            handover.handedOverBy = "a"
            XCTAssertNil(try a.compareAndSwap("db", expectedVersion: first.version, handover))
            var history = first
            history.history = []
            XCTAssertNil(try a.compareAndSwap("db", expectedVersion: first.version, history))
            XCTAssertNil(try b.compareAndSwap("db", expectedVersion: first.version, Self.proposal("b", after: first)))
            let stored = try XCTUnwrap(try b.lease("db"))
            XCTAssertEqual(stored.version, second.version)
            XCTAssertEqual(stored.holder, "a")
            XCTAssertEqual(stored.epoch, 1)
            XCTAssertEqual(stored.history, appended.history)
            XCTAssertNil(stored.handedOverBy)
            // A take while the holder's etcd lease lives fails even on the current version.
            XCTAssertNil(try b.compareAndSwap("db", expectedVersion: stored.version, Self.proposal("b", after: stored)))
        }
    }

    func testAKilledHoldersLostLeaseIsReportedByTheWatchWithinTTLPlusOneSecond() async throws {
        let (_, pair) = try await coordinators(2)
        let (holder, peer) = (pair[0], pair[1])
        let ttl = 2.0
        let taken = try await onThread {
            try holder.compareAndSwap("db", expectedVersion: nil, Self.proposal("a", after: nil, ttl: ttl))
        }
        var lease = try XCTUnwrap(taken)
        let changes = WatchRecorder(peer.leaseChanges("db"))
        recorders.append(changes)
        let first = try await changes.take(within: 5) { $0 != nil }
        XCTAssertEqual(first?.holder, "a")
        XCTAssertEqual(first?.isExpired(), false)
        // Renewals (keep-alives) keep it past its TTL and write nothing the peer sees.
        var lastRenewal = Date()
        for _ in 0..<4 {
            try await Task.sleep(nanoseconds: 700_000_000)
            lease.expiresAt = Date().timeIntervalSince1970 + ttl
            let renewedAt = Date()
            let renewed = try await onThread { [lease] in
                try holder.compareAndSwap("db", expectedVersion: lease.version, lease)
            }
            XCTAssertEqual(renewed?.version, lease.version, "a renewal writes no key")
            lastRenewal = renewedAt
        }
        XCTAssertEqual(changes.all.count, 1, "no change while the holder renews: \(changes.all)")
        // The holder dies: no more keep-alives. The peer's watch tells within TTL + 1 s.
        let lost = try await changes.take(within: ttl + 3) { $0?.isExpired() == true }
        XCTAssertEqual(lost?.holder, "a")
        XCTAssertEqual(lost?.epoch, 1)
        XCTAssertLessThanOrEqual(Date().timeIntervalSince(lastRenewal), ttl + 1)
        // The peer takes epoch 2; then its etcd lease is revoked (a crash seen by etcd at once):
        // the holder's watch reports that too.
        let current = try XCTUnwrap(lost)
        let second = try await onThread {
            try peer.compareAndSwap("db", expectedVersion: current.version, Self.proposal("b", after: current))
        }
        let held = try await changes.take(within: 5) { $0?.holder == "b" }
        XCTAssertEqual(held?.epoch, 2)
        XCTAssertEqual(second?.epoch, 2)
        let attached = try await onThread { () throws -> Int64 in
            try peer.client.blocking { try await peer.client.range(.key("/lifeboat/workloads/db/lease")).kvs[0].lease }
        }
        let revokedAt = Date()
        try await onThread { try peer.client.blocking { try await peer.client.revoke(attached) } }
        let gone = try await changes.take(within: 5) { $0?.isExpired() == true }
        XCTAssertEqual(gone?.holder, "b")
        XCTAssertLessThan(Date().timeIntervalSince(revokedAt), 1)
    }

    func testAHandedOverLeaseStaysHeldUntilTheTargetTakesTheNextEpoch() async throws {
        let (_, pair) = try await coordinators(2)
        let (source, target) = (pair[0], pair[1])
        try await onThread {
            let first = try XCTUnwrap(
                try source.compareAndSwap("db", expectedVersion: nil, Self.proposal("a", after: nil, ttl: 5)))
            var handover = first
            handover.holder = "b"
            handover.handedOverBy = "a"
            let handed = try XCTUnwrap(try source.compareAndSwap("db", expectedVersion: first.version, handover))
            XCTAssertEqual(handed.holder, "b")
            XCTAssertEqual(handed.handedOverBy, "a")
            XCTAssertFalse(handed.isExpired(), "a handed-over lease is held until the target takes it")
            // Only the target's take after the handover wins; it clears the handover.
            let taken = try XCTUnwrap(
                try target.compareAndSwap("db", expectedVersion: handed.version, Self.proposal("b", after: handed)))
            XCTAssertEqual(taken.epoch, 2)
            XCTAssertNil(taken.handedOverBy)
            XCTAssertFalse(taken.isExpired())
        }
    }
}

/// Runs blocking work on a thread outside the cooperative pool and awaits it.
func onThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

func onThread(_ body: @escaping @Sendable () -> Void) async {
    await withCheckedContinuation { continuation in
        Thread {
            body()
            continuation.resume()
        }.start()
    }
}
