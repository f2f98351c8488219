import CLifeboatPosix
import Foundation
import Glibc
import LifeboatCore
import LifeboatJournal
import Synchronization
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

    /// Each fsync, fdatasync and directory fsync is reported once, after its answer, with a
    /// latency no longer than the call took; reads and writes are not reported.
    func testEveryFsyncIsReportedOnceWithItsLatency() throws {
        let writer = try JournalWriter(directory: root + "/journal")
        let journal = CaptureJournal(writer: writer, epoch: 1)
        let reported = Mutex<[Duration]>([])
        let mount = try CaptureMount(
            dataDir: root + "/data", backingDir: root + "/backing", journal: journal,
            fsyncObserver: { latency in reported.withLock { $0.append(latency) } })
        try mount.start(threads: 4)
        defer { mount.stop() }
        let fd = open(root + "/data/file", O_CREAT | O_RDWR, 0o640)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        XCTAssertEqual(pwrite(fd, "abc", 3, 0), 3)
        XCTAssertTrue(reported.withLock { $0.isEmpty }, "a write was reported as an fsync")
        let started = ContinuousClock.now
        XCTAssertEqual(fsync(fd), 0)
        XCTAssertEqual(fdatasync(fd), 0)
        let directory = open(root + "/data", O_RDONLY | O_DIRECTORY)
        XCTAssertGreaterThanOrEqual(directory, 0)
        XCTAssertEqual(fsync(directory), 0)
        close(directory)
        let took = ContinuousClock.now - started
        // The observer runs after the answer, on the FUSE thread: give the last one a moment.
        let deadline = ContinuousClock.now + .seconds(5)
        while reported.withLock({ $0.count }) < 3 && ContinuousClock.now < deadline { usleep(1000) }
        let latencies = reported.withLock { $0 }
        XCTAssertEqual(latencies.count, 3)
        for latency in latencies {
            XCTAssertGreaterThan(latency, .zero)
            XCTAssertLessThanOrEqual(latency, took)
        }
    }

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
