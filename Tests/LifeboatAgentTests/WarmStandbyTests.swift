import Foundation
import Glibc
import LifeboatAPI
import LifeboatCapture
import LifeboatCluster
import LifeboatCore
import LifeboatJournal
import LifeboatRepository
import Logging
import XCTest

@testable import LifeboatAgent

/// A peer's warm copy (`standby: warm`): a primary writes through a real FUSE mount and takes a
/// snapshot into a real repository; its journal's frames are streamed into the peer's journal
/// as the peer protocol does; the peer's rounds must leave its backing dir byte for byte equal
/// to the primary's, and a recovery may start from it only while it is on the lease's history.
/// Needs root and /dev/fuse.
final class WarmStandbyTests: XCTestCase {
    var root = ""
    var primary: WorkloadRuntime?
    var peerWriter: JournalWriter!
    var tail: JournalTail!
    var standby: WarmStandby!
    var peerConfiguration: WorkloadConfiguration!
    let clock = ManualClock()
    let history = [EpochStart(epoch: 1, firstSeq: 1)]

    override func setUpWithError() throws {
        try XCTSkipUnless(getuid() == 0 && access("/dev/fuse", R_OK | W_OK) == 0, "needs root and /dev/fuse")
        root = NSTemporaryDirectory() + "lifeboat-warm-" + UUID().uuidString
        for sub in ["data", "backing", "journal", "peer-backing", "peer-journal", "peer-data"] {
            try FileManager.default.createDirectory(atPath: root + "/" + sub, withIntermediateDirectories: true)
        }
        _ = try Repository.initialize(at: root + "/repo")
        let configuration = WorkloadConfiguration(
            name: "db", capture: .fuse, dataDir: root + "/data", backingDir: root + "/backing",
            journalDir: root + "/journal")
        let runtime = try WorkloadRuntime(
            configuration, repository: root + "/repo", host: "h1", metrics: .discarded, logger: .quiet)
        try runtime.start()
        primary = runtime
        peerConfiguration = WorkloadConfiguration(
            name: "db", capture: .fuse, dataDir: root + "/peer-data", backingDir: root + "/peer-backing",
            journalDir: root + "/peer-journal", standby: .warm)
        peerWriter = try JournalWriter(directory: root + "/peer-journal")
        tail = JournalTail(directory: root + "/journal", from: 1)
        standby = WarmStandby(
            configuration: peerConfiguration, repositoryPath: root + "/repo", writer: peerWriter,
            clock: clock, logger: .quiet)
    }

    override func tearDownWithError() throws {
        primary?.stop()
        if !root.isEmpty {
            umount2(root + "/data", Int32(MNT_DETACH))
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    /// Writes `text` to `name` in the primary's data dir and fsyncs it (journaled, acknowledged).
    func write(_ name: String, _ text: String) throws {
        let fd = open(root + "/data/" + name, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0, "open \(name): \(String(cString: strerror(errno)))")
        defer { close(fd) }
        let bytes = Array(text.utf8)
        XCTAssertEqual(bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }, bytes.count)
        XCTAssertEqual(fsync(fd), 0)
    }

    /// The peer protocol's part: every durable frame of the primary's journal into the peer's.
    func stream() throws {
        _ = try primary?.journal.writer.sync()
        while let batch = try tail.next() {
            try batch.frames.withUnsafeBytes { _ = try peerWriter.appendFrames($0) }
        }
        _ = try peerWriter.sync()
    }

    func snapshot() throws -> SnapshotReport {
        let runtime = try XCTUnwrap(primary)
        return try WorkloadSnapshots(runtime: runtime, repositoryPath: root + "/repo", host: "h1").snapshotNow()
    }

    /// Every file under `dir` with its bytes (names relative to `dir`).
    func tree(_ dir: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        let enumerator = try XCTUnwrap(FileManager.default.enumerator(atPath: dir))
        for case let name as String in enumerator {
            var isDir: ObjCBool = false
            FileManager.default.fileExists(atPath: dir + "/" + name, isDirectory: &isDir)
            files[name] =
                isDir.boolValue ? Data("<dir>".utf8) : try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))
        }
        return files
    }

    func assertPeerEqualsPrimary(_ message: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let expected = try tree(root + "/backing")
        let got = try tree(root + "/peer-backing")
        XCTAssertEqual(got.keys.sorted(), expected.keys.sorted(), message, file: file, line: line)
        XCTAssertEqual(got, expected, message, file: file, line: line)
    }

    func testTheCopyFollowsTheStreamAndIsTheRecoveryBase() throws {
        try write("a", String(repeating: "a", count: 100_000))
        try write("b", "bee")
        try FileManager.default.createDirectory(atPath: root + "/data/dir", withIntermediateDirectories: false)
        try write("dir/c", "sea")
        let snapshot = try snapshot()
        try write("a", "rewritten after the snapshot")
        XCTAssertEqual(unlink(root + "/data/b"), 0)
        try write("dir/d", "new after the snapshot")
        try stream()

        standby.round(history: history)
        let end = try XCTUnwrap(peerWriter.durablePosition)
        XCTAssertEqual(standby.position, end, "the copy holds the journal through its durable end")
        XCTAssertEqual(standby.status.state, "warm")
        XCTAssertEqual(standby.status.snapshot, snapshot.snapshot)
        try assertPeerEqualsPrimary("snapshot plus the records after it")
        XCTAssertEqual(try BackingDir.state(of: peerConfiguration), .captured, "the copy is covered, not seed data")

        try write("dir/c", "changed again")
        XCTAssertEqual(rename(root + "/data/dir/d", root + "/data/e"), 0)
        try stream()
        standby.round(history: history)
        XCTAssertEqual(standby.position, peerWriter.durablePosition)
        XCTAssertEqual(standby.status.warmUps, 1, "later rounds apply records; the snapshot is restored once")
        try assertPeerEqualsPrimary("the records of a later round")

        let base = standby.takeOver(history: history)
        XCTAssertEqual(base, peerWriter.durablePosition, "a recovery starts from the copy")
        XCTAssertEqual(standby.status.state, "off")
        try write("late", "after the takeover")
        try stream()
        standby.round(history: history)
        XCTAssertNil(standby.position, "no rounds while the recovery owns the backing dir")
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/peer-backing/late"))

        standby.resume()
        XCTAssertEqual(standby.status.state, "cold", "a host that is a peer again warms its copy anew")
        standby.round(history: history)
        XCTAssertEqual(standby.status.warmUps, 2)
        try assertPeerEqualsPrimary("warmed again after the resume")
    }

    /// A copy whose position a new epoch's history cut off holds records the workload no
    /// longer has: it is no base, and the next round warms it again.
    func testACopyOffTheHistoryIsNoBase() throws {
        try write("a", "one")
        _ = try snapshot()
        try write("a", "two")
        try write("b", "three")
        try stream()
        standby.round(history: history)
        let warm = try XCTUnwrap(standby.position)
        let cut = history + [EpochStart(epoch: 2, firstSeq: warm.seq)]
        XCTAssertNil(standby.takeOver(history: cut), "epoch 2 began before the copy's last record")
    }

    /// A journal started over (it rejoined a new primary, which may write other records at
    /// the same seqs) leaves the copy cold: no takeover starts from it, even under a lease
    /// history read before the rejoin, and the next round warms it again.
    func testAJournalStartedOverMakesTheCopyCold() throws {
        try write("a", "one")
        _ = try snapshot()
        try write("a", "two")
        try stream()
        standby.round(history: history)
        let warm = try XCTUnwrap(standby.position)
        // the peer's journal starts over after its end (what a rejoin that was behind does)
        try peerWriter.reset(after: Position(epoch: 0, seq: warm.seq))
        standby.round(history: history)
        XCTAssertNil(standby.position, "the copy from before the reset is cold")
        XCTAssertTrue(standby.status.problem?.contains("started over") ?? false, standby.status.problem ?? "-")
        standby.round(history: history)
        XCTAssertNil(standby.position, "the records after the snapshot are gone from this journal")
        XCTAssertTrue(
            standby.status.problem?.contains("after the newest snapshot") ?? false, standby.status.problem ?? "-")
        // a newer snapshot, and the stream goes on: the copy warms from it
        try write("b", "after the reset")
        let newer = try snapshot()
        try write("c", "after the newer snapshot")
        try stream()
        standby.round(history: history)
        XCTAssertNil(standby.position, "a warm-up that could not start is tried again only after warmUpRetry")
        clock.advance(WarmStandby.warmUpRetry)
        standby.round(history: history)
        XCTAssertEqual(standby.position, peerWriter.durablePosition)
        XCTAssertEqual(standby.status.snapshot, newer.snapshot)
        try assertPeerEqualsPrimary("warmed from the newer snapshot")
        try peerWriter.reset(after: try XCTUnwrap(peerWriter.durablePosition))
        XCTAssertNil(standby.takeOver(history: history), "a copy from before a reset is no base")
    }

    func testSeedDataIsNeverTouched() throws {
        try write("a", "one")
        _ = try snapshot()
        try stream()
        try Data("the only copy".utf8).write(to: URL(fileURLWithPath: root + "/peer-backing/PG_VERSION"))
        standby.round(history: history)
        XCTAssertEqual(standby.status.state, "cold")
        XCTAssertTrue(standby.status.problem?.contains("seed data") ?? false, standby.status.problem ?? "no problem")
        XCTAssertEqual(
            try String(contentsOfFile: root + "/peer-backing/PG_VERSION", encoding: .utf8), "the only copy")
        XCTAssertNil(standby.takeOver(history: history))
    }

    func testWithoutASnapshotTheCopyStaysCold() throws {
        try write("a", "one")
        try stream()
        standby.round(history: history)
        XCTAssertNil(standby.position)
        XCTAssertTrue(standby.status.problem?.contains("no snapshot") ?? false, standby.status.problem ?? "no problem")
        standby.round(history: nil)
        XCTAssertNil(standby.position, "no lease yet: nothing to copy")
    }
}
