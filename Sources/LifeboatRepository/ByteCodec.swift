import LifeboatCore

extension ByteWriter {
    /// A 32-byte object id.
    mutating func id(_ value: ObjectID) {
        let start = bytes.count
        bytes.append(contentsOf: repeatElement(0, count: 32))
        bytes.withUnsafeMutableBytes { value.store(to: $0.baseAddress! + start) }
    }
}

extension ByteReader {
    mutating func id() throws -> ObjectID {
        try need(32)
        defer { offset += 32 }
        return bytes.withUnsafeBytes { ObjectID(loadingFrom: $0.baseAddress! + offset) }
    }
}
