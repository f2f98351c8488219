import CLifeboatPosix
import Foundation
import Glibc
public import LifeboatCore
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
            throw LifeboatError(.badInput, "cannot back up \(source): \(errnoText(errno))", hint: "give an existing directory")
        }
        guard (rootStat.st_mode & S_IFMT) == S_IFDIR else {
            throw LifeboatError(.badInput, "cannot back up \(source): not a directory", hint: "give the data directory to back up")
        }
        let absolute = realpath(source, nil).map { pointer -> String in
            defer { free(pointer) }
            return String(cString: pointer)
        } ?? source
        let lock = try RepositoryLock.acquire(self, operation: "backup", exclusive: false, wait: options.lockWait, epoch: options.epoch, warn: warn)
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
            treeID = try archiver.archiveDirectory(FSPath(absolute), parentNodes: parentNodes)
        } catch let error as SourceUnreadable {
            throw LifeboatError(.badInput, "cannot back up \(absolute): \(error.message)", hint: "run as a user that can read it")
        }
        let packs = try archiver.finish()
        try lock.ensureHeld()
        if !packs.isEmpty { try writeIndex(packs) }
        var rootXattrs: [String: String]?
        if let xattrs = try? FileMetadata.xattrs(FSPath(absolute)), !xattrs.isEmpty {
            rootXattrs = Dictionary(uniqueKeysWithValues: xattrs.map { (String(decoding: $0.name, as: UTF8.self), Hex.encode($0.value)) })
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
                $0.snapshot.host == options.host && $0.snapshot.workload == options.workload && $0.snapshot.paths == [path]
            }
        }
    }
}

/// The program's version, written into every snapshot.
public enum LifeboatVersion {
    public static let string = "lifeboat 0.1.0"
}

/// A regular file being backed up; its content pieces are filled in as its chunks are hashed.
private final class FileWork {
    var node: Node
    var failed = false

    init(node: Node) { self.node = node }
}

/// A source directory that could not be listed: reported and left out, never fatal below the root.
struct SourceUnreadable: Error {
    let message: String
}

/// One entry of a directory under construction.
private enum Entry {
    case done(Node)
    case file(FileWork)
    /// A further hard link to a file already being read: same contents.
    case link(Node, FileWork)
}

/// A chunk waiting in the batch buffer.
private struct PendingChunk {
    let file: FileWork
    let slot: Int
    let offset: Int
    let length: Int
}

/// Walks a tree, cuts files into chunks, and stores the new ones. Single-threaded except
/// inside `flush`, which hashes and compresses a batch of chunks on all cores.
private final class Archiver {
    let repository: Repository
    let index: BlobIndex
    let reader: BlobReader
    let progress: TransferProgress
    let warn: @Sendable (String) -> Void
    let isRoot = geteuid() == 0

    /// Bytes of file data collected before hashing and compressing them together.
    static let batchCapacity = 32 << 20
    private let buffer: UnsafeMutableRawBufferPointer
    private var used = 0
    private var chunks: [PendingChunk] = []
    /// Blobs in packs not yet finished (not yet in `index`).
    private var pending = Set<ObjectID>()
    private var dataPack: PackWriter?
    private var treePack: PackWriter?
    private var written: [(id: ObjectID, entries: [PackEntry])] = []
    private var hardLinks: [HardLinkKey: FileWork] = [:]
    var stats = Snapshot.Summary(
        files: 0, directories: 0, otherEntries: 0, totalBytes: 0, bytesRead: 0, filesUnchanged: 0, newBlobs: 0,
        newBytes: 0, storedBytes: 0, durationSeconds: 0, unreadable: 0)
    private(set) var unreadable: [String] = []

    struct HardLinkKey: Hashable {
        let device: UInt64
        let inode: UInt64
    }

    init(repository: Repository, index: BlobIndex, progress: TransferProgress, warn: @escaping @Sendable (String) -> Void) throws {
        self.repository = repository
        self.index = index
        self.reader = BlobReader(repository: repository, index: index)
        self.progress = progress
        self.warn = warn
        buffer = .allocate(byteCount: Archiver.batchCapacity, alignment: 64)
    }

    deinit { buffer.deallocate() }

    private func report(_ message: String) {
        unreadable.append(message)
        stats.unreadable += 1
        warn(message)
    }

    /// The parent's entries by name, or nil (with a warning) when its tree cannot be read.
    func loadParentTree(_ id: ObjectID, what: String) -> [[UInt8]: Node]? {
        do {
            let nodes = try TreeFormat.decode(try reader.read(id), id: id)
            return Dictionary(nodes.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        } catch {
            warn("cannot use \(what): \(error); files there are read in full")
            return nil
        }
    }

    /// Backs up one directory and returns its tree blob id.
    func archiveDirectory(_ path: FSPath, parentNodes: [[UInt8]: Node]?) throws -> ObjectID {
        let names: [[UInt8]]
        do {
            names = try Posix.listDirectory(path.string).sorted { $0.lexicographicallyPrecedes($1) }
        } catch let error as LifeboatError {
            throw SourceUnreadable(message: error.message)
        }
        var entries: [Entry] = []
        entries.reserveCapacity(names.count)
        for name in names {
            let childPath = path.appending(name)
            let st: stat
            switch FileMetadata.lstat(childPath) {
            case .success(let value): st = value
            case .failure(let error):
                report("skipped \(childPath): \(error.message)")
                continue
            }
            guard let kind = FileMetadata.kind(of: st) else { continue }
            var node = FileMetadata.node(name: name, stat: st, kind: kind)
            do {
                node.xattrs = try FileMetadata.xattrs(childPath)
            } catch let error as LifeboatError {
                report("skipped \(childPath): \(error.message)")
                continue
            }
            let parentNode = parentNodes?[name]
            switch kind {
            case .directory:
                var parentChildren: [[UInt8]: Node]?
                if let parentNode, parentNode.kind == .directory, let subtree = parentNode.subtree {
                    parentChildren = loadParentTree(subtree, what: "the previous tree of \(childPath)")
                }
                do {
                    node.subtree = try archiveDirectory(childPath, parentNodes: parentChildren)
                } catch let error as SourceUnreadable {
                    report("skipped \(childPath): \(error.message)")
                    continue
                }
                stats.directories += 1
                entries.append(.done(node))
            case .symlink:
                do {
                    node.linkTarget = try FileMetadata.readlink(childPath, size: Int(st.st_size))
                } catch let error as LifeboatError {
                    report("skipped \(childPath): \(error.message)")
                    continue
                }
                stats.otherEntries += 1
                entries.append(.done(node))
            case .file:
                stats.files += 1
                stats.totalBytes += node.size
                if node.links > 1, let first = hardLinks[HardLinkKey(device: node.device, inode: node.inode)] {
                    entries.append(.link(node, first))
                    continue
                }
                let work = FileWork(node: node)
                if let parentNode, unchanged(node, parentNode) {
                    work.node.content = parentNode.content
                    stats.filesUnchanged += 1
                    progress.bytes.add(node.size, ordering: .relaxed)
                } else {
                    readFile(childPath, into: work, stat: st)
                }
                progress.files.add(1, ordering: .relaxed)
                if work.failed { continue }
                if node.links > 1 { hardLinks[HardLinkKey(device: node.device, inode: node.inode)] = work }
                entries.append(.file(work))
            default:
                stats.otherEntries += 1
                entries.append(.done(node))
            }
        }
        if !chunks.isEmpty { try flush() }
        var nodes: [Node] = []
        nodes.reserveCapacity(entries.count)
        for entry in entries {
            switch entry {
            case .done(let node):
                nodes.append(node)
            case .file(let work):
                if !work.failed { nodes.append(work.node) }
            case .link(var node, let first):
                if first.failed { continue }
                node.content = first.node.content
                node.size = first.node.size
                nodes.append(node)
            }
        }
        return try storeTree(TreeFormat.encode(nodes))
    }

    /// True when the parent snapshot's node can stand for this file without reading it.
    private func unchanged(_ node: Node, _ parent: Node) -> Bool {
        guard parent.kind == .file, parent.size == node.size, parent.mtime == node.mtime, parent.ctime == node.ctime,
            parent.inode == node.inode
        else { return false }
        for piece in parent.content {
            if case .blob(let id, _) = piece, !index.contains(id) { return false }
        }
        return true
    }

    /// Reads a file into the batch, cutting it into chunks; holes become hole pieces.
    private func readFile(_ path: FSPath, into work: FileWork, stat st: stat) {
        let fd = path.withCString { Glibc.open($0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | lifeboat_o_noatime()) }
        let descriptor = fd >= 0 ? fd : path.withCString { Glibc.open($0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
        guard descriptor >= 0 else {
            work.failed = true
            report("skipped \(path): \(ioError(errno, "opening", path.string).message)")
            return
        }
        defer { close(descriptor) }
        posix_fadvise(descriptor, 0, 0, POSIX_FADV_SEQUENTIAL)
        let size = UInt64(st.st_size)
        var total: UInt64 = 0
        do {
            for region in dataRegions(descriptor, size: size, allocatedBytes: UInt64(st.st_blocks) * 512) {
                if region.start > total {
                    work.node.content.append(.hole(length: region.start - total))
                    total = region.start
                }
                total += try readRegion(descriptor, start: region.start, length: region.end - region.start, path: path, into: work)
            }
            if total < size {
                work.node.content.append(.hole(length: size - total))
                total = size
            }
            work.node.size = total
            posix_fadvise(descriptor, 0, 0, POSIX_FADV_DONTNEED)
        } catch {
            work.failed = true
            report("skipped \(path): \(error)")
        }
    }

    /// The data regions of a file; for a file with no holes, the whole file in one region.
    private func dataRegions(_ fd: Int32, size: UInt64, allocatedBytes: UInt64) -> [(start: UInt64, end: UInt64)] {
        guard size > 0 else { return [] }
        guard allocatedBytes < size else { return [(0, size)] }
        var regions: [(start: UInt64, end: UInt64)] = []
        var offset: off_t = 0
        while UInt64(offset) < size {
            let dataStart = lseek(fd, offset, lifeboat_seek_data())
            if dataStart < 0 { break }  // ENXIO: only a hole remains
            var holeStart = lseek(fd, dataStart, lifeboat_seek_hole())
            if holeStart < 0 { holeStart = off_t(size) }
            regions.append((UInt64(dataStart), min(UInt64(holeStart), size)))
            offset = holeStart
        }
        if regions.isEmpty && lseek(fd, 0, lifeboat_seek_data()) < 0 && errno != ENXIO { return [(0, size)] }
        return regions
    }

    /// Reads `length` bytes from `start`, adding chunks to the batch; returns the bytes read
    /// (fewer if the file shrank meanwhile).
    private func readRegion(_ fd: Int32, start: UInt64, length: UInt64, path: FSPath, into work: FileWork) throws -> UInt64 {
        var position = start
        var end = start + length
        var cutStart = used
        while true {
            while let cut = repository.chunker.nextCut(UnsafeRawBufferPointer(rebasing: buffer[cutStart..<used])) {
                addChunk(work, offset: cutStart, length: cut)
                cutStart += cut
            }
            if position == end {
                if used > cutStart {
                    addChunk(work, offset: cutStart, length: used - cutStart)
                    cutStart = used
                }
                return position - start
            }
            if used == buffer.count {
                let carry = used - cutStart
                try flush(keepingTail: carry)
                cutStart = 0
            }
            let want = Int(min(UInt64(buffer.count - used), end - position))
            let got = Posix.pread(fd, UnsafeMutableRawBufferPointer(rebasing: buffer[used..<(used + want)]), offset: position)
            if got < 0 { throw ioError(Int32(-got), "reading", path.string) }
            if got == 0 {
                end = position  // the file shrank while it was read: keep what was there
                continue
            }
            used += got
            position += UInt64(got)
            stats.bytesRead += UInt64(got)
            progress.bytes.add(UInt64(got), ordering: .relaxed)
        }
    }

    private func addChunk(_ work: FileWork, offset: Int, length: Int) {
        work.node.content.append(.hole(length: UInt64(length)))  // placeholder until hashed
        chunks.append(PendingChunk(file: work, slot: work.node.content.count - 1, offset: offset, length: length))
    }

    /// Hashes every chunk in the batch, stores the new ones, and empties the batch, moving
    /// the last `keepingTail` bytes (an unfinished chunk) to the front of the buffer.
    private func flush(keepingTail tail: Int = 0) throws {
        let batch = chunks
        let base = UncheckedBox(buffer)
        let ids = SlotArray(count: batch.count, initial: ObjectID(w0: 0, w1: 0, w2: 0, w3: 0))
        let spans = batch.map { ($0.offset, $0.length) }
        try parallelFor(batch.count) { i in
            let (offset, length) = spans[i]
            ids[i] = ObjectID.hash(UnsafeRawBufferPointer(rebasing: base.value[offset..<(offset + length)]))
        }
        var fresh: [Int] = []
        for (i, chunk) in batch.enumerated() {
            let id = ids[i]
            chunk.file.node.content[chunk.slot] = .blob(id, length: UInt32(chunk.length))
            if !index.contains(id) && !pending.contains(id) {
                pending.insert(id)
                fresh.append(i)
            }
        }
        let compressed = SlotArray<[UInt8]?>(count: fresh.count, initial: nil)
        let zstd = repository.zstd
        try parallelFor(fresh.count) { j in
            let (offset, length) = spans[fresh[j]]
            compressed[j] = zstd.compress(UnsafeRawBufferPointer(rebasing: base.value[offset..<(offset + length)]))
        }
        for (j, i) in fresh.enumerated() {
            let (offset, length) = spans[i]
            let raw = UnsafeRawBufferPointer(rebasing: buffer[offset..<(offset + length)])
            try storeBlob(ids[i], type: .data, raw: raw, compressed: compressed[j])
        }
        chunks.removeAll(keepingCapacity: true)
        if tail > 0 {
            buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + (used - tail), byteCount: tail)
        }
        used = tail
    }

    private func storeBlob(_ id: ObjectID, type: BlobType, raw: UnsafeRawBufferPointer, compressed: [UInt8]?) throws {
        let writer: PackWriter
        if type == .data {
            if dataPack == nil { dataPack = try PackWriter(repository: repository.paths, syscalls: repository.syscalls) }
            writer = dataPack!
        } else {
            if treePack == nil { treePack = try PackWriter(repository: repository.paths, syscalls: repository.syscalls) }
            writer = treePack!
        }
        if let compressed {
            try compressed.withUnsafeBytes {
                try writer.append(id: id, type: type, compressed: true, bytes: $0, rawLength: raw.count)
            }
            stats.storedBytes += UInt64(compressed.count)
        } else {
            try writer.append(id: id, type: type, compressed: false, bytes: raw, rawLength: raw.count)
            stats.storedBytes += UInt64(raw.count)
        }
        stats.newBlobs += 1
        stats.newBytes += UInt64(raw.count)
        if type == .data { progress.newBytes.add(UInt64(raw.count), ordering: .relaxed) }
        if writer.size >= UInt64(repository.config.packSize) { try finishPack(type) }
    }

    private func finishPack(_ type: BlobType) throws {
        guard let writer = type == .data ? dataPack : treePack else { return }
        if type == .data { dataPack = nil } else { treePack = nil }
        let result = try writer.finish()
        index.insert(pack: result.id, entries: result.entries)
        for entry in result.entries { pending.remove(entry.id) }
        written.append(result)
    }

    private func storeTree(_ bytes: [UInt8]) throws -> ObjectID {
        let id = ObjectID.hash(bytes)
        if index.contains(id) || pending.contains(id) { return id }
        pending.insert(id)
        try bytes.withUnsafeBytes { raw in
            try storeBlob(id, type: .tree, raw: raw, compressed: repository.zstd.compress(raw))
        }
        return id
    }

    /// Finishes the open packs; returns every pack written, for the index.
    func finish() throws -> [(id: ObjectID, entries: [PackEntry])] {
        if !chunks.isEmpty { try flush() }
        try finishPack(.data)
        try finishPack(.tree)
        return written
    }

    /// Removes temp files of unfinished packs after a failure.
    func abandon() {
        dataPack?.abandon()
        treePack?.abandon()
        dataPack = nil
        treePack = nil
        reader.closePacks()
    }
}
