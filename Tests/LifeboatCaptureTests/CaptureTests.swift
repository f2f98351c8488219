import CLifeboatPosix
import Foundation
import Glibc
import LifeboatCore
import LifeboatJournal
import XCTest

@testable import LifeboatCapture

final class RangeSetTests: XCTestCase {
    func testRangesMergeWhenTheyTouchOrOverlap() {
        var set = RangeSet()
        set.insert(10..<20)
        set.insert(30..<40)
        set.insert(20..<25)
        set.insert(35..<50)
        set.insert(0..<1)
        XCTAssertEqual(set.ranges, [0..<1, 10..<25, 30..<50])
        set.insert(5..<UInt64.max)
        XCTAssertEqual(set.ranges, [0..<1, 5..<UInt64.max])
        XCTAssertEqual(set.boundedLength, 1)
    }

    func testLaterOverlaysWinWhereTheyOverlap() {
        var pieces: [(offset: UInt64, bytes: [UInt8])] = []
        pieces = Cut.overlay(pieces, with: (0, [1, 1, 1, 1, 1, 1]))
        pieces = Cut.overlay(pieces, with: (2, [2, 2]))
        pieces = Cut.overlay(pieces, with: (5, [3, 3, 3]))
        let flat = pieces.flatMap { piece in
            piece.bytes.enumerated().map { (piece.offset + UInt64($0.offset), $0.element) }
        }
        XCTAssertEqual(flat.map(\.0), [0, 1, 2, 3, 4, 5, 6, 7])
        XCTAssertEqual(flat.map(\.1), [1, 1, 2, 2, 1, 3, 3, 3])
    }
}

/// A real FUSE mount in the test process (needs root and /dev/fuse, as the CI has).
final class CaptureMountTests: MountTestCase {

    func testChangesAreJournaledDurableOnFsyncAndNamedByTheDirtyMap() throws {
        let writer = try JournalWriter(directory: root + "/journal")
        let journal = CaptureJournal(writer: writer, epoch: 1)
        let mount = try CaptureMount(dataDir: root + "/data", backingDir: root + "/backing", journal: journal)
        try mount.start(threads: 4)
        defer { mount.stop() }
        XCTAssertTrue(MountTable.isMountPoint(root + "/data"))

        let path = root + "/data/file"
        let fd = open(path, O_CREAT | O_RDWR, 0o640)
        XCTAssertGreaterThanOrEqual(fd, 0)
        let bytes = [UInt8](repeating: 7, count: 10_000)
        XCTAssertEqual(bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 4096) }, 10_000)
        XCTAssertEqual(fsync(fd), 0)
        // fsync returned: every record so far is durable.
        XCTAssertEqual(writer.durablePosition, writer.lastPosition)
        close(fd)
        XCTAssertEqual(rename(path, root + "/data/renamed"), 0)

        var kinds: [Mutation.Kind] = []
        XCTAssertTrue(journal.makeDurable())
        try JournalReader.read(directory: root + "/journal") { record in
            kinds.append(try Mutation(record: record).kind)
            return true
        }
        XCTAssertEqual(kinds.first, .create)
        XCTAssertTrue(kinds.contains(.write))
        XCTAssertEqual(kinds.last, .rename)
        // The backing file has the bytes and a file id the service does not see.
        var value: UInt64 = 0
        XCTAssertEqual(
            withUnsafeMutableBytes(of: &value) {
                lifeboat_getxattr(root + "/backing/renamed", FileID.xattrName, $0.baseAddress, 8)
            }, 8)
        XCTAssertLessThan(lifeboat_listxattr(root + "/data/renamed", nil, 0), 1)

        let (cut, dirty) = try mount.takeCut(walkEverything: false)
        defer { dirty.closeDescriptors() }
        let id = UInt64(littleEndian: value)
        XCTAssertTrue(cut.changed.contains(id))
        XCTAssertEqual(cut.overlays[id]?.reduce(0) { $0 + $1.bytes.count }, 10_000)
        XCTAssertEqual(cut.position, writer.lastPosition)
        XCTAssertEqual(cut.directories[""]?.map { String(decoding: $0.name, as: UTF8.self) }, ["renamed"])
        // Nothing changed since: the next cut names nothing.
        let (second, secondDirty) = try mount.takeCut(walkEverything: false)
        defer { secondDirty.closeDescriptors() }
        XCTAssertTrue(second.changed.isEmpty)
    }
}
