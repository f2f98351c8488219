import LifeboatCore

/// Reads a journal directory without changing it (a live writer may be appending).
public enum JournalReader {
    /// Calls `body` for each record with `seq >= from`, in order, until it returns false.
    /// A torn tail of the last segment ends the reading; damage anywhere else throws.
    public static func read(directory: String, from: UInt64 = 1, _ body: (JournalRecord) throws -> Bool) throws {
        let segments = try Segments.list(directory)
        var previous: Position?
        for (index, segment) in segments.enumerated() {
            let nextFirst = index + 1 < segments.count ? segments[index + 1].firstSeq : UInt64.max
            if nextFirst <= from {
                previous = Position(epoch: 0, seq: nextFirst - 1)
                continue
            }
            var stop = false
            let scan = try Segments.scan(
                try Segments.read(segment.path), firstSeq: segment.firstSeq, path: segment.path,
                isLast: index == segments.count - 1, after: previous.map { Position(epoch: 0, seq: $0.seq) }
            ) { record in
                if stop || record.position.seq < from { return }
                if try !body(record) { stop = true }
            }
            if stop { return }
            previous = scan.last
        }
    }
}
