import CLifeboatPosix
import Foundation
import Glibc
public import LifeboatCore
import LifeboatSystem
public import Synchronization

/// How a backup picks the snapshot whose unchanged files it reuses without reading them.
public enum ParentChoice: Sendable {
    /// The newest snapshot of the same host, workload and path.
    case automatic
    case none
    case snapshot(String)
}

/// Who and what a backup is for.
public struct BackupOptions: Sendable {
    public var host: String
    public var workload: String
    public var tags: [String]
    public var parent: ParentChoice
    public var position: Position?
    public var epoch: UInt64
    public var lockWait: Double

    public init(
        host: String, workload: String = "", tags: [String] = [], parent: ParentChoice = .automatic,
        position: Position? = nil, epoch: UInt64 = 0, lockWait: Double = 0
    ) {
        self.host = host
        self.workload = workload
        self.tags = tags
        self.parent = parent
        self.position = position
        self.epoch = epoch
        self.lockWait = lockWait
    }
}

/// Live counters of a running backup or restore, read by a progress printer on another thread.
public final class TransferProgress: Sendable {
    public let files = Atomic<UInt64>(0)
    public let bytes = Atomic<UInt64>(0)
    public let newBytes = Atomic<UInt64>(0)
    public let started = monotonicNow()

    public init() {}

    public static func monotonicNow() -> Double { monotonicSeconds() }
}

/// What a finished backup reports.
public struct BackupResult: Sendable {
    public var id: ObjectID
    public var snapshot: Snapshot
    /// One message per source entry that could not be read (they are not in the snapshot).
    public var unreadable: [String]
}

extension Repository {
    /// Backs up the directory `source` and commits a snapshot.
    ///
    /// Reads only files that changed since the parent snapshot, stores only chunks the
    /// repository lacks, and commits in the order packs → index → snapshot, checking
    /// before each commit step that its lock lease has not lapsed.
    public func backup(
        source: String, options: BackupOptions, progress: TransferProgress = TransferProgress(),
        warn: @escaping @Sendable (String) -> Void = { _ in }
    ) throws -> BackupResult {
        var rootStat = stat()
        guard stat(source, &rootStat) == 0 else {
            throw LifeboatError(
                .badInput, "cannot back up \(source): \(errnoText(errno))", hint: "give an existing directory")
        }
        guard (rootStat.st_mode & S_IFMT) == S_IFDIR else {
            throw LifeboatError(
                .badInput, "cannot back up \(source): not a directory", hint: "give the data directory to back up")
        }
        let absolute =
            realpath(source, nil).map { pointer -> String in
                defer { free(pointer) }
                return String(cString: pointer)
            } ?? source
        let lock = try RepositoryLock.acquire(
            self, operation: "backup", exclusive: false, wait: options.lockWait, epoch: options.epoch, warn: warn)
        defer { try? lock.release() }
        let index = try loadIndex()
        let parent = try findParent(options: options, path: absolute, warn: warn)
        let archiver = try Archiver(repository: self, index: index, progress: progress, warn: warn)
        defer { archiver.abandon() }
        let started = monotonicSeconds()
        var parentNodes: [[UInt8]: Node]?
        if let parent {
            parentNodes = archiver.loadParentTree(parent.snapshot.treeID, what: "parent snapshot \(parent.id.short)")
        }
        let treeID: ObjectID
        do {
            treeID = try archiver.archive(FSPath(absolute), parentNodes: parentNodes)
        } catch let error as SourceUnreadable {
            throw LifeboatError(
                .badInput, "cannot back up \(absolute): \(error.message)", hint: "run as a user that can read it")
        }
        let packs = try archiver.finish()
        try lock.ensureHeld()
        if !packs.isEmpty { try writeIndex(packs) }
        var rootXattrs: [String: String]?
        if let xattrs = try? FileMetadata.xattrs(FSPath(absolute)), !xattrs.isEmpty {
            rootXattrs = Dictionary(
                uniqueKeysWithValues: xattrs.map { (String(decoding: $0.name, as: UTF8.self), Hex.encode($0.value)) })
        }
        var stats = archiver.stats
        stats.durationSeconds = monotonicSeconds() - started
        let snapshot = Snapshot(
            version: Snapshot.formatVersion, time: .now(), host: options.host, workload: options.workload,
            tags: options.tags, paths: [absolute], parent: parent?.id.hex, tree: treeID.hex,
            root: Snapshot.RootMetadata(
                mode: UInt32(rootStat.st_mode & 0o7777), uid: rootStat.st_uid, gid: rootStat.st_gid,
                mtime: Timestamp(seconds: Int64(rootStat.st_mtim.tv_sec), nanoseconds: Int32(rootStat.st_mtim.tv_nsec)),
                xattrs: rootXattrs),
            position: options.position, epoch: options.epoch, summary: stats, program: LifeboatVersion.string)
        try lock.ensureHeld()
        let id = try writeSnapshot(snapshot)
        return BackupResult(id: id, snapshot: snapshot, unreadable: archiver.unreadable)
    }

    private func findParent(options: BackupOptions, path: String, warn: (String) -> Void) throws -> SnapshotRecord? {
        switch options.parent {
        case .none:
            return nil
        case .snapshot(let reference):
            return try resolveSnapshot(reference)
        case .automatic:
            return try listSnapshots().last {
                $0.snapshot.host == options.host && $0.snapshot.workload == options.workload
                    && $0.snapshot.paths == [path]
            }
        }
    }
}

/// The program's version, written into every snapshot.
public enum LifeboatVersion {
    public static let string = "lifeboat 0.1.0"
}
