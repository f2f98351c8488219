import Foundation
import LifeboatCore
import XCTest

@testable import LifeboatJournal

final class MutationTests: XCTestCase {
    let t = FileTime(seconds: 1_700_000_000, nanoseconds: 123_456_789)

    func allKinds() -> [Mutation] {
        [
            .create(parent: 1, name: Array("a b".utf8), file: 7, mode: 0o100644, uid: 1, gid: 2, rdev: 0, time: t),
            .mkdir(parent: 1, name: Array("d".utf8), file: 8, mode: 0o2755, uid: 0, gid: 0, time: t),
            .symlink(parent: 8, name: Array("s".utf8), file: 9, target: Array("../a b".utf8), uid: 0, gid: 0, time: t),
            .link(file: 7, parent: 8, name: Array("h".utf8), time: t),
            .unlink(parent: 8, name: Array("h".utf8), file: 7, time: t),
            .rmdir(parent: 1, name: Array("x".utf8), file: 10, time: t),
            .rename(
                parent: 1, name: Array("a b".utf8), newParent: 8, newName: Array("c".utf8), flags: 1, file: 7, time: t),
            .write(file: 7, offset: 1 << 40, data: [1, 2, 3], time: t),
            .setattr(file: 7, change: AttributeChange(mode: 0o600, size: 9, mtime: t), time: t),
            .setattr(file: 7, change: AttributeChange(uid: 5, gid: 6, atime: t), time: t),
            .fallocate(file: 7, mode: 3, offset: 4096, length: 8192, time: t),
            .setxattr(file: 7, name: Array("user.k".utf8), value: [0, 255], flags: 0),
            .removexattr(file: 7, name: Array("user.k".utf8)),
            .assignID(parent: 1, name: Array("old".utf8), file: 11),
        ]
    }

    func testEveryKindRoundTrips() throws {
        let mutations = allKinds()
        XCTAssertEqual(Set(mutations.map(\.kind)).count, Mutation.Kind.allCases.count)
        for (index, mutation) in mutations.enumerated() {
            let record = JournalRecord(
                position: Position(epoch: 1, seq: UInt64(index + 1)), kind: mutation.kind.rawValue,
                payload: mutation.encoded())
            XCTAssertEqual(try Mutation(record: record), mutation)
            XCTAssertFalse(mutation.fields.isEmpty)
        }
    }

    func testMalformedRecordsAreIntegrityErrors() {
        let record = JournalRecord(position: Position(epoch: 1, seq: 5), kind: 99, payload: [])
        XCTAssertThrowsError(try Mutation(record: record)) { error in
            XCTAssertEqual((error as? LifeboatError)?.kind, .integrity)
        }
        var payload = Mutation.write(file: 1, offset: 0, data: [], time: t).encoded()
        payload.removeLast()
        let short = JournalRecord(
            position: Position(epoch: 1, seq: 6), kind: Mutation.Kind.write.rawValue, payload: payload)
        XCTAssertThrowsError(try Mutation(record: short))
    }

    /// Replaying records onto a tree reproduces contents, names, links, modes and mtimes.
    func testReplayBuildsTheTreeTheRecordsDescribe() throws {
        let root = NSTemporaryDirectory() + "lifeboat-replay-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: false)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let replayer = try Replayer(root: root)
        var seq: UInt64 = 0
        func apply(_ mutation: Mutation) throws {
            seq += 1
            try replayer.apply(
                JournalRecord(
                    position: Position(epoch: 1, seq: seq), kind: mutation.kind.rawValue, payload: mutation.encoded()))
        }
        try apply(.mkdir(parent: 1, name: Array("d".utf8), file: 8, mode: 0o750, uid: 0, gid: 0, time: t))
        try apply(.create(parent: 8, name: Array("f".utf8), file: 7, mode: 0o100640, uid: 0, gid: 0, rdev: 0, time: t))
        try apply(.write(file: 7, offset: 3, data: Array("xyz".utf8), time: t))
        try apply(.link(file: 7, parent: 1, name: Array("hard".utf8), time: t))
        try apply(
            .rename(
                parent: 1, name: Array("d".utf8), newParent: 1, newName: Array("e".utf8), flags: 0, file: 8, time: t))
        try apply(.write(file: 7, offset: 0, data: Array("abc".utf8), time: t))
        try apply(.unlink(parent: 1, name: Array("hard".utf8), file: 7, time: t))
        let later = FileTime(seconds: 1_800_000_000, nanoseconds: 5)
        try apply(.setattr(file: 7, change: AttributeChange(mode: 0o600, size: 5), time: later))
        try apply(.symlink(parent: 8, name: Array("s".utf8), file: 9, target: Array("f".utf8), uid: 0, gid: 0, time: t))
        XCTAssertEqual(try String(contentsOfFile: root + "/e/f", encoding: .utf8), "abcxy")
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/hard"))
        let attributes = try FileManager.default.attributesOfItem(atPath: root + "/e/f")
        XCTAssertEqual((attributes[.posixPermissions] as? NSNumber)?.intValue, 0o600)
        var st = stat()
        XCTAssertEqual(stat(root + "/e/f", &st), 0)
        XCTAssertEqual(Int64(st.st_mtim.tv_sec), later.seconds)
        XCTAssertEqual(UInt32(st.st_mtim.tv_nsec), later.nanoseconds)
        XCTAssertEqual(try FileManager.default.destinationOfSymbolicLink(atPath: root + "/e/s"), "f")
        XCTAssertEqual(replayer.applied, 9)
        // A record that does not fit the tree is refused with its position.
        XCTAssertThrowsError(try apply(.unlink(parent: 1, name: Array("missing".utf8), file: 3, time: t))) { error in
            XCTAssertTrue("\(error)".contains("1:10"), "\(error)")
        }
    }
}
