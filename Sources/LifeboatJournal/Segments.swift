import Glibc
import LifeboatCore
import LifeboatSystem

/// A journal directory's segment files and what scanning them found.
struct SegmentScan {
    var firstSeq: UInt64
    var path: String
    /// Bytes of the file that hold a valid header and valid records.
    var validLength: Int
    /// Bytes past `validLength`: a torn tail (only ever in the last segment).
    var tornBytes: Int
    var last: Position?
}

enum Segments {
    /// The segment files of `directory`, sorted by first seq. A failed listing throws.
    static func list(_ directory: String, io: FileIO = .real) throws -> [(firstSeq: UInt64, path: String)] {
        let names: [String]
        do {
            names = try io.listNames(directory)
        } catch {
            throw journalIOError(error, "listing journal directory", directory)
        }
        var found: [(UInt64, String)] = []
        for name in names {
            if let seq = JournalFormat.firstSeq(ofSegment: name) { found.append((seq, directory + "/" + name)) }
        }
        return found.sorted { $0.0 < $1.0 }
    }

    /// Reads a whole segment file.
    static func read(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw journalIOError(errno, "opening journal segment", path) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw journalIOError(errno, "reading journal segment", path) }
        var bytes = [UInt8](repeating: 0, count: Int(st.st_size))
        let done: Int
        do {
            done = try bytes.withUnsafeMutableBytes { buffer in
                Result { () throws(SystemError) in try FileIO.real.preadAll(fd, buffer, at: 0, path: path) }
            }.get()
        } catch {
            throw journalIOError(error, "reading journal segment", path)
        }
        return Array(bytes.prefix(done))
    }

    /// Checks a segment record by record, calling `body` for each valid one.
    ///
    /// An invalid frame in the last segment is a torn tail when nothing valid follows it; an
    /// invalid frame followed by the next expected record, or any invalid frame in an earlier
    /// segment, is damage and throws: a durable record is never silently dropped.
    static func scan(
        _ bytes: [UInt8], firstSeq: UInt64, path: String, isLast: Bool, after previous: Position?,
        _ body: (JournalRecord) throws -> Void
    ) throws -> SegmentScan {
        var result = SegmentScan(firstSeq: firstSeq, path: path, validLength: 0, tornBytes: 0, last: previous)
        guard bytes.count >= JournalFormat.segmentHeaderSize,
            Array(bytes[0..<JournalFormat.segmentHeaderSize]) == JournalFormat.segmentHeader(firstSeq: firstSeq)
        else {
            if isLast && bytes.count < JournalFormat.segmentHeaderSize {
                result.tornBytes = bytes.count  // created but never written: a crash right after creation
                return result
            }
            throw LifeboatError(
                .integrity, "journal segment \(path) has a damaged header",
                hint: "copy the journal directory aside and restore from the newest snapshot")
        }
        if let previous, firstSeq != previous.seq + 1 {
            throw LifeboatError(
                .integrity,
                "journal segment \(path) starts at seq \(firstSeq), expected \(previous.seq + 1): a segment is missing")
        }
        var offset = JournalFormat.segmentHeaderSize
        var expected = firstSeq
        var epoch = previous?.epoch ?? 0
        try bytes.withUnsafeBytes { raw in
            while true {
                switch JournalFormat.frame(in: raw, at: offset) {
                case .end:
                    result.validLength = offset
                    return
                case .record(let record, let size):
                    guard record.position.seq == expected, record.position.epoch >= epoch else {
                        throw LifeboatError(
                            .integrity,
                            "journal segment \(path) holds record \(record.position) at offset \(offset), expected seq \(expected) at epoch ≥ \(epoch)"
                        )
                    }
                    try body(record)
                    result.last = record.position
                    epoch = record.position.epoch
                    expected += 1
                    offset += size
                case .invalid:
                    if isLast && !validRecordFollows(raw, invalidAt: offset, expectedSeq: expected + 1) {
                        result.validLength = offset
                        result.tornBytes = raw.count - offset
                        return
                    }
                    throw LifeboatError(
                        .integrity,
                        "journal segment \(path) is damaged at offset \(offset) (record seq \(expected) fails its checksum)",
                        hint:
                            "copy the journal directory aside; records after seq \(expected - 1) must come from a peer or a snapshot"
                    )
                }
            }
        }
        return result
    }

    /// True when the frame after a bad one (by its declared length) is the next expected record,
    /// which means the bad bytes sit in the middle of durable data, not at a torn end.
    private static func validRecordFollows(
        _ raw: UnsafeRawBufferPointer, invalidAt offset: Int, expectedSeq: UInt64
    ) -> Bool {
        guard raw.count - offset >= JournalFormat.frameHeaderSize else { return false }
        let length = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        let next = offset + JournalFormat.frameHeaderSize + length
        guard length >= JournalFormat.bodyFixedSize, next < raw.count else { return false }
        if case .record(let record, _) = JournalFormat.frame(in: raw, at: next) {
            return record.position.seq == expectedSeq
        }
        return false
    }
}

/// An error for a failed syscall on a journal path (`underlying` is the `SystemError`).
func journalIOError(_ code: Int32, _ action: String, _ path: String) -> LifeboatError {
    journalIOError(SystemError(action, path, code: code), action, path)
}

/// An error for a failed call on a journal path, worded for the operator.
func journalIOError(_ error: SystemError, _ action: String, _ path: String) -> LifeboatError {
    LifeboatError(
        error, action: action, path: path, spaceHint: "free space on the journal's filesystem", adviseAccess: false)
}
