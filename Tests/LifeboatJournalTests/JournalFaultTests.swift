import Foundation
import Glibc
import LifeboatCore
import LifeboatSystem
import XCTest

@testable import LifeboatJournal

/// EIO, ENOSPC and EINTR injected into the journal writer through its seam.
final class JournalFaultTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        var template = Array("/tmp/lifeboat-journal-faults-XXXXXX".utf8CString)
        directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func records() throws -> [UInt64] {
        var seqs: [UInt64] = []
        try JournalReader.read(directory: directory) {
            seqs.append($0.position.seq)
            return true
        }
        return seqs
    }

    func testNoSpaceFailsTheSyncAndEveryLaterAppend() throws {
        let faults = FaultyCalls()
        let writer = try JournalWriter(directory: directory, calls: faults)
        try writer.append(epoch: 1, kind: 1, payload: [1, 2, 3])
        try writer.sync()
        faults.set([.init(.write, ENOSPC)])
        try writer.append(epoch: 1, kind: 1, payload: [4, 5, 6])
        XCTAssertThrowsError(try writer.sync()) { error in
            let shown = error as? LifeboatError
            XCTAssertEqual((shown?.underlying as? SystemError)?.code, ENOSPC, "\(error)")
            XCTAssertEqual(shown?.message, "no space left on device while writing journal segment in \(directory)")
        }
        faults.set([])
        // Once failed, the writer refuses everything: nothing is acknowledged after a lost write.
        XCTAssertThrowsError(try writer.append(epoch: 1, kind: 1, payload: [7]))
        XCTAssertThrowsError(try writer.sync())
        XCTAssertEqual(writer.durablePosition?.seq, 1)
        XCTAssertEqual(try records(), [1])
    }

    func testFailedFsyncIsNeverRetriedIntoSuccess() throws {
        let faults = FaultyCalls([.init(.fsync, EIO, times: 1)])
        let writer = try JournalWriter(directory: directory, calls: faults)
        try writer.append(epoch: 1, kind: 1, payload: [1])
        XCTAssertThrowsError(try writer.sync()) { error in
            XCTAssertEqual(((error as? LifeboatError)?.underlying as? SystemError)?.code, EIO, "\(error)")
        }
        XCTAssertEqual(faults.injected(.fsync), 1)
        // The fault is gone, but the writer stays failed: the record was never made durable.
        XCTAssertThrowsError(try writer.sync())
        XCTAssertNil(writer.durablePosition)
    }

    func testFailedDirectoryFsyncFailsTheSyncOfANewSegment() throws {
        let faults = FaultyCalls([.init(.fsync, EIO, where: { [directory] in $0 == directory })])
        let writer = try JournalWriter(directory: directory, calls: faults)
        try writer.append(epoch: 1, kind: 1, payload: [1])
        XCTAssertThrowsError(try writer.sync()) { error in
            XCTAssertTrue("\(error)".contains("syncing journal directory"), "\(error)")
        }
        XCTAssertEqual(faults.injected(.fsync), 1)
    }

    func testInterruptedWritesAndFsyncsAreRetried() throws {
        let faults = FaultyCalls([.init(.write, EINTR, times: 3), .init(.fsync, EINTR, times: 3)])
        let writer = try JournalWriter(directory: directory, segmentSize: 4096, calls: faults)
        for seq in 1...50 { try writer.append(epoch: 1, kind: 1, payload: [UInt8](repeating: 7, count: seq * 10)) }
        XCTAssertEqual(try writer.sync()?.seq, 50)
        XCTAssertEqual(faults.injected(.write), 3)
        XCTAssertEqual(faults.injected(.fsync), 3)
        XCTAssertEqual(try records(), Array(1...50))
    }

    func testFailedListingIsNotAnEmptyJournal() throws {
        do {
            let writer = try JournalWriter(directory: directory)
            try writer.append(epoch: 1, kind: 1, payload: [1])
            try writer.sync()
        }
        let faults = FaultyCalls([.init(.listDirectory, EIO)])
        XCTAssertThrowsError(try JournalWriter(directory: directory, calls: faults)) { error in
            XCTAssertTrue("\(error)".contains("listing journal directory"), "\(error)")
        }
        XCTAssertEqual(try JournalWriter(directory: directory).lastPosition?.seq, 1)
    }
}
