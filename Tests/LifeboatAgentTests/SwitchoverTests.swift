import LifeboatAPI
import LifeboatCluster
import LifeboatCore
import Logging
import XCTest

@testable import LifeboatAgent

final class SwitchoverTests: XCTestCase {
    let clock = ManualClock()
    let coordinator = MemoryCoordinator()
    let log = LogLines()
    var keeper: LeaseKeeper!

    override func setUpWithError() throws {
        keeper = LeaseKeeper(workload: "db", host: "h1", ttl: 10, coordinator: coordinator, clock: clock)
        _ = try keeper.acquire(previous: nil, acceptedEpoch: 0, journalEpoch: 0)
        _ = try keeper.recordEpochStart(firstSeq: 1)
    }

    var switchover: Switchover { Switchover(workload: "db", host: "h1", leases: keeper, logger: log.logger) }

    /// Runs a switchover and records what it did to the service.
    func run(_ target: String?, _ group: FakeGroup, last: UInt64 = 42) throws -> (String, [String]) {
        var steps: [String] = []
        let result = try switchover.run(
            to: target, group: group, lastSeq: { last }, stopServing: { steps.append("stop") },
            resumeServing: { steps.append("resume") })
        return (result.host, steps)
    }

    /// Seen in failover-redis.sh: the switchover stopped redis, supervision started it again
    /// over the unmounted data dir, and the writer's next 2,955 acknowledged SETs went to that
    /// redis, past the capture, and were lost. Supervision restarts only an exited service
    /// whose data dir is served, and never during a switchover.
    func testSupervisionDoesNotRestartAServiceTheSwitchoverStoppedOrOverAnUnservedDir() {
        XCTAssertTrue(WorkloadSupervisor.mayRestartService(running: false, switchingOver: false, mounted: true))
        XCTAssertFalse(WorkloadSupervisor.mayRestartService(running: false, switchingOver: true, mounted: true))
        XCTAssertFalse(WorkloadSupervisor.mayRestartService(running: false, switchingOver: false, mounted: false))
        XCTAssertFalse(WorkloadSupervisor.mayRestartService(running: true, switchingOver: false, mounted: true))
    }

    /// Seen in 50 chaos cycles on the lab: with `snapshot_every: 30s` and a primary lost every
    /// 12 s, no redis snapshot was ever taken (each term started its own 30 s clock), so each
    /// recovery replayed the whole journal and no warm copy could warm up. A term's schedule
    /// starts from the newest snapshot in the repository instead.
    func testAPrimaryTermsScheduleStartsFromTheNewestSnapshot() {
        XCTAssertEqual(WorkloadSupervisor.scheduleStart(now: 500, newestAge: 100, every: 30), 470, "overdue: now")
        XCTAssertEqual(WorkloadSupervisor.scheduleStart(now: 500, newestAge: 10, every: 30), 490, "due in 20 s")
        XCTAssertEqual(WorkloadSupervisor.scheduleStart(now: 500, newestAge: nil, every: 30), 470, "none yet: now")
        XCTAssertEqual(
            WorkloadSupervisor.scheduleStart(now: 500, newestAge: -5, every: 30), 500, "a clock ahead: a full interval")
    }

    func testAPrimaryPastItsFencingDeadlineShowsAsFencedBeforeItsDemotion() {
        XCTAssertEqual(WorkloadSupervisor.reportedRole(.primary, fenceReason: nil), .primary)
        XCTAssertEqual(WorkloadSupervisor.reportedRole(.primary, fenceReason: "the lease ran out"), .fenced)
        XCTAssertEqual(WorkloadSupervisor.reportedRole(.peer, fenceReason: "disarmed"), .peer)
    }

    func testASwitchoverToANamedPeerHandsTheLeaseOver() throws {
        let group = FakeGroup([
            GroupPeer(host: "h2", connected: true, acked: position(1, 42)),
            GroupPeer(host: "h3", connected: true, acked: position(1, 42)),
        ])
        let (chosen, steps) = try run("h3", group)
        XCTAssertEqual(chosen, "h3")
        XCTAssertEqual(steps, ["stop"])
        let lease = try XCTUnwrap(coordinator.stored())
        XCTAssertEqual(lease.holder, "h3")
        XCTAssertEqual(lease.handedOverBy, "h1")
        XCTAssertEqual(lease.epoch, 1, "the target takes the next epoch itself")
        XCTAssertNotNil(keeper.fenceReason(), "the old primary acknowledges nothing after the handover")
        XCTAssertTrue(group.isStopped)
    }

    func testASwitchoverWithoutATargetPicksTheMostAdvancedConnectedPeer() throws {
        let group = FakeGroup([
            GroupPeer(host: "h2", connected: true, acked: position(1, 30)),
            GroupPeer(host: "h3", connected: true, acked: position(1, 42)),
            GroupPeer(host: "h4", connected: false, acked: position(1, 99)),
        ])
        XCTAssertEqual(try run(nil, group).0, "h3")
        XCTAssertEqual(coordinator.stored()?.holder, "h3")
    }

    func testAnUnknownTargetIsRefusedBeforeAnythingStops() throws {
        let group = FakeGroup([GroupPeer(host: "h2", connected: true, acked: position(1, 42))])
        XCTAssertThrowsError(try run("h9", group)) { error in
            XCTAssertEqual((error as? LifeboatError)?.kind, .badInput)
        }
        XCTAssertEqual(coordinator.stored()?.holder, "h1")
        XCTAssertNil(keeper.fenceReason())
    }

    func testADisconnectedTargetIsRefused() throws {
        let group = FakeGroup([GroupPeer(host: "h2", connected: false, acked: position(1, 42))])
        XCTAssertThrowsError(try run("h2", group)) { error in
            XCTAssertEqual((error as? LifeboatError)?.kind, .operationFailed)
            XCTAssertTrue("\(error)".contains("not connected"), "\(error)")
        }
        XCTAssertThrowsError(try run(nil, group), "no connected peer at all")
        XCTAssertEqual(coordinator.stored()?.holder, "h1")
    }

    /// The target dies before it holds every record: the service is started again here, the
    /// lease stays with this host, and this host still acknowledges.
    func testASwitchoverWhoseTargetDiesChangesNothing() throws {
        let group = FakeGroup([GroupPeer(host: "h2", connected: true, acked: position(1, 40))])
        let before = coordinator.stored()
        var steps: [String] = []
        XCTAssertThrowsError(
            try switchover.run(
                to: "h2", group: group, lastSeq: { 42 },
                stopServing: {
                    steps.append("stop")
                    group.set([GroupPeer(host: "h2", connected: false, acked: position(1, 40))])
                }, resumeServing: { steps.append("resume") })
        ) { error in
            XCTAssertTrue("\(error)".contains("nothing changed"), "\(error)")
        }
        XCTAssertEqual(steps, ["stop", "resume"])
        XCTAssertEqual(coordinator.stored(), before)
        XCTAssertNil(keeper.fenceReason())
        XCTAssertFalse(group.isStopped)
        XCTAssertTrue(log.all.contains { $0.contains("the service stays here") })
    }

    /// The target reads the handed-over lease, takes it with the next epoch (no expiry wait),
    /// keeps the history, and the old primary can no longer renew.
    func testTheHandedOverLeaseIsTakenByTheTarget() throws {
        let group = FakeGroup([GroupPeer(host: "h2", connected: true, acked: position(1, 42))])
        _ = try run("h2", group)
        let h2 = TestHost("h2", peers: ["h1"], coordinator: coordinator, clock: clock)
        let lease = try XCTUnwrap(try h2.keeper.read())
        XCTAssertFalse(lease.isExpired(now: clock.wall))
        XCTAssertEqual(
            h2.candidacy.decide(lease: lease, local: LocalHolding(durable: position(1, 42), backing: .captured)),
            .switchover(lease))
        let taken = try XCTUnwrap(try h2.keeper.acquire(previous: lease, acceptedEpoch: 1, journalEpoch: 1))
        XCTAssertEqual(taken.epoch, 2)
        XCTAssertEqual(taken.holder, "h2")
        XCTAssertNil(taken.handedOverBy)
        XCTAssertEqual(taken.history, [EpochStart(epoch: 1, firstSeq: 1)])
        guard case .lost = keeper.renew() else { return XCTFail("the old primary renewed") }
    }
}

final class TakeoverTests: XCTestCase {
    let clock = ManualClock()
    let coordinator = MemoryCoordinator()
    let log = LogLines()

    func takeover(_ host: String = "h1") -> (Takeover, LeaseKeeper, FailoverCandidacy) {
        let h = TestHost(host, peers: [], coordinator: coordinator, clock: clock)
        return (
            Takeover(leases: h.keeper, candidacy: h.candidacy, clock: clock, logger: log.logger), h.keeper, h.candidacy
        )
    }

    struct Broken: Error {}

    /// A recovery that fails releases the lease at once (another host need not wait for it
    /// to run out) and this host backs off.
    func testAFailedRecoveryReleasesTheLease() throws {
        let (takeover, _, candidacy) = takeover()
        clock.advance(1)
        let outcome = takeover.run(
            previous: nil, kind: .bootstrap, acceptedEpoch: 0, journalEpoch: 0, taken: { _ in },
            recover: { _, _ in
                self.clock.advance(2)
                throw Broken()
            })
        guard case .failed(let epoch, _) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertEqual(epoch, 1)
        let lease = try XCTUnwrap(coordinator.stored())
        XCTAssertEqual(lease.holder, "h1")
        XCTAssertEqual(lease.expiresAt, clock.wall, "released: it ends now, not a TTL later")
        XCTAssertTrue(log.all.contains { $0.contains("releasing the lease (this host waits 20.000 s") })
        guard case .wait = candidacy.decide(lease: lease, local: LocalHolding(durable: nil, backing: .captured)) else {
            return XCTFail("the host that failed took the lease again at once")
        }
        let other = TestHost("h2", peers: [], coordinator: coordinator, clock: clock)
        XCTAssertEqual(
            other.candidacy.decide(lease: lease, local: LocalHolding(durable: nil, backing: .captured)),
            .failover(lease))
    }

    func testASuccessfulTakeoverReportsDetectionAndLease() throws {
        coordinator.put(
            Lease(workload: "db", holder: "h2", epoch: 4, expiresAt: clock.wall - 3, version: 9, history: []))
        let previous = coordinator.stored()
        let (takeover, keeper, _) = takeover()
        var told: Lease?
        let outcome = takeover.run(
            previous: previous, kind: .failover, acceptedEpoch: 4, journalEpoch: 4, taken: { told = $0 },
            recover: { lease, report in
                XCTAssertEqual(lease.epoch, 5)
                report.position = "5:1"
            })
        guard case .recovered(let report) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertEqual(report.epoch, 5)
        XCTAssertEqual(report.kind, .failover)
        XCTAssertEqual(report.detectionSeconds, 3, accuracy: 1e-6)
        XCTAssertEqual(report.position, "5:1")
        XCTAssertEqual(told?.epoch, 5)
        XCTAssertNil(keeper.fenceReason())
    }

    func testABootstrapReportsNoDetection() {
        let (takeover, _, _) = takeover()
        let outcome = takeover.run(
            previous: nil, kind: .bootstrap, acceptedEpoch: 0, journalEpoch: 0, taken: { _ in }, recover: { _, _ in })
        guard case .recovered(let report) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertEqual(report.detectionSeconds, 0)
        XCTAssertEqual(report.kind, .bootstrap)
    }

    /// Another host was faster: nothing is recovered, nothing released.
    func testALostTakeRecoversNothing() throws {
        let (first, _, _) = takeover("h2")
        _ = first.run(
            previous: nil, kind: .bootstrap, acceptedEpoch: 0, journalEpoch: 0, taken: { _ in }, recover: { _, _ in })
        let stored = coordinator.stored()
        let (second, keeper, _) = takeover("h1")
        var recovered = false
        let outcome = second.run(
            previous: nil, kind: .bootstrap, acceptedEpoch: 0, journalEpoch: 0, taken: { _ in },
            recover: { _, _ in recovered = true })
        guard case .notTaken = outcome else { return XCTFail("\(outcome)") }
        XCTAssertFalse(recovered)
        XCTAssertEqual(coordinator.stored(), stored)
        XCTAssertNotNil(keeper.fenceReason())
    }

    func testAnUnreachableCoordinatorTakesNothing() {
        coordinator.unreachable = true
        let (takeover, _, _) = takeover()
        guard
            case .notTaken = takeover.run(
                previous: nil, kind: .bootstrap, acceptedEpoch: 0, journalEpoch: 0, taken: { _ in },
                recover: { _, _ in XCTFail("recovered without a lease") })
        else { return XCTFail() }
        XCTAssertTrue(log.all.contains { $0.contains("cannot write the lease") })
    }
}

final class RoleNamesTests: XCTestCase {
    /// Scripts and `lifeboat status` read these strings: they never change.
    func testRolesAndRecoveryKindsKeepTheirJSONStrings() throws {
        XCTAssertEqual(
            WorkloadRole.allCases.map(\.rawValue), ["standalone", "peer", "recovering", "primary", "fenced", "stopped"])
        let report = RecoveryReport(epoch: 3, kind: .switchover, startedAt: 1)
        let json = String(decoding: try JSONEncoder().encode(report), as: UTF8.self)
        XCTAssertTrue(json.contains("\"kind\":\"switchover\""), json)
        XCTAssertEqual(
            [RecoveryKind.bootstrap, .failover, .switchover].map(\.rawValue), ["bootstrap", "failover", "switchover"])
    }
}
