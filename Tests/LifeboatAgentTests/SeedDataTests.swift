import Foundation
import LifeboatAPI
import LifeboatCore
import LifeboatJournal
import LifeboatRepository
import Logging
import XCTest

@testable import LifeboatAgent
@testable import LifeboatCluster

/// The first lease goes to the host that holds the data; recovery never deletes files that no
/// snapshot and no journal covers; a failed listing is never read as an empty dir.
final class SeedBootstrapTests: XCTestCase {
    let clock = ManualClock()
    let peers = FakePeers()

    func candidacy(_ host: String = "h2", ttl: Double = 10) -> FailoverCandidacy {
        FailoverCandidacy(
            workload: "db", host: host, ttl: ttl, peers: ["h1", "h3"].map(peer), directory: peers, clock: clock)
    }

    let empty = LocalHolding(durable: nil, backing: .empty)

    func testAnEmptyHostDefersTheFirstLeaseToAPeerWithSeedData() {
        peers.set("h1", PeerInfo(durable: nil, epoch: 0, role: "peer", seeded: true))
        peers.set("h3", PeerInfo(durable: nil, epoch: 0, role: "peer"))
        guard case .wait(let reason) = candidacy().decide(lease: nil, local: empty) else {
            return XCTFail("an empty host took the first lease over the seeded one")
        }
        XCTAssertTrue(reason.contains("h1 holds seed data"), reason)
    }

    /// A peer that does not answer yet (its agent is starting) may hold the seed: wait for it.
    func testAnEmptyHostWaitsForAPeerThatDoesNotAnswerYet() {
        peers.set("h1", nil)
        peers.set("h3", PeerInfo(durable: nil, epoch: 0, role: "peer"))
        guard case .wait(let reason) = candidacy().decide(lease: nil, local: empty) else { return XCTFail() }
        XCTAssertTrue(reason.contains("h1"), reason)
    }

    /// The wait is bounded: after one TTL the empty host bootstraps (the seeded host is dead).
    func testTheBootstrapWaitLastsAtMostOneTTL() {
        peers.set("h1", PeerInfo(durable: nil, epoch: 0, role: "peer", seeded: true))
        let candidacy = candidacy(ttl: 10)
        guard case .wait = candidacy.decide(lease: nil, local: empty) else { return XCTFail() }
        clock.advance(10)
        guard case .wait = candidacy.decide(lease: nil, local: empty) else { return XCTFail("gave up early") }
        clock.advance(0.25)
        XCTAssertEqual(candidacy.decide(lease: nil, local: empty), .bootstrap)
    }

    func testEmptyHostsBootstrapAtOnceWhenEveryPeerAnsweredWithoutSeedData() {
        peers.set("h1", PeerInfo(durable: nil, epoch: 0, role: "peer"))
        peers.set("h3", PeerInfo(durable: nil, epoch: 0, role: "peer"))
        XCTAssertEqual(candidacy().decide(lease: nil, local: empty), .bootstrap)
    }

    func testASeededHostBootstrapsWithoutAskingAnyone() {
        peers.set("h1", PeerInfo(durable: nil, epoch: 0, role: "peer", seeded: true))
        XCTAssertEqual(candidacy().decide(lease: nil, local: LocalHolding(durable: nil, backing: .seeded)), .bootstrap)
        XCTAssertEqual(peers.queryCount, 0)
    }

    func testAHostWithAJournalOrACapturedDirDoesNotDefer() {
        peers.set("h1", PeerInfo(durable: nil, epoch: 0, role: "peer", seeded: true))
        XCTAssertEqual(
            candidacy().decide(lease: nil, local: LocalHolding(durable: nil, backing: .captured)), .bootstrap)
        XCTAssertEqual(
            candidacy().decide(lease: nil, local: LocalHolding(durable: position(1, 3), backing: .empty)), .bootstrap)
    }

    /// The flag travels as one trailing byte of `position`: an older agent's message (without
    /// it) reads as "no seed data", and the rest of the message is unchanged.
    func testTheSeedFlagIsOneTrailingByteOfPosition() throws {
        let old = PeerMessage.position(durable: position(1, 5), epoch: 2, role: "peer").encoded()
        let seeded = PeerMessage.position(durable: position(1, 5), epoch: 2, role: "peer", seeded: true).encoded()
        XCTAssertEqual(Array(seeded.dropLast()), Array(old.dropLast()))
        XCTAssertEqual(seeded.last, 1)
        XCTAssertEqual(
            try PeerMessage.decode(seeded), .position(durable: position(1, 5), epoch: 2, role: "peer", seeded: true))
        XCTAssertEqual(
            try PeerMessage.decode(Array(old.dropLast())),
            .position(durable: position(1, 5), epoch: 2, role: "peer", seeded: false))
    }
}

final class BackingDirTests: XCTestCase {
    var root = ""
    var workload: WorkloadConfiguration!

    override func setUpWithError() throws {
        root = NSTemporaryDirectory() + "lifeboat-backing-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        for dir in ["backing", "journal"] {
            try FileManager.default.createDirectory(atPath: root + "/" + dir, withIntermediateDirectories: true)
        }
        workload = WorkloadConfiguration(
            name: "db", capture: .fuse, dataDir: root + "/data", backingDir: root + "/backing",
            journalDir: root + "/journal")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: root)
    }

    func write(_ path: String, _ text: String = "seed") throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: root + "/" + path))
    }

    func testAnEmptyDirWithoutMarkerIsEmpty() throws {
        XCTAssertEqual(try BackingDir.state(of: workload), .empty)
    }

    func testFilesWithoutTheMarkerAreSeedData() throws {
        try write("backing/PG_VERSION")
        XCTAssertEqual(try BackingDir.state(of: workload), .seeded)
    }

    func testTheMarkerMakesTheFilesCaptured() throws {
        try write("backing/PG_VERSION")
        try BackingDir.markCaptured(workload)
        XCTAssertEqual(try BackingDir.state(of: workload), .captured)
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/journal/" + BackingDir.markerName))
    }

    func testABackingDirThatCannotBeListedIsNeverEmpty() throws {
        workload.backingDir = root + "/missing"
        XCTAssertThrowsError(try BackingDir.state(of: workload))
    }

    /// Before the fix, `clearDirectory` read a failed listing as an empty dir and went on as if
    /// it had emptied it.
    func testClearingADirThatCannotBeListedThrows() throws {
        try write("file")
        XCTAssertThrowsError(try BackingDir.clear(root + "/file")) { error in
            XCTAssertTrue("\(error)".contains("cannot list"), "\(error)")
        }
        XCTAssertThrowsError(try BackingDir.clear(root + "/missing"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/file"))
    }

    func testClearingEmptiesTheDirButKeepsIt() throws {
        try write("backing/a")
        try FileManager.default.createDirectory(atPath: root + "/backing/d/e", withIntermediateDirectories: true)
        try BackingDir.clear(root + "/backing")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root + "/backing"), [])
    }

    /// Seed data in the way of a restore is moved aside next to the backing dir, never deleted.
    func testARecoveryMovesSeedDataAsideInsteadOfDeletingIt() throws {
        try write("backing/PG_VERSION", "16")
        chmod(root + "/backing", 0o700)
        let log = LogLines()
        let pipeline = try makePipeline(log: log)
        try pipeline.prepareBackingDir(try BackingDir.state(of: workload))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root + "/backing"), [])
        let attributes = try FileManager.default.attributesOfItem(atPath: root + "/backing")
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o700)
        let aside = try FileManager.default.contentsOfDirectory(atPath: root).filter { $0.hasPrefix("backing.seed-") }
        XCTAssertEqual(aside.count, 1)
        XCTAssertEqual(try String(contentsOfFile: root + "/" + aside[0] + "/PG_VERSION", encoding: .utf8), "16")
        let warning = try XCTUnwrap(log.at(.warning).first { $0.contains("seed data") })
        XCTAssertTrue(warning.contains(root + "/" + aside[0]), warning)
    }

    func testARecoveryEmptiesACapturedDir() throws {
        try write("backing/old")
        try BackingDir.markCaptured(workload)
        let pipeline = try makePipeline(log: LogLines())
        try pipeline.prepareBackingDir(try BackingDir.state(of: workload))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root + "/backing"), [])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root).filter { $0.contains(".seed-") }, [])
    }

    /// An old primary's snapshot past where the next epoch began (epoch 1 at seq 20, when
    /// epoch 2 began at seq 15) holds records the workload does not have: the recovery
    /// restores the newest snapshot on the history instead, however much newer the other is.
    func testTheRecoveryPassesOverASnapshotOffTheLeasesHistory() throws {
        let repository = try Repository.initialize(at: root + "/repo")
        let source = root + "/source"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        try Data("on the history".utf8).write(to: URL(fileURLWithPath: source + "/f"))
        _ = try repository.backup(
            source: source, options: BackupOptions(host: "h1", workload: "db", position: position(1, 10), epoch: 1))
        try Data("diverged".utf8).write(to: URL(fileURLWithPath: source + "/f"))
        _ = try repository.backup(
            source: source, options: BackupOptions(host: "h1", workload: "db", position: position(1, 20), epoch: 1))
        let pipeline = try makePipeline(log: LogLines())
        var report = RecoveryReport(epoch: 2, kind: .failover, startedAt: 0)
        let history = [EpochStart(epoch: 1, firstSeq: 1), EpochStart(epoch: 2, firstSeq: 15)]
        let loaded = try pipeline.loadSnapshot(backing: .empty, history: history, report: &report)
        XCTAssertEqual(loaded, position(1, 10))
        XCTAssertEqual(try String(contentsOfFile: root + "/backing/f", encoding: .utf8), "on the history")
        try BackingDir.markCaptured(workload)
        XCTAssertEqual(
            try pipeline.loadSnapshot(
                backing: .captured, history: [EpochStart(epoch: 1, firstSeq: 1)], report: &report),
            position(1, 20), "with epoch 1 still current the newest one is on the history")
    }

    /// Seen in 50 restart-all cycles on the lab (sync replication): the new primary's journal
    /// held the newest records (acknowledged, as only it had them among the peers) but began
    /// after the newest snapshot's position (it had been started over when it rejoined). The
    /// recovery set it aside and took the delta from a peer that had less: 24 acknowledged
    /// writes lost. It must fill the gap from the peer and put its own later records back.
    func testOwnRecordsThatDoNotReachBackToTheSnapshotArePutBackAfterThePeersDelta() throws {
        let (own, pipeline) = try journalsApart(peerThrough: 30)
        var report = RecoveryReport(epoch: 2, kind: .failover, startedAt: 0)
        try pipeline.fetchDelta(
            history: [EpochStart(epoch: 1, firstSeq: 1)], after: position(1, 10), report: &report)
        XCTAssertEqual(own.durablePosition, position(1, 40), "records 31-40 were only this host's: kept")
        XCTAssertEqual(own.firstSeq, 11)
        var seqs: [UInt64] = []
        try JournalReader.read(directory: workload.journalDir) { record in
            XCTAssertEqual(Array(record.payload), Self.payload(record.position.seq), "record \(record.position.seq)")
            seqs.append(record.position.seq)
            return true
        }
        XCTAssertEqual(seqs, Array(11...40), "the snapshot's successors, without a gap")
        XCTAssertEqual(report.deltaRecords, 20, "11-30 from the peer")
        XCTAssertEqual(report.localRecords, 10, "31-40 put back")
    }

    /// Seen in pause-primary x 50 on the lab: both peers' journals began after the newest
    /// snapshot (started over on rejoins), the holder of the records in between was paused,
    /// and the recovery served without them: 15,075 acknowledged writes lost. A gap that no
    /// peer can fill fails the recovery instead (the lease is released and tried again).
    func testARecoveryThatCannotJoinItsOwnRecordsToTheSnapshotFails() throws {
        let (_, pipeline) = try journalsApart(peerThrough: 15)
        var report = RecoveryReport(epoch: 2, kind: .failover, startedAt: 0)
        XCTAssertThrowsError(
            try pipeline.fetchDelta(
                history: [EpochStart(epoch: 1, firstSeq: 1)], after: position(1, 10), report: &report)
        ) { error in
            XCTAssertTrue("\(error)".contains("records through 1:40"), "\(error)")
            XCTAssertTrue("\(error)".contains("not serving without them"), "\(error)")
        }
        let aside = try FileManager.default.contentsOfDirectory(atPath: root).filter {
            $0.contains("journal.diverged-")
        }
        XCTAssertEqual(aside.count, 1, "this host's records are kept aside, not deleted")
    }

    static func payload(_ seq: UInt64) -> [UInt8] { Array("record \(seq)".utf8) }

    /// A peer h2 whose journal holds seqs 1 through `peerThrough`, and this host's journal that
    /// was started over after seq 20 and holds 21-40 (all of epoch 1, the same records where
    /// they overlap). Returns this host's journal and its pipeline.
    func journalsApart(peerThrough: UInt64) throws -> (JournalWriter, RecoveryPipeline) {
        let peerDir = root + "/peer-journal"
        let peerJournal = try JournalWriter(directory: peerDir)
        for seq in 1...peerThrough { try peerJournal.append(epoch: 1, kind: 1, payload: Self.payload(seq)) }
        try peerJournal.sync()
        let own = try JournalWriter(directory: workload.journalDir)
        try own.reset(after: Position(epoch: 0, seq: 20))
        for seq in UInt64(21)...40 { try own.append(epoch: 1, kind: 1, payload: Self.payload(seq)) }
        try own.sync()
        let peers = FakePeers()
        peers.set("h2", PeerInfo(durable: position(1, peerThrough), epoch: 1, role: "peer"))
        peers.serve("h2", journal: peerDir)
        return (own, try makePipeline(log: LogLines(), writer: own, peers: peers, peerHosts: ["h2"]))
    }

    func makePipeline(
        log: LogLines, writer given: JournalWriter? = nil, peers: FakePeers = FakePeers(), peerHosts: [String] = []
    ) throws -> RecoveryPipeline {
        let clock = ManualClock()
        let writer = try given ?? JournalWriter(directory: workload.journalDir)
        let leases = LeaseKeeper(workload: "db", host: "h1", ttl: 10, coordinator: MemoryCoordinator(), clock: clock)
        let candidacy = FailoverCandidacy(
            workload: "db", host: "h1", ttl: 10, peers: peerHosts.map(peer), directory: peers, clock: clock)
        return RecoveryPipeline(
            configuration: workload, repositoryPath: root + "/repo", host: "h1", writer: writer,
            replica: try ReplicaJournal(workload: "db", writer: writer, logger: log.logger), leases: leases,
            candidacy: candidacy, directory: peers,
            policy: ReplicationPolicy(workload: "db", settings: workload.replication, logger: log.logger),
            peers: peerHosts.map(peer), clock: clock, logger: log.logger)
    }
}
