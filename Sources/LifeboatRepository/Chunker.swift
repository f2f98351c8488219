/// Content-defined chunking with a gear rolling hash and normalized cut points (FastCDC style).
///
/// A cut depends only on the bytes since the chunk's start, so an insertion moves the
/// boundaries near it and leaves the rest of the file's chunks, and their ids, unchanged.
public struct Chunker: Sendable {
    public let minSize: Int
    public let averageSize: Int
    public let maxSize: Int
    private let gear: [UInt64]
    private let strictMask: UInt64
    private let looseMask: UInt64

    /// Chunk sizes must satisfy `64 <= min < average < max` with `average` a power of two;
    /// `seed` picks the gear table, so two repositories with different seeds cut differently.
    public init(minSize: Int, averageSize: Int, maxSize: Int, seed: UInt64) {
        precondition(minSize >= 64 && minSize < averageSize && averageSize < maxSize)
        precondition(averageSize & (averageSize - 1) == 0, "average chunk size must be a power of two")
        self.minSize = minSize
        self.averageSize = averageSize
        self.maxSize = maxSize
        var state = seed
        gear = (0..<256).map { _ in Chunker.splitMix(&state) }
        let bits = averageSize.trailingZeroBitCount
        // Harder to cut before the average size, easier after: sizes cluster around it.
        strictMask = Chunker.topBits(bits + 2)
        looseMask = Chunker.topBits(bits - 2)
    }

    /// The length of the next chunk at the start of `data`, or nil if more bytes are needed
    /// to decide. At end of input the caller takes the remainder as the last chunk.
    public func nextCut(_ data: UnsafeRawBufferPointer) -> Int? {
        let count = data.count
        if count <= minSize { return nil }
        let normalEnd = Swift.min(averageSize, count)
        let end = Swift.min(maxSize, count)
        return gear.withUnsafeBufferPointer { table -> Int? in
            let bytes = data.baseAddress!.assumingMemoryBound(to: UInt8.self)
            let gear = table.baseAddress!
            var hash: UInt64 = 0
            var index = minSize
            while index < normalEnd {
                hash = (hash &<< 1) &+ gear[Int(bytes[index])]
                if hash & strictMask == 0 { return index + 1 }
                index += 1
            }
            while index < end {
                hash = (hash &<< 1) &+ gear[Int(bytes[index])]
                if hash & looseMask == 0 { return index + 1 }
                index += 1
            }
            return end == maxSize ? maxSize : nil
        }
    }

    private static func topBits(_ count: Int) -> UInt64 {
        count <= 0 ? 0 : ~UInt64(0) << UInt64(64 - count)
    }

    private static func splitMix(_ state: inout UInt64) -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
