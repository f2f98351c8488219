import Foundation
import LifeboatCluster
import XCTest

/// `EtcdClient` against real etcd members that each test starts itself.
final class EtcdClientTests: XCTestCase {
    private var servers: EtcdServers?
    private var clients: [EtcdClient] = []
    private var recorders: [WatchRecorder<EtcdWatchUpdate>] = []

    override func tearDown() async throws {
        for recorder in recorders { recorder.stop() }
        recorders = []
        for client in clients { try? await client.shutdown() }
        clients = []
        servers?.stop()
        servers = nil
    }

    /// Starts `count` members and a client of all of them.
    private func cluster(_ count: Int = 1) async throws -> (EtcdServers, EtcdClient) {
        let servers = try EtcdServers(count: count)
        self.servers = servers
        try await servers.start()
        return (servers, try client(servers.endpoints))
    }

    private func client(_ endpoints: [String], dialTimeout: Double = 1, requestTimeout: Double = 2) throws -> EtcdClient
    {
        let client = try EtcdClient(
            .init(endpoints: endpoints, dialTimeout: dialTimeout, requestTimeout: requestTimeout, watchProbeInterval: 1)
        )
        clients.append(client)
        return client
    }

    private func record(_ watch: AsyncThrowingStream<EtcdWatchUpdate, any Error>) -> WatchRecorder<EtcdWatchUpdate> {
        let recorder = WatchRecorder(watch)
        recorders.append(recorder)
        return recorder
    }

    private func text(_ kv: EtcdKeyValue) -> String { String(decoding: kv.value, as: UTF8.self) }

    func testPutRangePrefixAndDelete() async throws {
        let (_, etcd) = try await cluster()
        let first = try await etcd.put("/t/a", Data("1".utf8))
        try await etcd.put("/t/b", Data("2".utf8))
        try await etcd.put("/u/c", Data("3".utf8))
        let one = try await etcd.range(.key("/t/a"))
        XCTAssertEqual(one.kvs.map(\.key), ["/t/a"])
        XCTAssertEqual(one.kvs.first.map(text), "1")
        XCTAssertEqual(one.kvs.first?.createRevision, first)
        XCTAssertEqual(one.kvs.first?.version, 1)
        let prefix = try await etcd.range(.prefix("/t/"))
        XCTAssertEqual(prefix.kvs.map(\.key), ["/t/a", "/t/b"])
        XCTAssertEqual(prefix.count, 2)
        let absent = try await etcd.range(.key("/t/none"))
        XCTAssertEqual(absent.kvs, [])
        XCTAssertEqual(absent.count, 0)
        XCTAssertGreaterThanOrEqual(absent.revision, first + 2)
        let deleted = try await etcd.delete(.prefix("/t/"))
        XCTAssertEqual(deleted, 2)
        let left = try await etcd.range(.prefix("/")).kvs.map(\.key)
        XCTAssertEqual(left, ["/u/c"])
    }

    func testTxnCompareAndSwapWritesOnlyOnTheRevisionRead() async throws {
        let (_, etcd) = try await cluster()
        // Create-if-absent: the first wins, the second gets the stored key back.
        let create = [EtcdCompare("/cas", .createRevision(0))]
        let won = try await etcd.txn(
            compare: create, success: [.put(key: "/cas", value: Data("a".utf8))], failure: [.range(.key("/cas"))])
        XCTAssertTrue(won.succeeded)
        let lost = try await etcd.txn(
            compare: create, success: [.put(key: "/cas", value: Data("b".utf8))], failure: [.range(.key("/cas"))])
        XCTAssertFalse(lost.succeeded)
        guard case .range(let current) = try XCTUnwrap(lost.results.first) else {
            return XCTFail("the failure branch answers a range: \(lost.results)")
        }
        XCTAssertEqual(current.kvs.first.map(text), "a")
        let read = try XCTUnwrap(current.kvs.first).modRevision
        // A swap on the revision read wins once; the same (now stale) revision writes nothing.
        let swap = try await etcd.txn(
            compare: [EtcdCompare("/cas", .modRevision(read))], success: [.put(key: "/cas", value: Data("c".utf8))])
        XCTAssertTrue(swap.succeeded)
        let stale = try await etcd.txn(
            compare: [EtcdCompare("/cas", .modRevision(read))], success: [.put(key: "/cas", value: Data("d".utf8))])
        XCTAssertFalse(stale.succeeded)
        let casValue = try await etcd.range(.key("/cas")).kvs.first.map(text)
        XCTAssertEqual(casValue, "c")
        let casVersion = try await etcd.range(.key("/cas")).kvs.first?.version
        XCTAssertEqual(casVersion, 2)
        // Value, version and lease compares, and a delete in the success branch.
        let byValue = try await etcd.txn(
            compare: [
                EtcdCompare("/cas", .value(Data("c".utf8))), EtcdCompare("/cas", .version(2)),
                EtcdCompare("/cas", .lease(0)), EtcdCompare("/cas", .modRevision(read), .greater),
            ],
            success: [.delete(.key("/cas"))])
        XCTAssertTrue(byValue.succeeded)
        XCTAssertEqual(byValue.results, [.delete(deleted: 1)])
        let afterDelete = try await etcd.range(.key("/cas")).kvs
        XCTAssertEqual(afterDelete, [])
    }

    func testLeaseKeepAliveExpiryAndRevoke() async throws {
        let (_, etcd) = try await cluster()
        let lease = try await etcd.grant(ttl: 2)
        XCTAssertGreaterThanOrEqual(lease.ttl, 2)
        try await etcd.put("/lease/k", Data("v".utf8), lease: lease.id)
        let attached = try await etcd.range(.key("/lease/k")).kvs.first?.lease
        XCTAssertEqual(attached, lease.id)
        // Kept alive past its TTL, the key stays.
        for _ in 0..<5 {
            try await Task.sleep(nanoseconds: 600_000_000)
            let ttl = try await etcd.keepAlive(lease.id)
            XCTAssertGreaterThanOrEqual(ttl, 2)
        }
        let status = try await etcd.timeToLive(lease.id, keys: true)
        XCTAssertEqual(status.keys, ["/lease/k"])
        XCTAssertEqual(status.grantedTTL, lease.ttl)
        let kept = try await etcd.range(.key("/lease/k")).kvs.count
        XCTAssertEqual(kept, 1)
        // Left alone, it expires and takes its key along.
        let deadline = Date().addingTimeInterval(Double(lease.ttl) + 3)
        while try await !etcd.range(.key("/lease/k")).kvs.isEmpty {
            XCTAssertLessThan(Date(), deadline, "the key of an expired lease must disappear")
            try await Task.sleep(nanoseconds: 100_000_000)
        }
        await assertLeaseGone(lease.id) { try await etcd.keepAlive(lease.id) }
        await assertLeaseGone(lease.id) { _ = try await etcd.timeToLive(lease.id) }
        // Revoke deletes the keys at once; a second revoke finds no lease.
        let other = try await etcd.grant(ttl: 60)
        try await etcd.put("/lease/r", Data("v".utf8), lease: other.id)
        try await etcd.revoke(other.id)
        let revokedKeys = try await etcd.range(.key("/lease/r")).kvs
        XCTAssertEqual(revokedKeys, [])
        await assertLeaseGone(other.id) { try await etcd.revoke(other.id) }
        await assertLeaseGone(other.id) { try await etcd.put("/lease/r", Data(), lease: other.id) }
    }

    func testLeaseIDsAboveTwoToTheFiftyThreeStayExact() async throws {
        let (_, etcd) = try await cluster()
        let id: Int64 = 0x7fff_ffff_ffff_fff1  // not representable as a Double
        let lease = try await etcd.grant(ttl: 30, id: id)
        XCTAssertEqual(lease.id, id)
        try await etcd.put("/big", Data(), lease: id)
        let bigAttached = try await etcd.range(.key("/big")).kvs.first?.lease
        XCTAssertEqual(bigAttached, id)
        let bigStatus = try await etcd.timeToLive(id).id
        XCTAssertEqual(bigStatus, id)
    }

    func testWatchSeesPutAndDeleteInOrderAndResumesAfterARestart() async throws {
        let (servers, etcd) = try await cluster()
        let start = try await etcd.range(.key("/w")).revision + 1
        let events = record(etcd.watch(.prefix("/w/"), from: start, previousValues: true))
        try await etcd.put("/w/a", Data("1".utf8))
        try await etcd.put("/other", Data("x".utf8))
        try await etcd.delete(.key("/w/a"))
        var seen = try await events.next(2)
        XCTAssertEqual(seen.map(\.kind), [.put, .delete])
        XCTAssertEqual(seen.map(\.kv.key), ["/w/a", "/w/a"])
        XCTAssertEqual(seen.last?.previous.map(text), "1")
        // etcd dies and comes back on the same data dir; a change made before the watch could
        // reconnect still arrives, once.
        servers.kill(0)
        try await servers.start([0])
        try await etcd.put("/w/b", Data("2".utf8))
        try await etcd.put("/w/c", Data("3".utf8))
        seen = try await events.next(2)
        XCTAssertEqual(seen.map(\.kv.key), ["/w/b", "/w/c"])
        XCTAssertEqual(seen.map(\.kind), [.put, .put])
        XCTAssertLessThan(seen[0].kv.modRevision, seen[1].kv.modRevision)
    }

    func testWatchFromACompactedRevisionSaysSo() async throws {
        let (_, etcd) = try await cluster()
        let first = try await etcd.put("/c/a", Data())
        let last = try await etcd.put("/c/a", Data())
        try await etcd.compact(revision: last)
        let updates = record(etcd.watch(.prefix("/c/"), from: first))
        try await updates.waitForEnd(within: 5)
        XCTAssertEqual(updates.all, [.compacted(revision: last)], "a compacted watch says so and ends")
    }

    func testCallsAndWatchesMoveOnWhenTheFirstEndpointsMemberDies() async throws {
        let (servers, etcd) = try await cluster(3)
        try await etcd.put("/f/a", Data("1".utf8))
        XCTAssertEqual(etcd.currentEndpoint, servers.endpoints[0])
        let events = record(etcd.watch(.prefix("/f/"), from: try await etcd.range(.key("/f/a")).revision + 1))
        try await etcd.put("/f/b", Data("2".utf8))
        let beforeKill = try await events.next(1).map(\.kv.key)
        XCTAssertEqual(beforeKill, ["/f/b"])
        servers.kill(0)
        // The two others keep a quorum: reads, writes and the watch go on through them.
        try await etcd.put("/f/c", Data("3".utf8))
        let keys = try await etcd.range(.prefix("/f/")).kvs.map(\.key)
        XCTAssertEqual(keys, ["/f/a", "/f/b", "/f/c"])
        XCTAssertNotEqual(etcd.currentEndpoint, servers.endpoints[0])
        let afterKill = try await events.next(1).map(\.kv.key)
        XCTAssertEqual(afterKill, ["/f/c"])
        let members = try await etcd.members()
        XCTAssertEqual(members.map(\.name).sorted(), ["m0", "m1", "m2"])
        let status = try await etcd.status(of: servers.endpoints[1])
        XCTAssertTrue(status.version.hasPrefix("3."), status.version)
        XCTAssertNotEqual(status.leader, 0)
    }

    func testAFirstEndpointThatNeverListenedIsSkipped() async throws {
        let (servers, _) = try await cluster()
        let silent = "http://127.0.0.1:\(try freePorts(1)[0])"
        let etcd = try client([silent] + servers.endpoints)
        try await etcd.put("/s", Data("1".utf8))
        XCTAssertEqual(etcd.currentEndpoint, servers.endpoints[0])
        let found = try await etcd.range(.key("/s")).kvs.count
        XCTAssertEqual(found, 1)
    }

    func testNoEndpointAnsweringNamesEveryOne() async throws {
        let ports = try freePorts(2)
        let endpoints = ports.map { "http://127.0.0.1:\($0)" }
        let etcd = try client(endpoints)
        do {
            _ = try await etcd.range(.key("/x"))
            XCTFail("a range with no etcd must fail")
        } catch let error as EtcdError {
            XCTAssertEqual(error.kind, .unreachable)
            for endpoint in endpoints { XCTAssertTrue(error.message.contains(endpoint), error.description) }
            XCTAssertTrue(error.description.contains("connection refused"), error.description)
            XCTAssertTrue(error.description.contains("coordinator.endpoints"), error.description)
        }
        XCTAssertThrowsError(try EtcdClient(.init(endpoints: ["http://host:port/x"]))) { error in
            XCTAssertEqual(
                "\(error)",
                "'http://host:port/x' is not an etcd client URL; write it as http://HOST:PORT (or https://HOST:PORT)")
        }
    }

    // MARK: - helpers

    private func assertLeaseGone(
        _ id: Int64, file: StaticString = #filePath, line: UInt = #line, _ body: () async throws -> Void
    ) async {
        do {
            try await body()
            XCTFail("lease \(id) should be gone", file: file, line: line)
        } catch let error as EtcdError {
            XCTAssertEqual(error.kind, .leaseGone(id: id), error.description, file: file, line: line)
        } catch {
            XCTFail("unexpected \(error)", file: file, line: line)
        }
    }

}
