/// A point in a workload's journal: `epoch` fences primaries, `seq` grows by one per record.
public struct Position: Hashable, Comparable, Codable, Sendable, CustomStringConvertible {
    public var epoch: UInt64
    public var seq: UInt64

    public init(epoch: UInt64, seq: UInt64) {
        self.epoch = epoch
        self.seq = seq
    }

    public static func < (lhs: Position, rhs: Position) -> Bool {
        (lhs.epoch, lhs.seq) < (rhs.epoch, rhs.seq)
    }

    /// `epoch:seq`, the form operators type.
    public var description: String { "\(epoch):\(seq)" }

    /// Parses `epoch:seq`.
    public init?(parsing text: String) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let epoch = UInt64(parts[0]), let seq = UInt64(parts[1]) else { return nil }
        self.init(epoch: epoch, seq: seq)
    }
}
