import Crypto
import LifeboatCore

/// A 32-byte object id: the SHA-256 of a blob's plaintext, or a random id for packs and locks.
public struct ObjectID: Hashable, Comparable, Sendable, CustomStringConvertible {
    // Four words in memory order of the 32 bytes; equality and hashing stay cheap.
    public var w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64

    public init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        (self.w0, self.w1, self.w2, self.w3) = (w0, w1, w2, w3)
    }

    /// Reads 32 bytes at `pointer` (any alignment).
    public init(loadingFrom pointer: UnsafeRawPointer) {
        w0 = pointer.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
        w1 = pointer.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        w2 = pointer.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
        w3 = pointer.loadUnaligned(fromByteOffset: 24, as: UInt64.self)
    }

    /// From exactly 32 bytes; nil otherwise.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self = bytes.withUnsafeBytes { ObjectID(loadingFrom: $0.baseAddress!) }
    }

    /// From 64 hex digits; nil otherwise.
    public init?(hex: String) {
        guard hex.utf8.count == 64, let bytes = Hex.decode(hex) else { return nil }
        self.init(bytes: bytes)
    }

    /// The SHA-256 of `buffer`.
    public static func hash(_ buffer: UnsafeRawBufferPointer) -> ObjectID {
        var hasher = SHA256()
        hasher.update(bufferPointer: buffer)
        let digest = hasher.finalize()
        return digest.withUnsafeBytes { ObjectID(loadingFrom: $0.baseAddress!) }
    }

    /// The SHA-256 of `bytes`.
    public static func hash(_ bytes: [UInt8]) -> ObjectID {
        bytes.withUnsafeBytes { hash($0) }
    }

    /// A random id (for packs, locks and temp files).
    public static func random() -> ObjectID {
        var generator = SystemRandomNumberGenerator()
        return ObjectID(w0: generator.next(), w1: generator.next(), w2: generator.next(), w3: generator.next())
    }

    /// The 32 bytes.
    public var bytes: [UInt8] {
        var copy = self
        return withUnsafeBytes(of: &copy) { Array($0) }
    }

    /// Writes the 32 bytes at `pointer`.
    public func store(to pointer: UnsafeMutableRawPointer) {
        pointer.storeBytes(of: w0, toByteOffset: 0, as: UInt64.self)
        pointer.storeBytes(of: w1, toByteOffset: 8, as: UInt64.self)
        pointer.storeBytes(of: w2, toByteOffset: 16, as: UInt64.self)
        pointer.storeBytes(of: w3, toByteOffset: 24, as: UInt64.self)
    }

    /// 64 lower-case hex digits.
    public var hex: String { Hex.encode(bytes) }

    /// The first 8 hex digits, as shown in listings.
    public var short: String { String(hex.prefix(8)) }

    public var description: String { hex }

    public static func < (lhs: ObjectID, rhs: ObjectID) -> Bool {
        lhs.bytes.lexicographicallyPrecedes(rhs.bytes)
    }
}

/// Incremental SHA-256 for streams (index and snapshot files).
struct StreamHasher {
    private var hasher = SHA256()

    mutating func update(_ buffer: UnsafeRawBufferPointer) { hasher.update(bufferPointer: buffer) }

    mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { hasher.update(bufferPointer: $0) } }

    func finalize() -> ObjectID {
        hasher.finalize().withUnsafeBytes { ObjectID(loadingFrom: $0.baseAddress!) }
    }
}
