import ArgumentParser
import Foundation
import LifeboatAgent
import LifeboatCore
import LifeboatJournal

/// `lifeboat journal --dir DIR [--from POS] [--json]`: lists a journal's records.
struct JournalList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "journal",
        abstract: "List the records of a workload's journal (for debugging a workload).",
        discussion:
            "Reads the journal without changing it; a running agent may keep appending. Positions are EPOCH:SEQ. See Docs/journal-format.md and Docs/capture.md."
    )
    @Option(help: "The journal directory (a workload's journal_dir).") var dir: String
    @Option(help: "First position to list, EPOCH:SEQ or SEQ (default: the first record).") var from: String?
    @Option(help: "List at most this many records.") var limit: Int?
    @Flag(help: "Print as JSON (one array).") var json = false

    func run() throws {
        var firstSeq: UInt64 = 1
        if let from {
            guard let position = Position(parsing: from) ?? UInt64(from).map({ Position(epoch: 0, seq: $0) }) else {
                throw LifeboatError(
                    .badInput, "--from \(from) is not a position", hint: "write EPOCH:SEQ, e.g. 1:42, or a seq")
            }
            firstSeq = position.seq
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw LifeboatError(.badInput, "journal dir \(dir) does not exist", hint: "give a workload's journal_dir")
        }
        var rows: [[String: String]] = []
        var count = 0
        try JournalReader.read(directory: dir, from: firstSeq) { record in
            if let limit, count >= limit { return false }
            count += 1
            let mutation = try Mutation(record: record)
            if json {
                var row: [String: String] = [
                    "position": "\(record.position)", "kind": mutation.kind.name,
                ]
                for field in mutation.fields { row[field.key] = field.value }
                rows.append(row)
            } else {
                let fields = mutation.fields.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                print("\(record.position)  \(mutation.kind.name)  \(fields)")
            }
            return true
        }
        if json { try Output.json(rows) }
    }
}

/// `lifeboat replay --journal DIR --target DIR [--from SEQ] [--until POS]`: applies journal
/// records to a tree that holds the state right before the first of them.
struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract:
            "Apply a journal's records to a directory tree (a restored snapshot, or an empty dir for a whole journal).",
        discussion:
            "The tree must hold the data dir's state right before the first record applied; a record that does not fit stops the replay with exit 4 and names its position. Run as root: owners and file ids are restored."
    )
    @Option(help: "The journal directory.") var journal: String
    @Option(help: "The tree to change.") var target: String
    @Option(help: "First seq to apply (default: the first record).") var from: UInt64 = 1
    @Option(help: "Last position to apply, EPOCH:SEQ or SEQ (default: the end).") var until: String?

    func run() throws {
        let last = try parseUntil(until)
        let started = Date()
        let replayed = try JournalReplay.replay(journal: journal, onto: target, from: from, until: last)
        let lastApplied = replayed.last
        if let last, lastApplied.map({ $0.seq < last }) ?? true {
            throw LifeboatError(
                .badInput,
                "the journal ends at \(lastApplied.map { "\($0)" } ?? "nothing") before --until \(until ?? "")",
                hint: "the records up to \(last) are not in \(journal)")
        }
        Output.info(
            "replayed \(replayed.records) records up to \(lastApplied.map { "\($0)" } ?? "nothing") in \(String(format: "%.2f", Date().timeIntervalSince(started))) s"
                + (replayed.skippedNameless > 0 ? " (\(replayed.skippedNameless) on files with no name skipped)" : ""))
    }
}

/// `--until` as a seq: `EPOCH:SEQ` or `SEQ`.
func parseUntil(_ text: String?) throws -> UInt64? {
    guard let text else { return nil }
    if let position = Position(parsing: text) { return position.seq }
    if let seq = UInt64(text) { return seq }
    throw LifeboatError(.badInput, "--until \(text) is not a position", hint: "write EPOCH:SEQ, e.g. 1:42, or a seq")
}

/// `restore --journal`: replays a journal onto a restored snapshot, records after `after`
/// through `until`, with the replay a recovery runs (`JournalReplay` of LifeboatAgent).
enum SnapshotReplay {
    static func run(journal: String, target: String, after: Position, until: UInt64?) throws -> JournalReplay.Result {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: journal, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw LifeboatError(
                .badInput, "journal dir \(journal) does not exist", hint: "give the workload's journal_dir")
        }
        if let until, until < after.seq {
            throw LifeboatError(
                .badInput, "--until \(until) is before the snapshot's position \(after)",
                hint: "choose a position after the snapshot, or a later snapshot")
        }
        let result = try JournalReplay.replay(
            journal: journal, onto: target, from: after.seq + 1, until: until, requireFirst: true)
        if let until, (result.last?.seq ?? after.seq) < until {
            throw LifeboatError(
                .badInput,
                "the journal in \(journal) ends at \(result.last.map { "\($0)" } ?? "the snapshot's position \(after)") before --until \(until)",
                hint: "the records up to \(until) are not in this journal")
        }
        return result
    }
}
