import ArgumentParser
import Foundation
import LifeboatAgent
import LifeboatCore
import LifeboatRepository

struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Create a new, empty repository.")
    @OptionGroup var repository: RepositoryOptions

    func run() throws {
        let path = try repository.path
        let repo = try Repository.initialize(at: path)
        print("created repository \(repo.config.id.prefix(8)) at \(path) (format \(repo.config.version))")
    }
}

struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Snapshot a directory, or ask an agent to snapshot a captured workload now.",
        discussion:
            "The last line on stdout is the new snapshot's id. With --agent URL --workload W, the agent reads only what changed since its previous snapshot and records the journal position the snapshot is exact at."
    )
    @Option(help: "Ask this agent (its API URL, e.g. http://127.0.0.1:7440) to snapshot --workload.")
    var agent: String?
    @OptionGroup var repository: RepositoryOptions
    @Option(help: "Host name recorded in the snapshot (default: this host).") var host: String?
    @Option(help: "Workload name recorded in the snapshot.") var workload = ""
    @Option(name: .customLong("tag"), help: "A tag (repeatable).") var tags: [String] = []
    @Option(
        help: "Parent snapshot whose unchanged files are reused (default: newest of the same host, workload and path).")
    var parent: String?
    @Flag(help: "Read every file, ignoring any parent snapshot.") var force = false
    @Option(help: "Seconds to wait for a conflicting lock.") var lockWait: Double = 0
    @Flag(help: "Print the result as JSON.") var json = false
    @Argument(help: "The directory to back up (not with --agent).") var path: String?

    func run() throws {
        if let agent {
            guard path == nil else {
                throw LifeboatError(
                    .badInput, "give either a directory or --agent, not both",
                    hint: "the agent snapshots the workload's data dir itself")
            }
            guard !workload.isEmpty else {
                throw LifeboatError(
                    .badInput, "--agent needs --workload", hint: "name the workload in the agent's config")
            }
            return try AgentBackup.snapshot(agent: agent, workload: workload, json: json)
        }
        guard let path else {
            throw LifeboatError(
                .badInput, "no directory to back up", hint: "give a directory, or --agent URL --workload W")
        }
        let repo = try repository.open()
        let parentChoice: ParentChoice = force ? .none : (parent.map { .snapshot($0) } ?? .automatic)
        let options = BackupOptions(
            host: host ?? currentHostName(), workload: workload, tags: tags, parent: parentChoice, lockWait: lockWait)
        let counters = TransferProgress()
        let progress = Progress(counters, verb: "backed up")
        let result: BackupResult
        do {
            result = try repo.backup(source: path, options: options, progress: counters, warn: Output.warning)
        } catch {
            progress.finish()
            throw error
        }
        progress.finish()
        let s = result.snapshot.summary
        if json {
            try Output.json(BackupJSON(id: result.id.hex, summary: s, unreadable: result.unreadable))
        } else {
            print(
                "files: \(s.files) (\(s.filesUnchanged) unchanged), directories: \(s.directories), other: \(s.otherEntries)"
            )
            print(
                "data: \(ByteSize.format(s.totalBytes)) in files, \(ByteSize.format(s.bytesRead)) read, \(ByteSize.format(s.newBytes)) new, \(ByteSize.format(s.storedBytes)) stored"
            )
            print(
                "time: \(ByteSize.formatFixed(s.durationSeconds, digits: 2)) s (\(Output.rate(s.bytesRead, s.durationSeconds)) read)"
            )
            print(result.id.hex)
        }
        if !result.unreadable.isEmpty {
            throw LifeboatError(
                .partialBackup,
                "snapshot \(result.id.short) committed, but \(result.unreadable.count) entries could not be read and are not in it",
                hint: "see the warnings above")
        }
    }

    struct BackupJSON: Encodable {
        var id: String
        var summary: Snapshot.Summary
        var unreadable: [String]
    }
}

struct Snapshots: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List snapshots, oldest first.")
    @OptionGroup var repository: RepositoryOptions
    @Option(help: "Only snapshots of this host.") var host: String?
    @Option(help: "Only snapshots of this workload.") var workload: String?
    @Flag(help: "Print as JSON.") var json = false

    func run() throws {
        let repo = try repository.open()
        let records = try repo.listSnapshots().filter {
            (host == nil || $0.snapshot.host == host) && (workload == nil || $0.snapshot.workload == workload)
        }
        if json {
            try Output.json(records.map { SnapshotJSON(id: $0.id.hex, snapshot: $0.snapshot) })
            return
        }
        let rows = records.map { record -> [String] in
            let s = record.snapshot
            return [
                record.id.short, s.time.short, s.host, s.workload.isEmpty ? "-" : s.workload,
                s.tags.joined(separator: ","), ByteSize.format(s.summary.totalBytes), s.paths.joined(separator: " "),
            ]
        }
        Table.print(header: ["ID", "Time (UTC)", "Host", "Workload", "Tags", "Size", "Path"], rows: rows)
        print("\(records.count) snapshots")
    }

    struct SnapshotJSON: Encodable {
        var id: String
        var snapshot: Snapshot

        func encode(to encoder: any Encoder) throws {
            try snapshot.encode(to: encoder)
            var container = encoder.container(keyedBy: Key.self)
            try container.encode(id, forKey: .id)
        }

        enum Key: String, CodingKey { case id }
    }
}

struct Ls: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the files in a snapshot.")
    @OptionGroup var repository: RepositoryOptions
    @Flag(name: .shortAndLong, help: "Show mode, owner, size and mtime.") var long = false
    @Flag(help: "Print one JSON object per line.") var json = false
    @Argument(help: "Snapshot id, unique prefix, or `latest`.") var snapshot: String
    @Argument(help: "Only entries below this path.") var path: String?

    func run() throws {
        let repo = try repository.open()
        let record = try repo.resolveSnapshot(snapshot)
        let browser = try SnapshotBrowser(repository: repo)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        try browser.list(record, subpath: path) { entry in
            let node = entry.node
            if json {
                let object = EntryJSON(
                    path: entry.path, type: String(describing: node.kind), mode: node.mode, uid: node.uid,
                    gid: node.gid,
                    size: node.size, mtime: node.mtime.iso8601,
                    target: node.kind == .symlink ? String(decoding: node.linkTarget, as: UTF8.self) : nil)
                print(String(decoding: try encoder.encode(object), as: UTF8.self))
            } else if long {
                let mode = node.kind.letter + String(node.mode, radix: 8)
                let target = node.kind == .symlink ? " -> " + String(decoding: node.linkTarget, as: UTF8.self) : ""
                print("\(mode) \(node.uid):\(node.gid) \(node.size) \(node.mtime.short) \(entry.path)\(target)")
            } else {
                print(entry.path)
            }
        }
    }

    struct EntryJSON: Encodable {
        var path: String
        var type: String
        var mode: UInt32
        var uid: UInt32
        var gid: UInt32
        var size: UInt64
        var mtime: String
        var target: String?
    }
}

struct Diff: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show what changed between two snapshots.",
        discussion: "Lines: `+ path` added, `- path` removed, `M path` contents or metadata changed.")
    @OptionGroup var repository: RepositoryOptions
    @Flag(help: "Print as JSON.") var json = false
    @Argument(help: "The older snapshot.") var first: String
    @Argument(help: "The newer snapshot.") var second: String

    func run() throws {
        let repo = try repository.open()
        let old = try repo.resolveSnapshot(first)
        let new = try repo.resolveSnapshot(second)
        let changes = try SnapshotBrowser(repository: repo).diff(old, new)
        if json {
            try Output.json(changes.map { ["change": $0.kind.rawValue, "path": $0.path] })
            return
        }
        for change in changes { print("\(change.kind.rawValue) \(change.path)") }
        let count = { (kind: TreeChange.Kind) in changes.filter { $0.kind == kind }.count }
        print("\(count(.added)) added, \(count(.removed)) removed, \(count(.modified)) modified")
    }
}

struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore a snapshot, or one path of it, into an empty directory.")
    @OptionGroup var repository: RepositoryOptions
    @Option(help: "An empty or new directory to restore into.") var target: String
    @Option(help: "With `latest`: the newest of this host.") var host: String?
    @Option(help: "With `latest`: the newest of this workload.") var workload: String?
    @Option(help: "After restoring, replay this journal dir from the snapshot's position on.") var journal: String?
    @Option(help: "With --journal: replay up to this position, EPOCH:SEQ or SEQ (default: the journal's end).")
    var until: String?
    @Flag(help: "Print the result as JSON.") var json = false
    @Argument(help: "SNAPSHOT[:SUBPATH]: an id, unique prefix or `latest`, optionally with a path inside it.")
    var snapshot: String

    func run() throws {
        let repo = try repository.open()
        let parts = snapshot.split(separator: ":", maxSplits: 1).map(String.init)
        let record = try repo.resolveSnapshot(parts.first ?? "", host: host, workload: workload)
        if until != nil && journal == nil {
            throw LifeboatError(.badInput, "--until needs --journal", hint: "give the journal dir to replay")
        }
        if journal != nil {
            guard parts.count == 1 else {
                throw LifeboatError(
                    .badInput, "--journal replays a whole data dir: restore the whole snapshot, not a path")
            }
            guard record.snapshot.position != nil else {
                throw LifeboatError(
                    .badInput, "snapshot \(record.id.short) has no journal position (it was not taken by an agent)",
                    hint: "restore it without --journal, or choose a snapshot taken with `lifeboat backup --agent`")
            }
        }
        let counters = TransferProgress()
        let progress = Progress(counters, verb: "restored", total: record.snapshot.summary.totalBytes)
        let started = TransferProgress.monotonicNow()
        let result: RestoreResult
        do {
            result = try repo.restore(
                snapshot: record, subpath: parts.count > 1 ? parts[1] : nil, target: target, progress: counters)
        } catch {
            progress.finish()
            throw error
        }
        progress.finish()
        for failure in result.failures { Output.warning("not restored: \(failure.path): \(failure.error.description)") }
        if !result.failures.isEmpty {
            let integrity = result.failures.contains { $0.error.kind == .integrity }
            throw LifeboatError(
                integrity ? .integrity : .operationFailed,
                "\(result.failures.count) entries of snapshot \(record.id.short) could not be restored and were not written",
                hint: integrity ? "run `lifeboat check --read-data` to see the damage" : "see the warnings above")
        }
        var replayed: JournalReplay.Result?
        if let journal, let position = record.snapshot.position {
            replayed = try SnapshotReplay.run(
                journal: journal, target: target, after: position, until: try parseUntil(until))
        }
        let seconds = TransferProgress.monotonicNow() - started
        if json {
            try Output.json(
                RestoreJSON(
                    snapshot: record.id.hex, files: result.files, directories: result.directories, bytes: result.bytes,
                    seconds: seconds, failed: result.failures.map { ["path": $0.path, "error": $0.error.description] },
                    position: record.snapshot.position.map { "\($0)" }, replayedRecords: replayed?.records,
                    replayedThrough: replayed?.last.map { "\($0)" }))
        } else {
            print(
                "restored snapshot \(record.id.short) to \(target): \(result.files) files, \(result.directories) directories, \(ByteSize.format(result.bytes)) in \(ByteSize.formatFixed(seconds, digits: 2)) s (\(Output.rate(result.bytes, seconds)))"
            )
            if let replayed {
                print(
                    "replayed \(replayed.records) journal records after \(record.snapshot.position.map { "\($0)" } ?? "-") through \(replayed.last.map { "\($0)" } ?? "nothing new")"
                )
            }
        }
    }

    struct RestoreJSON: Encodable {
        var snapshot: String
        var files: UInt64
        var directories: UInt64
        var bytes: UInt64
        var seconds: Double
        var failed: [[String: String]]
        var position: String?
        var replayedRecords: Int?
        var replayedThrough: String?

        enum CodingKeys: String, CodingKey {
            case snapshot, files, directories, bytes, seconds, failed, position
            case replayedRecords = "replayed_records"
            case replayedThrough = "replayed_through"
        }
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Verify the repository.",
        discussion: "Without --read-data: structure and every tree. With it: every stored byte.")
    @OptionGroup var repository: RepositoryOptions
    @Flag(help: "Read and verify every blob of every pack.") var readData = false
    @Flag(help: "Print the report as JSON.") var json = false

    func run() throws {
        let repo = try repository.open()
        let counters = TransferProgress()
        let progress = Progress(counters, verb: "verified")
        let report: CheckReport
        do {
            report = try repo.check(readData: readData, progress: counters)
        } catch {
            progress.finish()
            throw error
        }
        progress.finish()
        if json {
            try Output.json(
                CheckJSON(
                    ok: report.errors.isEmpty, snapshots: report.snapshots, packs: report.packs, blobs: report.blobs,
                    bytesRead: report.bytesRead, errors: report.errors, warnings: report.warnings))
        } else {
            for warning in report.warnings { Output.warning(warning) }
            for error in report.errors { print("error: \(error)") }
            print(
                "\(report.snapshots) snapshots, \(report.packs) packs, \(report.blobs) blobs checked"
                    + (readData ? ", \(ByteSize.format(report.bytesRead)) read and verified" : "")
                    + ": \(report.errors.isEmpty ? "no errors" : "\(report.errors.count) errors")")
        }
        if !report.errors.isEmpty {
            throw LifeboatError(
                .integrity, "check found \(report.errors.count) errors in \(repo.path)",
                hint: "see the lines starting with `error:`")
        }
    }

    struct CheckJSON: Encodable {
        var ok: Bool
        var snapshots: Int
        var packs: Int
        var blobs: Int
        var bytesRead: UInt64
        var errors: [String]
        var warnings: [String]
    }
}

struct Forget: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Remove snapshots the retention policy does not keep.")
    @OptionGroup var repository: RepositoryOptions
    @Option(help: "Keep the N newest snapshots.") var keepLast = 0
    @Option(help: "Keep the newest snapshot of each of the last N hours.") var keepHourly = 0
    @Option(help: "Keep the newest snapshot of each of the last N days.") var keepDaily = 0
    @Option(help: "Keep the newest snapshot of each of the last N weeks.") var keepWeekly = 0
    @Option(help: "Keep the newest snapshot of each of the last N months.") var keepMonthly = 0
    @Option(help: "Keep the newest snapshot of each of the last N years.") var keepYearly = 0
    @Flag(help: "Only show what would be removed.") var dryRun = false
    @Flag(help: "Prune afterwards: delete the data the removed snapshots alone used.") var prune = false
    @Option(help: "Seconds to wait for a conflicting lock.") var lockWait: Double = 0
    @Flag(help: "Print as JSON.") var json = false

    func validate() throws {
        for value in [keepLast, keepHourly, keepDaily, keepWeekly, keepMonthly, keepYearly] where value < 0 {
            throw ValidationError("keep counts must be 0 or more")
        }
    }

    func run() throws {
        let repo = try repository.open()
        let policy = RetentionPolicy(
            last: keepLast, hourly: keepHourly, daily: keepDaily, weekly: keepWeekly, monthly: keepMonthly,
            yearly: keepYearly)
        let (decisions, report) = try repo.forget(
            policy: policy, dryRun: dryRun, prune: prune, lockWait: lockWait, warn: Output.warning)
        if json {
            try Output.json(
                decisions.map {
                    ForgetJSON(
                        id: $0.record.id.hex, time: $0.record.snapshot.time.iso8601, keep: $0.keep, reasons: $0.reasons)
                })
            return
        }
        for decision in decisions {
            let s = decision.record.snapshot
            let verdict =
                decision.keep
                ? "keep   (\(decision.reasons.joined(separator: ", ")))" : (dryRun ? "would remove" : "removed")
            print("\(decision.record.id.short) \(s.time.short) \(s.host) \(s.workload) \(verdict)")
        }
        if let report { PruneCommand.printReport(report, dryRun: false) }
    }

    struct ForgetJSON: Encodable {
        var id: String
        var time: String
        var keep: Bool
        var reasons: [String]
    }
}

struct PruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune", abstract: "Delete data no snapshot references.")
    @OptionGroup var repository: RepositoryOptions
    @Option(help: "Repack packs with more than this percentage unused (0-100).") var maxUnused: Double = 10
    @Flag(help: "Only show what would be deleted.") var dryRun = false
    @Option(help: "Seconds to wait for a conflicting lock.") var lockWait: Double = 0

    func validate() throws {
        guard (0...100).contains(maxUnused) else { throw ValidationError("--max-unused must be between 0 and 100") }
    }

    func run() throws {
        let repo = try repository.open()
        let report = try repo.prune(
            maxUnusedFraction: maxUnused / 100, dryRun: dryRun, lockWait: lockWait, warn: Output.warning)
        PruneCommand.printReport(report, dryRun: dryRun)
    }

    static func printReport(_ report: PruneReport, dryRun: Bool) {
        let verb = dryRun ? "would delete" : "deleted"
        print(
            "\(verb) \(report.packsDeleted) packs (\(report.packsRepacked) repacked into \(report.newPacks) new), freeing \(ByteSize.format(report.bytesFreed)); kept \(report.packsKept) packs with \(ByteSize.format(report.unusedBytesKept)) unused"
        )
    }
}

typealias Prune = PruneCommand

struct Unlock: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List repository locks; remove stale ones.")
    @OptionGroup var repository: RepositoryOptions
    @Flag(help: "Remove locks whose holder stopped refreshing them or no longer runs.") var removeStale = false
    @Flag(help: "Print as JSON.") var json = false

    func run() throws {
        let repo = try repository.open()
        var rows: [LockJSON] = []
        for lock in try repo.listLocks() {
            let stale = lock.isStale()
            let removed = stale && removeStale
            if removed { try repo.removeLock(lock.id) }
            rows.append(
                LockJSON(
                    id: lock.id.hex, host: lock.info.host, pid: lock.info.pid, operation: lock.info.operation,
                    exclusive: lock.info.exclusive, time: lock.info.time.iso8601, refreshed: lock.refreshed.iso8601,
                    stale: stale, removed: removed))
            if !json { print("\(removed ? "removed stale" : stale ? "stale" : "live") \(lock.summary)") }
        }
        if json { try Output.json(rows) }
    }

    struct LockJSON: Encodable {
        var id: String
        var host: String
        var pid: Int32
        var operation: String
        var exclusive: Bool
        var time: String
        var refreshed: String
        var stale: Bool
        var removed: Bool
    }
}

struct Digest: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a deterministic digest of a directory tree (contents and metadata).",
        discussion:
            "Covers names, types, contents, permission bits, owners, mtimes, symlink targets, hard links and xattrs; not atime, ctime or inode numbers."
    )
    @Flag(help: "Print as JSON.") var json = false
    @Argument(help: "The directory.") var path: String

    func run() throws {
        let result = try TreeDigest.compute(path)
        if json {
            try Output.json([
                "digest": result.digest.hex, "entries": String(result.entries), "bytes": String(result.bytes),
            ])
        } else {
            print("\(result.digest.hex)  \(path)")
        }
    }
}

/// A plain text table with aligned columns.
enum Table {
    static func print(header: [String], rows: [[String]]) {
        var widths = header.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                i == cells.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count)
            }.joined(separator: "  ")
        }
        Swift.print(line(header))
        Swift.print(String(repeating: "-", count: widths.reduce(0, +) + 2 * (widths.count - 1)))
        for row in rows { Swift.print(line(row)) }
    }
}
