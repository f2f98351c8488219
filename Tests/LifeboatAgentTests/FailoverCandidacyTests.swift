import LifeboatCluster
import LifeboatCore
import Synchronization
import XCTest

@testable import LifeboatAgent

final class FailoverCandidacyTests: XCTestCase {
    let clock = ManualClock(monotonic: 100, wall: 1_000_000)
    let peers = FakePeers()
    let history = [EpochStart(epoch: 1, firstSeq: 1), EpochStart(epoch: 2, firstSeq: 50)]

    func candidacy(
        _ host: String = "h2", peers hosts: [String] = ["h1", "h3"], ttl: Double = 10
    )
        -> FailoverCandidacy
    {
        FailoverCandidacy(
            workload: "db", host: host, ttl: ttl, peers: hosts.map(peer), directory: peers, clock: clock)
    }

    /// h1 held the lease at epoch 2; it ran out a second ago.
    func expired(holder: String = "h1") -> Lease {
        Lease(workload: "db", holder: holder, epoch: 2, expiresAt: clock.wall - 1, version: 7, history: history)
    }

    func holding(_ durable: Position?) -> LocalHolding { LocalHolding(durable: durable, backing: .captured) }

    func testWithoutALeaseAHostBootstraps() {
        XCTAssertEqual(candidacy().decide(lease: nil, local: holding(nil)), .bootstrap)
    }

    func testALiveLeaseIsLeftToItsHolder() {
        var lease = expired()
        lease.expiresAt = clock.wall + 5
        XCTAssertEqual(candidacy().decide(lease: lease, local: holding(position(2, 60))), .held)
        XCTAssertEqual(peers.queryCount, 0, "nobody is asked while the lease is live")
    }

    func testALeaseHandedToThisHostIsTakenAsASwitchover() {
        var lease = expired()
        lease.holder = "h2"
        lease.handedOverBy = "h1"
        lease.expiresAt = clock.wall + 5
        XCTAssertEqual(candidacy("h2").decide(lease: lease, local: holding(position(2, 60))), .switchover(lease))
        XCTAssertEqual(candidacy("h3").decide(lease: lease, local: holding(position(2, 60))), .held)
    }

    func testAnExpiredLeaseWithNoBetterPeerIsTakenAsAFailover() {
        peers.set("h3", PeerInfo(durable: position(2, 55), epoch: 2, role: "peer"))
        let lease = expired()
        XCTAssertEqual(candidacy().decide(lease: lease, local: holding(position(2, 60))), .failover(lease))
    }

    /// Choosing the most advanced peer: a host waits while a reachable peer holds more.
    func testAHostWaitsForAMoreAdvancedPeer() {
        peers.set("h3", PeerInfo(durable: position(2, 70), epoch: 2, role: "peer"))
        guard case .wait(let reason) = candidacy().decide(lease: expired(), local: holding(position(2, 60))) else {
            return XCTFail("did not wait for h3")
        }
        XCTAssertTrue(reason.contains("h3"), reason)
    }

    /// The tie rule: as much of the journal, the smaller host name goes first.
    func testOnATieTheSmallerHostNameGoesFirst() {
        peers.set("h1", PeerInfo(durable: position(2, 60), epoch: 2, role: "peer"))
        peers.set("h2", PeerInfo(durable: position(2, 60), epoch: 2, role: "peer"))
        peers.set("h3", PeerInfo(durable: position(2, 60), epoch: 2, role: "peer"))
        let lease = expired(holder: "h0")
        guard case .wait = candidacy("h2", peers: ["h1", "h3"]).decide(lease: lease, local: holding(position(2, 60)))
        else { return XCTFail("h2 went before h1") }
        XCTAssertEqual(
            candidacy("h1", peers: ["h2", "h3"]).decide(lease: lease, local: holding(position(2, 60))),
            .failover(lease))
    }

    func testALessAdvancedPeerDoesNotDelayTheTake() {
        peers.set("h1", PeerInfo(durable: position(2, 59), epoch: 2, role: "peer"))
        peers.set("h3", PeerInfo(durable: position(1, 20), epoch: 2, role: "peer"))
        let lease = expired(holder: "h0")
        XCTAssertEqual(candidacy().decide(lease: lease, local: holding(position(2, 60))), .failover(lease))
    }

    /// A peer whose journal holds records of epoch 1 past the point where epoch 2 began never
    /// saw the history as it is: its length counts for nothing.
    func testAPeerWhoseJournalIsOffTheLeaseHistoryIsIgnored() {
        peers.set("h3", PeerInfo(durable: position(1, 80), epoch: 1, role: "peer"))
        let lease = expired()
        XCTAssertEqual(candidacy().decide(lease: lease, local: holding(position(2, 60))), .failover(lease))
        XCTAssertEqual(
            candidacy().deltaSources(history: history).map(\.peer.host), [], "nor is it a delta source")
    }

    /// This host's own journal off the history counts as nothing: any peer on it goes first.
    func testAnOwnJournalOffTheHistoryCountsAsEmpty() {
        peers.set("h3", PeerInfo(durable: position(2, 51), epoch: 2, role: "peer"))
        guard case .wait = candidacy().decide(lease: expired(), local: holding(position(1, 90))) else {
            return XCTFail("a host off the history did not defer")
        }
    }

    func testTheLastHolderIsNotWaitedFor() {
        peers.set("h1", PeerInfo(durable: position(2, 99), epoch: 2, role: "peer"))
        peers.set("h3", PeerInfo(durable: position(2, 50), epoch: 2, role: "peer"))
        let lease = expired(holder: "h1")
        XCTAssertEqual(candidacy().decide(lease: lease, local: holding(position(2, 60))), .failover(lease))
    }

    func testAHostThatIsNotAPeerIsIgnored() {
        peers.set("h1", PeerInfo(durable: position(2, 50), epoch: 2, role: "peer"))
        peers.set("h3", PeerInfo(durable: position(2, 99), epoch: 3, role: "recovering"))
        let lease = expired(holder: "h0")
        XCTAssertEqual(candidacy().decide(lease: lease, local: holding(position(2, 60))), .failover(lease))
    }

    /// Seen in restart-all on the lab: every agent restarts at once, and a peer that is still
    /// starting may hold acknowledged records no one else has. A silent peer (not the last
    /// holder) is waited for, at most one TTL.
    func testAPeerThatDoesNotAnswerIsWaitedForAtMostOneTTL() {
        peers.set("h1", nil)
        peers.set("h3", PeerInfo(durable: position(2, 50), epoch: 2, role: "peer"))
        let lease = expired(holder: "h0")
        let candidacy = candidacy(ttl: 10)
        guard case .wait(let reason) = candidacy.decide(lease: lease, local: holding(position(2, 60))) else {
            return XCTFail("took the lease while h1 did not answer")
        }
        XCTAssertTrue(reason.contains("waiting for h1 to answer"), reason)
        clock.advance(10.25)
        XCTAssertEqual(candidacy.decide(lease: lease, local: holding(position(2, 60))), .failover(lease))
    }

    /// Waiting for a more advanced peer lasts at most one TTL: then this host goes ahead.
    func testTheWaitForAMoreAdvancedPeerLastsAtMostOneTTL() {
        peers.set("h3", PeerInfo(durable: position(2, 70), epoch: 2, role: "peer"))
        let candidacy = candidacy(ttl: 10)
        let lease = expired()
        guard case .wait = candidacy.decide(lease: lease, local: holding(position(2, 60))) else { return XCTFail() }
        clock.advance(10)
        guard case .wait = candidacy.decide(lease: lease, local: holding(position(2, 60))) else {
            return XCTFail("gave up before one TTL")
        }
        clock.advance(0.001)
        XCTAssertEqual(candidacy.decide(lease: lease, local: holding(position(2, 60))), .failover(lease))
    }

    /// A lease that comes alive again ends the wait; the next expiry starts a new one.
    func testALiveLeaseRestartsTheWait() {
        peers.set("h3", PeerInfo(durable: position(2, 70), epoch: 2, role: "peer"))
        let candidacy = candidacy(ttl: 10)
        _ = candidacy.decide(lease: expired(), local: holding(position(2, 60)))
        clock.advance(8)
        var live = expired()
        live.expiresAt = clock.wall + 10
        XCTAssertEqual(candidacy.decide(lease: live, local: holding(position(2, 60))), .held)
        clock.advance(5)
        let lease = expired()
        guard case .wait = candidacy.decide(lease: lease, local: holding(position(2, 60))) else {
            return XCTFail("the old wait was counted")
        }
    }

    /// After a failed recovery a host leaves the lease to the others for two TTLs.
    func testAfterAFailedRecoveryAHostBacksOffTwoTTLs() {
        peers.set("h3", PeerInfo(durable: position(2, 50), epoch: 2, role: "peer"))
        let candidacy = candidacy(ttl: 10)
        let lease = expired()
        candidacy.recoveryFailed()
        clock.advance(19.75)
        guard case .wait(let reason) = candidacy.decide(lease: lease, local: holding(position(2, 60))) else {
            return XCTFail("took the lease during the backoff")
        }
        XCTAssertTrue(reason.contains("failed recovery"), reason)
        XCTAssertEqual(peers.queryCount, 0)
        clock.advance(0.25)
        XCTAssertEqual(candidacy.decide(lease: lease, local: holding(position(2, 60))), .failover(lease))
    }

    func testTheDeltaComesFromTheMostAdvancedPeerOnTheHistory() {
        peers.set("h1", PeerInfo(durable: position(2, 65), epoch: 2, role: "peer"))
        peers.set("h3", PeerInfo(durable: position(2, 80), epoch: 2, role: "peer"))
        peers.set("h4", PeerInfo(durable: position(2, 99), epoch: 2, role: "primary"))
        peers.set("h5", nil)
        let sources = candidacy(peers: ["h1", "h3", "h4", "h5"]).deltaSources(history: history)
        XCTAssertEqual(sources.map(\.peer.host), ["h3", "h1"])
        XCTAssertEqual(sources.first?.durable, position(2, 80))
    }

    func testEveryPeerIsAskedAtOnceAndTheLostHolderOnlyBriefly() {
        peers.set("h1", nil)
        peers.set("h3", PeerInfo(durable: position(2, 80), epoch: 2, role: "peer"))
        peers.set("h4", PeerInfo(durable: position(2, 70), epoch: 2, role: "peer"))
        peers.rendezvous.withLock { $0 = 3 }
        let sources = candidacy(peers: ["h1", "h3", "h4"]).deltaSources(history: history, lostHolder: "h1")
        XCTAssertTrue(peers.queriesMet, "the three peers were asked one after the other, not at once")
        XCTAssertEqual(sources.map(\.peer.host), ["h3", "h4"])
        XCTAssertEqual(peers.timeouts["h1"], FailoverCandidacy.lostHolderTimeout, "the lost holder gets a short wait")
        XCTAssertEqual(peers.timeouts["h3"], 1)

    }

    func testAFailoverDecisionAsksThePeersAtOnceButNotTheLostHolder() {
        peers.set("h3", PeerInfo(durable: position(2, 60), epoch: 2, role: "peer"))
        peers.set("h4", PeerInfo(durable: position(2, 60), epoch: 2, role: "peer"))
        peers.rendezvous.withLock { $0 = 2 }
        let lease = expired(holder: "h1")
        XCTAssertEqual(
            candidacy("h2", peers: ["h1", "h3", "h4"]).decide(lease: lease, local: holding(position(2, 60))),
            .failover(lease))
        XCTAssertTrue(peers.queriesMet, "h3 and h4 were asked one after the other")
        XCTAssertNil(peers.timeouts["h1"], "the holder whose lease ran out is not asked")
    }

    /// A whole cluster on one coordinator: the primary stops renewing (it died); a peer sees
    /// the lease run out and takes it with the next epoch; the old primary cannot acknowledge.
    func testAPrimaryThatStopsRenewingLosesTheLeaseToAPeer() throws {
        let coordinator = MemoryCoordinator()
        let h1 = TestHost("h1", peers: ["h2"], coordinator: coordinator, clock: clock, directory: peers)
        let h2 = TestHost("h2", peers: ["h1"], coordinator: coordinator, clock: clock, directory: peers)
        _ = try h1.keeper.acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        _ = try h1.keeper.recordEpochStart(firstSeq: 1)
        clock.advance(9.75)
        XCTAssertEqual(h2.candidacy.decide(lease: try h2.keeper.read(), local: holding(position(1, 10))), .held)
        XCTAssertNotNil(h1.keeper.fenceReason(), "h1 stopped acknowledging two seconds before")
        clock.advance(0.25)
        let lease = try XCTUnwrap(try h2.keeper.read())
        XCTAssertEqual(h2.candidacy.decide(lease: lease, local: holding(position(1, 10))), .failover(lease))
        let taken = try XCTUnwrap(try h2.keeper.acquire(previous: lease, acceptedEpoch: 1, journalEpoch: 1))
        XCTAssertEqual(taken.epoch, 2)
        guard case .lost = h1.keeper.renew() else { return XCTFail("h1 renewed h2's lease") }
    }
}
