import LifeboatCore
import Logging
import XCTest

@testable import LifeboatAgent

final class ReplicationPolicyTests: XCTestCase {
    let log = LogLines()

    func policy(
        _ mode: ReplicationConfiguration.Mode, peers: Int = 1, onTimeout: ReplicationConfiguration.OnTimeout = .fail
    )
        -> ReplicationPolicy
    {
        ReplicationPolicy(
            workload: "db",
            settings: ReplicationConfiguration(mode: mode, minSyncPeers: peers, syncTimeout: 5, onTimeout: onTimeout),
            logger: log.logger)
    }

    func testAsyncAcknowledgesAfterTheLocalJournalOnly() {
        let group = FakeGroup([GroupPeer(host: "h2", connected: false, acked: nil)])
        XCTAssertTrue(policy(.async).replicated(seq: 10, group: group))
        XCTAssertEqual(group.waitCount, 0)
        XCTAssertEqual(group.kickCount, 1, "the streams are woken")
    }

    func testSyncAcknowledgesOnceAPeerHoldsTheRecord() {
        let group = FakeGroup([
            GroupPeer(host: "h2", connected: true, acked: position(1, 10)),
            GroupPeer(host: "h3", connected: true, acked: position(1, 3)),
        ])
        let policy = policy(.sync)
        XCTAssertTrue(policy.replicated(seq: 10, group: group))
        XCTAssertNil(policy.alert)
        XCTAssertEqual(policy.syncTimeouts, 0)
    }

    func testSyncWithTwoPeersNeedsBoth() {
        let group = FakeGroup([
            GroupPeer(host: "h2", connected: true, acked: position(1, 10)),
            GroupPeer(host: "h3", connected: true, acked: position(1, 9)),
        ])
        XCTAssertFalse(policy(.sync, peers: 2).replicated(seq: 10, group: group))
        group.set([
            GroupPeer(host: "h2", connected: true, acked: position(1, 10)),
            GroupPeer(host: "h3", connected: true, acked: position(1, 10)),
        ])
        XCTAssertTrue(policy(.sync, peers: 2).replicated(seq: 10, group: group))
    }

    /// `on_sync_timeout: fail`: the fsync answers EIO (false), the alert is set and counted.
    func testFailAnswersEIOWhenThePeersTimeOut() {
        let group = FakeGroup([GroupPeer(host: "h2", connected: true, acked: position(1, 9))])
        let policy = policy(.sync, onTimeout: .fail)
        XCTAssertFalse(policy.replicated(seq: 10, group: group))
        XCTAssertEqual(policy.syncTimeouts, 1)
        XCTAssertEqual(policy.alert, "fewer than 1 sync peer(s) acknowledged seq 10 within 5.0 s")
        XCTAssertFalse(policy.degraded)
        XCTAssertTrue(log.at(.error).last?.contains("the fsync fails with EIO") ?? false, "\(log.all)")
        XCTAssertFalse(policy.replicated(seq: 11, group: group), "fail does not degrade: the next fsync waits again")
        XCTAssertEqual(group.waitCount, 2)
    }

    /// `on_sync_timeout: degrade`: acknowledged from the local journal, with the alert.
    func testDegradeAcknowledgesAndRaisesTheAlert() {
        let group = FakeGroup([GroupPeer(host: "h2", connected: false, acked: position(1, 9))])
        let policy = policy(.sync, onTimeout: .degrade)
        XCTAssertTrue(policy.replicated(seq: 10, group: group))
        XCTAssertTrue(policy.degraded)
        XCTAssertNotNil(policy.alert)
        XCTAssertEqual(policy.syncTimeouts, 1)
        XCTAssertTrue(log.at(.warning).last?.contains("degraded to async") ?? false, "\(log.all)")
    }

    /// Degraded, with too few peers connected: no fsync waits for them any more.
    func testWhileDegradedFsyncsDoNotWait() {
        let group = FakeGroup([GroupPeer(host: "h2", connected: false, acked: position(1, 9))])
        let policy = policy(.sync, onTimeout: .degrade)
        _ = policy.replicated(seq: 10, group: group)
        let waits = group.waitCount
        for seq in UInt64(11)...20 { XCTAssertTrue(policy.replicated(seq: seq, group: group)) }
        XCTAssertEqual(group.waitCount, waits)
        XCTAssertEqual(policy.syncTimeouts, 1)
        XCTAssertTrue(policy.degraded)
    }

    /// Enough peers connected again: sync resumes, the alert is cleared, fsyncs wait again.
    func testSyncResumesWhenThePeersAreBack() {
        let group = FakeGroup([GroupPeer(host: "h2", connected: false, acked: position(1, 9))])
        let policy = policy(.sync, onTimeout: .degrade)
        _ = policy.replicated(seq: 10, group: group)
        group.set([GroupPeer(host: "h2", connected: true, acked: position(1, 11))])
        let waits = group.waitCount
        XCTAssertTrue(policy.replicated(seq: 11, group: group))
        XCTAssertFalse(policy.degraded)
        XCTAssertNil(policy.alert)
        XCTAssertEqual(group.waitCount, waits + 1)
        XCTAssertTrue(log.all.contains { $0.contains("sync replication resumes") })
    }
}
