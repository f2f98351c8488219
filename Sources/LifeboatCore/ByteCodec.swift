/// Appends little-endian integers, varints and byte strings to a growing buffer.
public struct ByteWriter: Sendable {
    public var bytes: [UInt8] = []

    public init() {}

    public mutating func u8(_ value: UInt8) { bytes.append(value) }

    public mutating func u32(_ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func u64(_ value: UInt64) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func i64(_ value: Int64) { u64(UInt64(bitPattern: value)) }

    public mutating func varint(_ value: UInt64) {
        var rest = value
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
    }

    /// A varint length followed by the bytes.
    public mutating func data(_ value: [UInt8]) {
        varint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    public mutating func raw(_ value: [UInt8]) { bytes.append(contentsOf: value) }
}

/// Reads what `ByteWriter` wrote; every read is bounds-checked and throws on truncation.
public struct ByteReader: Sendable {
    public let bytes: [UInt8]
    public var offset: Int
    /// Names the object in errors ("tree 1a2b3c4d", "index file ...").
    public let context: String

    public init(_ bytes: [UInt8], offset: Int = 0, context: String) {
        self.bytes = bytes
        self.offset = offset
        self.context = context
    }

    public var remaining: Int { bytes.count - offset }

    public mutating func need(_ count: Int) throws {
        guard count >= 0, count <= remaining else {
            throw LifeboatError(
                .integrity, "\(context) is truncated or damaged (needs \(count) bytes at offset \(offset))")
        }
    }

    public mutating func u8() throws -> UInt8 {
        try need(1)
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func u32() throws -> UInt32 {
        try need(4)
        defer { offset += 4 }
        return bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
    }

    public mutating func u64() throws -> UInt64 {
        try need(8)
        defer { offset += 8 }
        return bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
    }

    public mutating func i64() throws -> Int64 { Int64(bitPattern: try u64()) }

    public mutating func varint() throws -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try u8()
            guard shift < 64 else { throw LifeboatError(.integrity, "\(context) has a malformed number") }
            result |= UInt64(byte & 0x7f) << shift
            if byte & 0x80 == 0 { return result }
            shift += 7
        }
    }

    public mutating func data() throws -> [UInt8] {
        let length = try varint()
        guard length <= UInt64(remaining) else {
            throw LifeboatError(.integrity, "\(context) is truncated or damaged (string of \(length) bytes)")
        }
        return try raw(Int(length))
    }

    public mutating func raw(_ count: Int) throws -> [UInt8] {
        try need(count)
        defer { offset += count }
        return Array(bytes[offset..<(offset + count)])
    }
}
