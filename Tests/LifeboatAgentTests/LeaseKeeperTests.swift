import LifeboatCluster
import LifeboatCore
import XCTest

@testable import LifeboatAgent

final class LeaseKeeperTests: XCTestCase {
    let clock = ManualClock(monotonic: 100, wall: 1_000_000)
    let coordinator = MemoryCoordinator()

    func keeper(_ host: String = "h1", ttl: Double = 10) -> LeaseKeeper {
        LeaseKeeper(workload: "db", host: host, ttl: ttl, coordinator: coordinator, clock: clock)
    }

    // MARK: acquire and epochs

    func testTheFirstTakeIsEpochOneWithAnEmptyHistory() throws {
        let taken = try XCTUnwrap(try keeper().acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0))
        XCTAssertEqual(taken.epoch, 1)
        XCTAssertEqual(taken.holder, "h1")
        XCTAssertEqual(taken.history, [])
        XCTAssertEqual(taken.expiresAt, clock.wall + 10)
        XCTAssertEqual(coordinator.stored(), taken)
    }

    func testTheNextEpochIsOnePastEveryEpochSeen() {
        XCTAssertEqual(LeaseKeeper.nextEpoch(lease: 3, accepted: 1, journal: 2), 4)
        XCTAssertEqual(LeaseKeeper.nextEpoch(lease: 3, accepted: 7, journal: 2), 8)
        XCTAssertEqual(LeaseKeeper.nextEpoch(lease: 3, accepted: 1, journal: 9), 10)
        XCTAssertEqual(LeaseKeeper.nextEpoch(lease: 0, accepted: 0, journal: 0), 1)
    }

    /// A lease file that was lost (epoch back to nothing) never makes an epoch be used twice.
    func testAnEpochIsNeverReusedWhenTheLeaseIsBehindTheJournal() throws {
        let taken = try XCTUnwrap(try keeper().acquire(previous: nil, acceptedEpoch: 4, journalEpoch: 6))
        XCTAssertEqual(taken.epoch, 7)
    }

    func testAFailoverKeepsTheHistoryAndTakesEpochPlusOne() throws {
        let history = [EpochStart(epoch: 1, firstSeq: 1), EpochStart(epoch: 2, firstSeq: 40)]
        coordinator.put(
            Lease(workload: "db", holder: "h2", epoch: 2, expiresAt: clock.wall - 1, version: 5, history: history))
        let previous = try XCTUnwrap(coordinator.stored())
        let taken = try XCTUnwrap(try keeper().acquire(previous: previous, acceptedEpoch: 2, journalEpoch: 2))
        XCTAssertEqual(taken.epoch, 3)
        XCTAssertEqual(taken.history, history)
        XCTAssertEqual(taken.version, 6)
        XCTAssertNil(taken.handedOverBy)
    }

    /// The compare-and-swap names the version read: when another host wrote meanwhile, the
    /// take loses, the stored lease stays the other host's, and this host never acknowledges.
    func testAStaleTakeLosesTheCompareAndSwap() throws {
        coordinator.put(
            Lease(workload: "db", holder: "h2", epoch: 2, expiresAt: clock.wall - 1, version: 5, history: []))
        let stale = try XCTUnwrap(coordinator.stored())
        let h3 = keeper("h3")
        XCTAssertNotNil(try h3.acquire(previous: stale, acceptedEpoch: 0, journalEpoch: 0))
        let h1 = keeper("h1")
        XCTAssertNil(try h1.acquire(previous: stale, acceptedEpoch: 0, journalEpoch: 0))
        XCTAssertEqual(coordinator.stored()?.holder, "h3")
        XCTAssertEqual(coordinator.stored()?.epoch, 3)
        XCTAssertNotNil(h1.fenceReason(), "a host that lost the take must not acknowledge")
        XCTAssertEqual(h1.epoch, 0)
    }

    func testTwoBootstrapsOnlyOneWins() throws {
        let a = try keeper("h1").acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        let b = try keeper("h2").acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        XCTAssertNotNil(a)
        XCTAssertNil(b)
        XCTAssertEqual(coordinator.stored()?.holder, "h1")
    }

    func testACoordinatorErrorOnTheTakeThrows() {
        coordinator.unreachable = true
        XCTAssertThrowsError(try keeper().acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0))
    }

    // MARK: the self-fencing deadline

    func testTheDeadlineIsTakeStartPlusTTLMinusAFifth() throws {
        let keeper = keeper(ttl: 10)
        _ = try keeper.acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        XCTAssertEqual(keeper.deadline, 108, accuracy: 1e-9)
    }

    func testAnAckIsAllowedJustBeforeTheDeadline() throws {
        let keeper = keeper(ttl: 10)
        _ = try keeper.acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        clock.set(monotonic: 107.999)
        XCTAssertNil(keeper.fenceReason())
    }

    func testAnAckIsRefusedAtTheDeadline() throws {
        let keeper = keeper(ttl: 10)
        _ = try keeper.acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        clock.set(monotonic: 108)
        let reason = try XCTUnwrap(keeper.fenceReason())
        XCTAssertTrue(reason.contains("not renewed in time"), reason)
        clock.set(monotonic: 109)
        XCTAssertNotNil(keeper.fenceReason())
    }

    func testTheMarginIsAtLeast200Milliseconds() throws {
        XCTAssertEqual(keeper(ttl: 0.5).fenceMargin, 0.2)
        XCTAssertEqual(keeper(ttl: 1).fenceMargin, 0.2)
        XCTAssertEqual(keeper(ttl: 2).fenceMargin, 0.4, accuracy: 1e-12)
        let short = keeper(ttl: 0.5)
        _ = try short.acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        clock.set(monotonic: 100.299)
        XCTAssertNil(short.fenceReason())
        clock.set(monotonic: 100.3)
        XCTAssertNotNil(short.fenceReason())
    }

    func testBeforeAnyTakeNothingIsAcknowledged() {
        XCTAssertNotNil(keeper().fenceReason())
    }

    func testARenewalMovesTheDeadlineFromTheRenewalStart() throws {
        let keeper = keeper(ttl: 10)
        _ = try keeper.acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        clock.set(monotonic: 103)
        guard case .renewed(let lease) = keeper.renew() else { return XCTFail("not renewed") }
        XCTAssertEqual(lease.expiresAt, clock.wall + 10)
        XCTAssertEqual(keeper.deadline, 111, accuracy: 1e-9)
        clock.set(monotonic: 110.999)
        XCTAssertNil(keeper.fenceReason())
        clock.set(monotonic: 111)
        XCTAssertNotNil(keeper.fenceReason())
    }

    func testARenewalIsDueAfterAQuarterTTL() throws {
        let keeper = keeper(ttl: 10)
        _ = try keeper.acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        clock.set(monotonic: 102.49)
        XCTAssertFalse(keeper.renewalDue)
        clock.set(monotonic: 102.5)
        XCTAssertTrue(keeper.renewalDue)
        _ = keeper.renew()
        XCTAssertFalse(keeper.renewalDue)
    }

    // MARK: renewal outcomes

    /// The coordinator does not answer, but the deadline has not come: go on serving.
    func testAFailedRenewalBeforeTheDeadlineKeepsThePrimary() throws {
        let keeper = keeper(ttl: 10)
        _ = try keeper.acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        coordinator.unreachable = true
        clock.set(monotonic: 105)
        let renewal = keeper.renew()
        guard case .unreachable(_, let fenced) = renewal else { return XCTFail("\(renewal)") }
        XCTAssertFalse(fenced)
        XCTAssertNil(renewal.demotionReason(epoch: 1))
        XCTAssertNil(keeper.fenceReason())
        XCTAssertEqual(keeper.deadline, 108, accuracy: 1e-9, "a failed renewal does not move the deadline")
    }

    /// Renewal failure → fenced: past the deadline the primary steps down (and rejoins as a peer).
    func testAFailedRenewalPastTheDeadlineFences() throws {
        let keeper = keeper(ttl: 10)
        _ = try keeper.acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        coordinator.unreachable = true
        clock.set(monotonic: 108)
        let renewal = keeper.renew()
        guard case .unreachable(_, let fenced) = renewal else { return XCTFail("\(renewal)") }
        XCTAssertTrue(fenced)
        XCTAssertEqual(renewal.demotionReason(epoch: 1), "the lease could not be renewed before it ran out")
        XCTAssertNotNil(keeper.fenceReason())
    }

    /// Renewal finds another holder → demote, naming who holds it now.
    func testARenewalThatFindsAnotherHolderDemotes() throws {
        let keeper = keeper(ttl: 10)
        _ = try keeper.acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        var stolen = try XCTUnwrap(coordinator.stored())
        stolen.holder = "h2"
        stolen.epoch = 2
        coordinator.put(stolen)
        let renewal = keeper.renew()
        guard case .lost(let holder) = renewal else { return XCTFail("\(renewal)") }
        XCTAssertEqual(holder?.holder, "h2")
        XCTAssertEqual(renewal.demotionReason(epoch: 1), "lost the lease to h2 at epoch 2 while at epoch 1")
        XCTAssertEqual(coordinator.stored()?.holder, "h2", "a losing renewal writes nothing")
    }

    func testARenewalThatFindsANewerEpochOfItsOwnHostDemotes() throws {
        let keeper = keeper(ttl: 10)
        _ = try keeper.acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        var newer = try XCTUnwrap(coordinator.stored())
        newer.epoch = 5
        coordinator.put(newer)
        guard case .lost = keeper.renew() else { return XCTFail("renewed a lease of another epoch") }
    }

    func testAHandedOverLeaseIsNotRenewed() throws {
        let keeper = keeper(ttl: 10)
        _ = try keeper.acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        try keeper.handOver(to: "h2")
        guard case .lost(let holder) = keeper.renew() else { return XCTFail("renewed a handed-over lease") }
        XCTAssertEqual(holder?.holder, "h2")
    }

    // MARK: history, handover, release

    func testTheEpochStartIsRecordedInTheHistory() throws {
        let keeper = keeper(ttl: 10)
        _ = try keeper.acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        clock.advance(3)
        let stored = try keeper.recordEpochStart(firstSeq: 17)
        XCTAssertEqual(stored.history, [EpochStart(epoch: 1, firstSeq: 17)])
        XCTAssertEqual(stored.expiresAt, clock.wall + 10)
        XCTAssertEqual(coordinator.stored()?.history, stored.history)
    }

    func testRecordingTheEpochStartFailsWhenTheLeaseMoved() throws {
        let keeper = keeper(ttl: 10)
        _ = try keeper.acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        var moved = try XCTUnwrap(coordinator.stored())
        moved.holder = "h3"
        coordinator.put(moved)
        XCTAssertThrowsError(try keeper.recordEpochStart(firstSeq: 1)) { error in
            XCTAssertTrue("\(error)".contains("moved to another host during recovery"), "\(error)")
        }
        XCTAssertEqual(coordinator.stored()?.history, [])
    }

    func testAHandoverNamesTheTargetAndStopsAcknowledging() throws {
        let keeper = keeper(ttl: 10)
        _ = try keeper.acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        try keeper.handOver(to: "h2")
        let stored = try XCTUnwrap(coordinator.stored())
        XCTAssertEqual(stored.holder, "h2")
        XCTAssertEqual(stored.handedOverBy, "h1")
        XCTAssertEqual(stored.epoch, 1)
        XCTAssertNotNil(keeper.fenceReason())
    }

    func testAReleaseEndsTheLeaseNow() throws {
        let keeper = keeper(ttl: 10)
        _ = try keeper.acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        clock.advance(1)
        keeper.release(epoch: 1)
        let stored = try XCTUnwrap(coordinator.stored())
        XCTAssertEqual(stored.expiresAt, clock.wall)
        XCTAssertTrue(stored.isExpired(now: clock.wall))
    }

    func testAReleaseLeavesAnotherHostsLeaseAlone() throws {
        let keeper = keeper(ttl: 10)
        _ = try keeper.acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        var other = try XCTUnwrap(coordinator.stored())
        other.holder = "h2"
        other.epoch = 2
        coordinator.put(other)
        keeper.release(epoch: 1)
        XCTAssertEqual(coordinator.stored(), other)
        keeper.release(epoch: 2)
        XCTAssertEqual(coordinator.stored(), other, "h1 never held epoch 2")
    }
}
