public import LifeboatCore

/// One journal record: its position, what kind of mutation it is, and the mutation itself.
///
/// The journal does not interpret `kind` or `payload`; the capture layer defines them.
public struct JournalRecord: Sendable, Equatable {
    public var position: Position
    public var kind: UInt8
    public var payload: [UInt8]

    public init(position: Position, kind: UInt8, payload: [UInt8]) {
        self.position = position
        self.kind = kind
        self.payload = payload
    }
}

/// The on-disk layout (Docs/journal-format.md):
///
/// segment file `<first seq, 20 digits>.journal`:
///   header  "LBJSEG01", first seq u64, crc32c(first 16 bytes) u32        (20 bytes)
///   frames  length u32 (of body), crc32c(body) u32, body
///   body    epoch u64, seq u64, kind u8, payload
/// Integers are little-endian.
enum JournalFormat {
    static let segmentMagic = Array("LBJSEG01".utf8)
    static let segmentHeaderSize = 20
    static let frameHeaderSize = 8
    static let bodyFixedSize = 17
    /// Largest payload accepted: FUSE writes arrive in pieces of at most 1 MiB.
    static let maxPayload = 4 << 20
    static let segmentSuffix = ".journal"

    static func segmentName(firstSeq: UInt64) -> String {
        let digits = String(firstSeq)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits + segmentSuffix
    }

    /// The first seq of a segment file name, or nil for other files.
    static func firstSeq(ofSegment name: String) -> UInt64? {
        guard name.hasSuffix(segmentSuffix), name.count == 20 + segmentSuffix.count else { return nil }
        return UInt64(name.prefix(20))
    }

    static func segmentHeader(firstSeq: UInt64) -> [UInt8] {
        var bytes = segmentMagic
        withUnsafeBytes(of: firstSeq.littleEndian) { bytes.append(contentsOf: $0) }
        let crc = CRC32C.checksum(bytes)
        withUnsafeBytes(of: crc.littleEndian) { bytes.append(contentsOf: $0) }
        return bytes
    }

    static func appendFrame(
        to buffer: inout [UInt8], epoch: UInt64, seq: UInt64, kind: UInt8,
        header: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0), payload: UnsafeRawBufferPointer
    ) {
        let bodyLength = bodyFixedSize + header.count + payload.count
        let start = buffer.count
        buffer.append(contentsOf: repeatElement(0, count: frameHeaderSize))
        withUnsafeBytes(of: epoch.littleEndian) { buffer.append(contentsOf: $0) }
        withUnsafeBytes(of: seq.littleEndian) { buffer.append(contentsOf: $0) }
        buffer.append(kind)
        if header.count > 0 { buffer.append(contentsOf: header) }
        buffer.append(contentsOf: payload)
        let crc = buffer.withUnsafeBytes {
            CRC32C.update(0, UnsafeRawBufferPointer(rebasing: $0[(start + frameHeaderSize)...]))
        }
        buffer.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: UInt32(bodyLength).littleEndian, toByteOffset: start, as: UInt32.self)
            raw.storeBytes(of: crc.littleEndian, toByteOffset: start + 4, as: UInt32.self)
        }
    }

    /// What is at `offset` of a segment's bytes.
    enum Frame {
        case record(JournalRecord, size: Int)
        /// Not a valid frame: a torn write, zeros, or damage.
        case invalid
        case end
    }

    /// What `checkedFrame` finds: a valid frame's position and size, without copying its payload.
    enum Checked {
        case valid(Position, size: Int)
        case invalid
        case end
    }

    /// Checks the frame at `offset` (length, checksum) and reads its position only: for code
    /// that moves frames as they are (streaming, fetching) and never looks inside them.
    static func checkedFrame(in bytes: UnsafeRawBufferPointer, at offset: Int) -> Checked {
        let remaining = bytes.count - offset
        if remaining == 0 { return .end }
        guard remaining >= frameHeaderSize + bodyFixedSize else { return .invalid }
        let length = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        let crc = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
        guard length >= bodyFixedSize, length <= bodyFixedSize + maxPayload, length <= remaining - frameHeaderSize
        else {
            return .invalid
        }
        let body = UnsafeRawBufferPointer(
            rebasing: bytes[(offset + frameHeaderSize)..<(offset + frameHeaderSize + length)])
        guard CRC32C.update(0, body) == crc else { return .invalid }
        let epoch = UInt64(littleEndian: body.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        let seq = UInt64(littleEndian: body.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        return .valid(Position(epoch: epoch, seq: seq), size: frameHeaderSize + length)
    }

    static func frame(in bytes: UnsafeRawBufferPointer, at offset: Int) -> Frame {
        switch checkedFrame(in: bytes, at: offset) {
        case .end: return .end
        case .invalid: return .invalid
        case .valid(let position, let size):
            let body = offset + frameHeaderSize
            let record = JournalRecord(
                position: position, kind: bytes[body + 16],
                payload: Array(bytes[(body + bodyFixedSize)..<(offset + size)]))
            return .record(record, size: size)
        }
    }
}
