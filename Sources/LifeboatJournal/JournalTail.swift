import Glibc
public import LifeboatCore
import LifeboatSystem

/// Follows a journal directory that a live writer appends to, handing out whole, checked
/// frames from a given seq on: what the primary streams to its peers and what a peer serves
/// to a recovering host. It reads only bytes it has not read yet.
public final class JournalTail {
    public let directory: String
    /// The seq of the next record to hand out.
    public private(set) var nextSeq: UInt64
    /// The position of the last record handed out.
    public private(set) var last: Position?
    private var fd: Int32 = -1
    private var segmentFirstSeq: UInt64 = 0
    private var offset = 0

    /// What `next` hands out: whole frames, exactly as the journal stores them.
    public struct Batch: Sendable {
        public var frames: [UInt8]
        public var records: Int
        public var first: Position
        public var last: Position
    }

    /// The records from `seq` on are no longer in the journal (removed after a snapshot).
    public struct Gone: Error, CustomStringConvertible {
        public var wanted: UInt64
        public var oldest: UInt64?
        public var description: String {
            "journal records from seq \(wanted) are gone (oldest held: \(oldest.map(String.init) ?? "none"))"
        }
    }

    public init(directory: String, from seq: UInt64) {
        self.directory = directory
        self.nextSeq = seq
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Up to about `maxBytes` of whole frames starting at `nextSeq`, or nil when no complete
    /// new record is on disk yet. Throws `Gone` when that seq was removed.
    public func next(maxBytes: Int = 1 << 20) throws -> Batch? {
        if fd < 0 {
            // An empty journal that will start at nextSeq: wait for its first segment.
            if try Segments.list(directory).isEmpty { return nil }
            try openSegment()
        }
        while true {
            if let batch = try readFrames(maxBytes: maxBytes) { return batch }
            // Nothing complete here: move on only when a later segment starts where we are.
            let segments = try Segments.list(directory)
            guard segments.contains(where: { $0.firstSeq == nextSeq && $0.firstSeq != segmentFirstSeq }) else {
                return nil
            }
            close(fd)
            fd = -1
            try openSegment()
        }
    }

    /// Opens the segment that holds `nextSeq` and skips to that record.
    private func openSegment() throws {
        let segments = try Segments.list(directory)
        guard let segment = segments.last(where: { $0.firstSeq <= nextSeq }) else {
            if segments.isEmpty { throw Gone(wanted: nextSeq, oldest: nil) }
            throw Gone(wanted: nextSeq, oldest: segments.first?.firstSeq)
        }
        if let following = segments.first(where: { $0.firstSeq > segment.firstSeq }), following.firstSeq <= nextSeq {
            throw Gone(wanted: nextSeq, oldest: segments.first?.firstSeq)
        }
        let opened = open(segment.path, O_RDONLY | O_CLOEXEC)
        guard opened >= 0 else {
            if errno == ENOENT { throw Gone(wanted: nextSeq, oldest: nil) }
            throw journalIOError(errno, "opening journal segment", segment.path)
        }
        fd = opened
        segmentFirstSeq = segment.firstSeq
        offset = JournalFormat.segmentHeaderSize
        // Skip the records before nextSeq by their frame headers.
        var seq = segment.firstSeq
        while seq < nextSeq {
            var header = [UInt8](repeating: 0, count: JournalFormat.frameHeaderSize)
            let got = try readAt(&header, offset)
            guard got == header.count else {
                throw LifeboatError(.integrity, "journal segment \(segment.path) ends before seq \(nextSeq)")
            }
            let length = header.withUnsafeBytes { Int(UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self))) }
            offset += JournalFormat.frameHeaderSize + length
            seq += 1
        }
    }

    private func readFrames(maxBytes: Int) throws -> Batch? {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw journalIOError(errno, "reading journal segment in", directory) }
        let available = Int(st.st_size) - offset
        guard available >= JournalFormat.frameHeaderSize + JournalFormat.bodyFixedSize else { return nil }
        var buffer = [UInt8](repeating: 0, count: max(min(maxBytes, available), JournalFormat.frameHeaderSize))
        var got = try readAt(&buffer, offset)
        if got >= JournalFormat.frameHeaderSize {
            // A single frame larger than the buffer: read it whole.
            let length = buffer.withUnsafeBytes { Int(UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self))) }
            let frameSize = JournalFormat.frameHeaderSize + length
            if frameSize > buffer.count && length <= JournalFormat.bodyFixedSize + JournalFormat.maxPayload {
                buffer = [UInt8](repeating: 0, count: frameSize)
                got = try readAt(&buffer, offset)
            }
        }
        var used = 0
        var records = 0
        var first: Position?
        var lastSeen: Position?
        buffer.withUnsafeBytes { raw in
            let view = UnsafeRawBufferPointer(rebasing: raw[0..<got])
            while true {
                guard case .valid(let position, let size) = JournalFormat.checkedFrame(in: view, at: used),
                    position.seq == nextSeq + UInt64(records)
                else { return }
                if first == nil { first = position }
                lastSeen = position
                used += size
                records += 1
            }
        }
        guard records > 0, let first, let lastSeen else { return nil }
        offset += used
        nextSeq += UInt64(records)
        last = lastSeen
        return Batch(frames: Array(buffer[0..<used]), records: records, first: first, last: lastSeen)
    }

    private func readAt(_ buffer: inout [UInt8], _ at: Int) throws -> Int {
        do {
            return try buffer.withUnsafeMutableBytes { raw in
                Result { () throws(SystemError) in try FileIO.real.preadAll(fd, raw, at: UInt64(at), path: directory) }
            }.get()
        } catch {
            throw journalIOError(error, "reading journal segment in", directory)
        }
    }
}
