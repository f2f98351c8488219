import Foundation
import Glibc
import LifeboatCore
import LifeboatJournal
import LifeboatSystem
import XCTest

@testable import LifeboatCapture

/// Faults injected into the capture write path (the passthrough's write into the backing
/// file, and the journal behind it), through a real FUSE mount in the test process.
final class CaptureFaultTests: MountTestCase {
    override class var rootPrefix: String { "lifeboat-capture-faults-" }

    /// Mounts with `backing` as the passthrough's seam and `journalCalls` as the journal's.
    private func mount(
        backing: FaultyCalls, journalCalls: FaultyCalls = FaultyCalls()
    ) throws -> (
        CaptureMount, JournalWriter
    ) {
        let writer = try JournalWriter(directory: root + "/journal", calls: journalCalls)
        let journal = CaptureJournal(writer: writer, epoch: 1)
        let mount = try CaptureMount(
            dataDir: root + "/data", backingDir: root + "/backing", journal: journal, calls: backing)
        try mount.start(threads: 2)
        return (mount, writer)
    }

    private func writeKinds() throws -> [Mutation.Kind] {
        var kinds: [Mutation.Kind] = []
        try JournalReader.read(directory: root + "/journal") { record in
            kinds.append(try Mutation(record: record).kind)
            return true
        }
        return kinds
    }

    func testNoSpaceInTheBackingFileReachesTheServiceAndIsNotJournaledAsAWrite() throws {
        let faults = FaultyCalls()
        let (mount, writer) = try mount(backing: faults)
        defer { mount.stop() }
        let fd = open(root + "/data/file", O_CREAT | O_RDWR, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        faults.set([.init(.pwrite, ENOSPC, where: { $0.hasSuffix("/backing/file") })])
        let bytes = [UInt8](repeating: 3, count: 4096)
        XCTAssertEqual(bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }, -1)
        XCTAssertEqual(errno, ENOSPC)
        XCTAssertGreaterThan(faults.injected(.pwrite), 0)
        XCTAssertEqual(fsync(fd), 0)
        XCTAssertEqual(writer.durablePosition, writer.lastPosition)
        XCTAssertFalse(try writeKinds().contains(.write), "a write that failed is not in the journal")
        // EIO likewise; then the fault is gone and writes go through again.
        faults.set([.init(.pwrite, EIO, times: 1)])
        XCTAssertEqual(bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }, -1)
        XCTAssertEqual(errno, EIO)
        XCTAssertEqual(bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }, 4096)
        XCTAssertEqual(fsync(fd), 0)
        XCTAssertTrue(try writeKinds().contains(.write))
    }

    func testInterruptedBackingWritesAreRetriedWhole() throws {
        let faults = FaultyCalls()
        let (mount, _) = try mount(backing: faults)
        defer { mount.stop() }
        let fd = open(root + "/data/file", O_CREAT | O_RDWR, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        faults.set([.init(.pwrite, EINTR, times: 3)])
        let bytes = (0..<65_536).map { UInt8(truncatingIfNeeded: $0 * 7) }
        XCTAssertEqual(bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 100) }, bytes.count)
        XCTAssertEqual(faults.injected(.pwrite), 3)
        XCTAssertEqual(fsync(fd), 0)
        let backing = try XCTUnwrap(try FileIO.real.readFileIfPresent(root + "/backing/file"))
        XCTAssertEqual(Array(backing[100...]), bytes)
    }

    /// With `rule` failing the journal, the service's fsync fails and so does every later change.
    private func checkJournalFailure(_ rule: FaultyCalls.Rule) throws {
        let journalFaults = FaultyCalls()
        let (mount, _) = try mount(backing: FaultyCalls(), journalCalls: journalFaults)
        defer { mount.stop() }
        let fd = open(root + "/data/file", O_CREAT | O_RDWR, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        XCTAssertEqual(fsync(fd), 0)
        journalFaults.set([rule])
        XCTAssertEqual([UInt8](repeating: 1, count: 100).withUnsafeBytes { pwrite(fd, $0.baseAddress, 100, 0) }, 100)
        XCTAssertEqual(fsync(fd), -1, "the journal could not hold the write: fsync must fail")
        XCTAssertEqual(errno, EIO)
        XCTAssertGreaterThan(journalFaults.injected(rule.call), 0)
        journalFaults.set([])
        XCTAssertEqual([UInt8](repeating: 2, count: 10).withUnsafeBytes { pwrite(fd, $0.baseAddress, 10, 0) }, -1)
        XCTAssertEqual(errno, EIO, "after a failed journal write every later change is refused")
        XCTAssertEqual(fsync(fd), -1)
    }

    func testNoSpaceForTheJournalFailsTheServicesFsyncAndEveryLaterChange() throws {
        try checkJournalFailure(.init(.write, ENOSPC))
    }

    func testFailedJournalFsyncFailsTheServicesFsyncAndEveryLaterChange() throws {
        try checkJournalFailure(.init(.fsync, EIO))
    }

    func testInterruptedJournalWritesAndFsyncsAreRetried() throws {
        let journalFaults = FaultyCalls()
        let (mount, writer) = try mount(backing: FaultyCalls(), journalCalls: journalFaults)
        defer { mount.stop() }
        let fd = open(root + "/data/file", O_CREAT | O_RDWR, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        journalFaults.set([.init(.write, EINTR, times: 2), .init(.fsync, EINTR, times: 2)])
        XCTAssertEqual([UInt8](repeating: 1, count: 100).withUnsafeBytes { pwrite(fd, $0.baseAddress, 100, 0) }, 100)
        XCTAssertEqual(fsync(fd), 0)
        XCTAssertEqual(journalFaults.injected(.write), 2)
        XCTAssertEqual(journalFaults.injected(.fsync), 2)
        XCTAssertEqual(writer.durablePosition, writer.lastPosition)
        XCTAssertTrue(try writeKinds().contains(.write))
    }

    /// Entries get exactly the mode the service asked for, and mounting leaves the process
    /// umask alone. (Before the fix `start()` set the process umask to 0.)
    func testCreatedEntriesGetTheirModesAndTheUmaskIsLeftAlone() throws {
        let saved = umask(0o022)
        defer { umask(saved) }
        let (mount, _) = try mount(backing: FaultyCalls())
        defer { mount.stop() }
        let current = umask(0o022)
        XCTAssertEqual(current, 0o022, "mounting changed the process umask")
        // The service runs with umask 0 in its own process and asks for 0666 and 0777.
        let shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/bin/sh")
        shell.arguments = ["-c", "umask 0 && cd \(root)/data && : > file && mkdir dir && mkfifo fifo"]
        try shell.run()
        shell.waitUntilExit()
        XCTAssertEqual(shell.terminationStatus, 0)
        for (name, mode) in [("file", 0o666), ("dir", 0o777), ("fifo", 0o666)] {
            var st = stat()
            XCTAssertEqual(lstat(root + "/backing/" + name, &st), 0, name)
            XCTAssertEqual(Int(st.st_mode & 0o7777), mode, "\(name) in the backing dir")
            XCTAssertEqual(lstat(root + "/data/" + name, &st), 0, name)
            XCTAssertEqual(Int(st.st_mode & 0o7777), mode, "\(name) in the mount")
        }
    }
}
