import Foundation
import Glibc
import LifeboatCore
import XCTest

@testable import LifeboatJournal

final class JournalTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        var template = Array("/tmp/lifeboat-journal-XXXXXX".utf8CString)
        directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func payload(_ seq: Int) -> [UInt8] {
        Array("record \(seq) ".utf8) + [UInt8](repeating: UInt8(truncatingIfNeeded: seq), count: seq % 300)
    }

    private func readAll() throws -> [JournalRecord] {
        var records: [JournalRecord] = []
        try JournalReader.read(directory: directory) {
            records.append($0)
            return true
        }
        return records
    }

    private func segmentPaths() throws -> [String] {
        try Segments.list(directory).map(\.path)
    }

    func testRecordsSurviveReopenAcrossSegments() throws {
        do {
            let journal = try JournalWriter(directory: directory, segmentSize: 4096)
            for seq in 1...1000 {
                let position = try journal.append(
                    epoch: seq <= 500 ? 1 : 2, kind: UInt8(seq % 7), payload: payload(seq))
                XCTAssertEqual(position.seq, UInt64(seq))
            }
            XCTAssertNil(journal.durablePosition)
            XCTAssertEqual(try journal.sync(), Position(epoch: 2, seq: 1000))
        }
        XCTAssertGreaterThan(try segmentPaths().count, 10, "small segments roll over")
        let reopened = try JournalWriter(directory: directory, segmentSize: 4096)
        XCTAssertEqual(reopened.recovery.last, Position(epoch: 2, seq: 1000))
        XCTAssertEqual(reopened.recovery.records, 1000)
        XCTAssertEqual(reopened.recovery.tornBytesRemoved, 0)
        let records = try readAll()
        XCTAssertEqual(records.count, 1000)
        for (index, record) in records.enumerated() {
            XCTAssertEqual(record.position.seq, UInt64(index + 1))
            XCTAssertEqual(record.payload, payload(index + 1))
            XCTAssertEqual(record.kind, UInt8((index + 1) % 7))
        }
        XCTAssertEqual(try reopened.append(epoch: 2, kind: 0, payload: [1]).seq, 1001)
    }

    func testTornTailIsCutAndAppendingResumes() throws {
        do {
            let journal = try JournalWriter(directory: directory)
            for seq in 1...20 { try journal.append(epoch: 1, kind: 1, payload: payload(seq)) }
            try journal.sync()
        }
        let path = try XCTUnwrap(try segmentPaths().last)
        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        XCTAssertEqual(truncate(path, st.st_size - 5), 0, "tear the last record")
        let journal = try JournalWriter(directory: directory)
        XCTAssertEqual(journal.recovery.last?.seq, 19)
        XCTAssertGreaterThan(journal.recovery.tornBytesRemoved, 0)
        XCTAssertEqual(try journal.append(epoch: 1, kind: 9, payload: [42]).seq, 20)
        try journal.sync()
        let records = try readAll()
        XCTAssertEqual(records.map(\.position.seq), Array(1...20))
        XCTAssertEqual(records.last?.payload, [42])
    }

    func testZeroFilledTailIsTorn() throws {
        do {
            let journal = try JournalWriter(directory: directory)
            for seq in 1...5 { try journal.append(epoch: 1, kind: 1, payload: payload(seq)) }
            try journal.sync()
        }
        let path = try XCTUnwrap(try segmentPaths().last)
        let handle = try XCTUnwrap(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data(count: 4096))
        handle.closeFile()
        let journal = try JournalWriter(directory: directory)
        XCTAssertEqual(journal.recovery.last?.seq, 5)
        XCTAssertEqual(journal.recovery.tornBytesRemoved, 4096)
    }

    func testDamageBeforeDurableRecordsIsAnErrorNotATornTail() throws {
        do {
            let journal = try JournalWriter(directory: directory)
            for seq in 1...20 { try journal.append(epoch: 1, kind: 1, payload: payload(seq)) }
            try journal.sync()
        }
        let path = try XCTUnwrap(try segmentPaths().last)
        var bytes = try Segments.read(path)
        bytes[bytes.count / 2] ^= 0x10
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try JournalWriter(directory: directory)) { error in
            XCTAssertEqual((error as? LifeboatError)?.kind, .integrity)
        }
        XCTAssertThrowsError(try readAll())
    }

    func testOlderEpochIsRefused() throws {
        let journal = try JournalWriter(directory: directory)
        try journal.append(epoch: 3, kind: 1, payload: [1])
        XCTAssertThrowsError(try journal.append(epoch: 2, kind: 1, payload: [2])) { error in
            XCTAssertTrue("\(error)".contains("fenced"), "\(error)")
        }
        XCTAssertEqual(try journal.append(epoch: 4, kind: 1, payload: [3]), Position(epoch: 4, seq: 2))
    }

    func testRetentionRemovesWholeOldSegmentsAndReadingFromAPosition() throws {
        let journal = try JournalWriter(directory: directory, segmentSize: 4096)
        for seq in 1...600 { try journal.append(epoch: 1, kind: 1, payload: payload(seq)) }
        try journal.sync()
        let before = try segmentPaths().count
        let removed = try journal.removeSegments(through: 300)
        XCTAssertGreaterThan(removed, 0)
        XCTAssertEqual(try segmentPaths().count, before - removed)
        var first: UInt64?
        try JournalReader.read(directory: directory, from: 301) { record in
            if first == nil { first = record.position.seq }
            return true
        }
        XCTAssertEqual(first, 301, "records after the retention point are all kept")
        let reopened = try JournalWriter(directory: directory, segmentSize: 4096)
        XCTAssertEqual(reopened.recovery.last?.seq, 600)
    }

    func testChecksumIsCRC32C() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
    }
}
