public import LifeboatCore
import LifeboatJournal

/// Applies a journal's records to a tree that holds the state right before the first of them:
/// the one replay that a recovery, `lifeboat restore --journal` and `lifeboat replay` all run.
public enum JournalReplay {
    /// What a replay applied.
    public struct Result: Sendable, Equatable {
        /// Records applied.
        public var records: Int
        /// The last record applied (nil: none).
        public var last: Position?
        /// Records on files that had no name any more (skipped, as the journal allows).
        public var skippedNameless: Int
    }

    /// Replays the records of the journal in `journal` from seq `from` through `until` (nil:
    /// the end) onto `target`. With `requireFirst`, the first record read must be exactly seq
    /// `from` (a restored snapshot needs every record after its position); otherwise the
    /// replay throws before it applies anything. Files are closed also on a throw.
    public static func replay(
        journal: String, onto target: String, from: UInt64, until: UInt64? = nil, requireFirst: Bool = false
    ) throws -> Result {
        let replayer = try Replayer(root: target)
        defer { replayer.closeFiles() }
        var last: Position?
        var first = true
        try JournalReader.read(directory: journal, from: from) { record in
            if first && requireFirst {
                guard record.position.seq == from else {
                    throw LifeboatError(
                        .badInput,
                        "the journal in \(journal) starts at \(record.position), but the snapshot needs the records from seq \(from)",
                        hint: "the records in between were removed; use a newer snapshot or a peer's journal")
                }
            }
            first = false
            if let until, record.position.seq > until { return false }
            try replayer.apply(record)
            last = record.position
            return true
        }
        return Result(records: replayer.applied, last: last, skippedNameless: replayer.skippedNameless)
    }
}
