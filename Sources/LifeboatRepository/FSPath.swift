import Glibc

/// A filesystem path as raw bytes, so names that are not valid UTF-8 survive a round trip.
public struct FSPath: Hashable, Sendable, CustomStringConvertible {
    public var bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }

    public init(_ string: String) { self.bytes = Array(string.utf8) }

    /// This path with `name` appended as one component.
    public func appending(_ name: [UInt8]) -> FSPath {
        var copy = bytes
        if copy.last != UInt8(ascii: "/") { copy.append(UInt8(ascii: "/")) }
        copy.append(contentsOf: name)
        return FSPath(bytes: copy)
    }

    public func appending(_ name: String) -> FSPath { appending(Array(name.utf8)) }

    /// The last component.
    public var lastComponent: [UInt8] {
        guard let slash = bytes.lastIndex(of: UInt8(ascii: "/")) else { return bytes }
        return Array(bytes[(slash + 1)...])
    }

    /// The path as text for messages (invalid UTF-8 shown as replacement characters).
    public var string: String { String(decoding: bytes, as: UTF8.self) }

    public var description: String { string }

    /// Calls `body` with a NUL-terminated C string of the path.
    public func withCString<Result>(_ body: (UnsafePointer<CChar>) throws -> Result) rethrows -> Result {
        var terminated = bytes
        terminated.append(0)
        return try terminated.withUnsafeBufferPointer { buffer in
            try buffer.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buffer.count) { try body($0) }
        }
    }
}
