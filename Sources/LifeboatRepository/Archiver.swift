import CLifeboatPosix
import Foundation
import Glibc
import LifeboatCore
import LifeboatSystem
import Synchronization

/// A source directory that could not be listed: reported and left out, never fatal below the root.
struct SourceUnreadable: Error {
    let message: String
}

/// A regular file being backed up; its content pieces are filled in as its chunks are hashed.
private final class FileWork {
    var node: Node
    var failed = false

    init(node: Node) { self.node = node }
}

/// A directory being backed up; its tree id is known once its entries' contents are.
private final class DirectoryWork {
    var entries: [Entry] = []
    var treeID: ObjectID?
    /// The last batch holding chunks of this directory's files.
    var needsBatch = -1
}

/// One entry of a directory under construction.
private enum Entry {
    case done(Node)
    case file(FileWork)
    /// A further hard link to a file already being read: same contents.
    case link(Node, FileWork)
    case directory(Node, DirectoryWork)
}

/// Chunks (and tree blobs) travelling together from the reader to the writer.
///
/// The reading thread fills `buffer`, `spans` and `targets`, then submits the batch. Chunk
/// workers then write one slot each of `ids`, `fresh` and `compressed` (slot `i` by the worker
/// that took chunk `i`); the writer reads them once `remaining` reached zero; the reader reads
/// `ids` and `error` once the writer handed the batch back. Every hand-over goes through the
/// pipeline's condition lock.
private final class ChunkBatch: @unchecked Sendable {
    let sequence: Int
    let buffer: UnsafeMutableRawBufferPointer
    var used = 0
    var spans: [(offset: Int, length: Int)] = []
    var targets: [(file: FileWork, slot: Int)] = []
    var trees: [(id: ObjectID, bytes: [UInt8])] = []
    var ids = SlotArray(count: 0, initial: ObjectID(w0: 0, w1: 0, w2: 0, w3: 0))
    /// Set for chunks this backup stores (not indexed and not claimed by an earlier chunk).
    var fresh = SlotArray(count: 0, initial: false)
    /// zstd output for fresh chunks; nil where compression did not pay.
    var compressed = SlotArray<[UInt8]?>(count: 0, initial: nil)
    /// Chunks not yet hashed and compressed; guarded by the pipeline's condition lock.
    var remaining = 0
    var error: (any Error)?

    init(sequence: Int, buffer: UnsafeMutableRawBufferPointer) {
        self.sequence = sequence
        self.buffer = buffer
    }

    /// Records one chunk's result; each worker writes only the slot of the chunk it took.
    func storeResult(_ chunk: Int, id: ObjectID, fresh isFresh: Bool, compressed output: [UInt8]?) {
        ids[chunk] = id
        fresh[chunk] = isFresh
        compressed[chunk] = output
    }
}

/// Counters kept by the writing thread.
private struct StoreStats {
    var newBlobs: UInt64 = 0
    var newBytes: UInt64 = 0
    var storedBytes: UInt64 = 0
}

/// Walks a tree, cuts files into chunks, and stores the new ones, as a pipeline: the calling
/// thread reads and cuts files into batches; one worker per core takes chunks one at a time
/// (hash, claim if new, compress), with no barrier between batches; a writer appends the new
/// chunks of each batch, in batch order, to pack files. Memory is bounded by
/// `bufferCount × bufferSize`.
final class Archiver: @unchecked Sendable {
    let repository: Repository
    private let index: BlobIndex
    private let indexLock = NSLock()
    let reader: BlobReader
    let progress: TransferProgress
    let warn: @Sendable (String) -> Void

    static let bufferSize = 4 << 20
    static let bufferCount = 8
    private let condition = NSCondition()
    // Guarded by `condition`:
    private var freeBuffers: [UnsafeMutableRawBufferPointer] = []
    private var chunkQueue: [(batch: ChunkBatch, chunk: Int)] = []
    private var chunkQueueHead = 0
    private var readyToWrite: [Int: ChunkBatch] = [:]
    private var nextToWrite = 0
    private var stored: [ChunkBatch] = []
    private var stopping = false
    private var workersRunning = 0
    private var writerRunning = false
    // Reader-thread state:
    private var current: ChunkBatch?
    private var nextSequence = 0
    private var appliedThrough = -1
    private var submitted = 0
    private var applied = 0
    /// Tree blobs of finished directories, sent with the next batch.
    private var pendingTrees: [(id: ObjectID, bytes: [UInt8])] = []
    private var closedDirectories: [DirectoryWork] = []
    private var knownTrees = Set<ObjectID>()
    private var hardLinks: [HardLinkKey: FileWork] = [:]
    private var allBuffers: [UnsafeMutableRawBufferPointer] = []
    var stats = Snapshot.Summary(
        files: 0, directories: 0, otherEntries: 0, totalBytes: 0, bytesRead: 0, filesUnchanged: 0, newBlobs: 0,
        newBytes: 0, storedBytes: 0, durationSeconds: 0, unreadable: 0)
    private(set) var unreadable: [String] = []
    /// Blobs claimed by a chunk worker but not yet in an indexed pack; guarded by `indexLock`.
    private var pending = Set<ObjectID>()
    // Writer-thread state:
    private var dataPack: PackWriter?
    private var treePack: PackWriter?
    private var written: [(id: ObjectID, entries: [PackEntry])] = []
    private var storeStats = StoreStats()
    private var writerFailed = false

    struct HardLinkKey: Hashable {
        let device: UInt64
        let inode: UInt64
    }

    /// Cut files into blocks of this size instead of content-defined chunks (captured data
    /// dirs, whose snapshots patch single blocks).
    let fixedChunkSize: Int?

    init(
        repository: Repository, index: BlobIndex, progress: TransferProgress, fixedChunkSize: Int? = nil,
        warn: @escaping @Sendable (String) -> Void
    ) throws {
        self.repository = repository
        self.fixedChunkSize = fixedChunkSize
        self.index = index
        self.reader = BlobReader(repository: repository, index: index)
        self.progress = progress
        self.warn = warn
        for _ in 0..<Archiver.bufferCount {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Archiver.bufferSize, alignment: 64)
            allBuffers.append(buffer)
            freeBuffers.append(buffer)
        }
        workersRunning = ProcessInfo.processInfo.activeProcessorCount
        writerRunning = true
        for _ in 0..<workersRunning {
            Thread { [self] in chunkWorker() }.start()
        }
        Thread { [self] in writeLoop() }.start()
    }

    deinit {
        for buffer in allBuffers { buffer.deallocate() }
    }

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

    // MARK: - Reading thread

    /// Backs up the tree at `root` and returns its tree id once every blob is stored.
    func archive(_ root: FSPath, parentNodes: [[UInt8]: Node]?) throws -> ObjectID {
        let directory = try archiveDirectory(root, parentNodes: parentNodes)
        try drain()
        guard let treeID = directory.treeID else {
            throw LifeboatError(.operationFailed, "internal error: the root tree was not finished")
        }
        return treeID
    }

    private func archiveDirectory(_ path: FSPath, parentNodes: [[UInt8]: Node]?) throws -> DirectoryWork {
        let names: [[UInt8]]
        do {
            names = try Posix.listDirectory(path.string).sorted { $0.lexicographicallyPrecedes($1) }
        } catch let error as LifeboatError {
            throw SourceUnreadable(message: error.message)
        }
        let directory = DirectoryWork()
        directory.entries.reserveCapacity(names.count)
        var prefetchedUpTo = 0
        for (position, name) in names.enumerated() {
            // Keep 32 to 96 entries ahead on their way from disk, each asked for once.
            if position + 32 >= prefetchedUpTo && prefetchedUpTo < names.count {
                let start = max(prefetchedUpTo, position)
                prefetchedUpTo = min(names.count, start + 64)
                prefetch(path, names[start..<prefetchedUpTo])
            }
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
                    let child = try archiveDirectory(childPath, parentNodes: parentChildren)
                    stats.directories += 1
                    directory.entries.append(.directory(node, child))
                } catch let error as SourceUnreadable {
                    report("skipped \(childPath): \(error.message)")
                }
            case .symlink:
                do {
                    node.linkTarget = try FileMetadata.readlink(childPath, size: Int(st.st_size))
                    stats.otherEntries += 1
                    directory.entries.append(.done(node))
                } catch let error as LifeboatError {
                    report("skipped \(childPath): \(error.message)")
                }
            case .file:
                stats.files += 1
                stats.totalBytes += node.size
                if node.links > 1, let first = hardLinks[HardLinkKey(device: node.device, inode: node.inode)] {
                    directory.entries.append(.link(node, first))
                    continue
                }
                let work = FileWork(node: node)
                if let parentNode, unchanged(node, parentNode) {
                    work.node.content = parentNode.content
                    stats.filesUnchanged += 1
                    progress.bytes.add(node.size, ordering: .relaxed)
                } else {
                    try readFile(childPath, into: work, stat: st)
                }
                progress.files.add(1, ordering: .relaxed)
                if work.failed { continue }
                if node.links > 1 { hardLinks[HardLinkKey(device: node.device, inode: node.inode)] = work }
                directory.entries.append(.file(work))
            default:
                stats.otherEntries += 1
                directory.entries.append(.done(node))
            }
            try applyStored(wait: false)
        }
        directory.needsBatch = current.map { $0.spans.isEmpty ? $0.sequence - 1 : $0.sequence } ?? nextSequence - 1
        closedDirectories.append(directory)
        try applyStored(wait: false)
        return directory
    }

    /// Asks the kernel to start reading the next files of a directory, so cold small files
    /// arrive while earlier ones are cut and hashed.
    private func prefetch(_ directory: FSPath, _ names: ArraySlice<[UInt8]>) {
        for name in names {
            let fd = directory.appending(name).withCString {
                Glibc.open($0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)
            }
            if fd < 0 { continue }
            posix_fadvise(fd, 0, 1 << 20, POSIX_FADV_WILLNEED)
            close(fd)
        }
    }

    /// True when the parent snapshot's node can stand for this file without reading it.
    private func unchanged(_ node: Node, _ parent: Node) -> Bool {
        guard parent.kind == .file, parent.size == node.size, parent.mtime == node.mtime, parent.ctime == node.ctime,
            parent.inode == node.inode
        else { return false }
        indexLock.lock()
        defer { indexLock.unlock() }
        for piece in parent.content {
            if case .blob(let id, _) = piece, !index.contains(id) { return false }
        }
        return true
    }

    /// Reads a file into batches, cutting it into chunks; holes become hole pieces.
    private func readFile(_ path: FSPath, into work: FileWork, stat st: stat) throws {
        var descriptor = path.withCString { Glibc.open($0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | lifeboat_o_noatime()) }
        if descriptor < 0 && errno == EPERM {
            descriptor = path.withCString { Glibc.open($0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
        }
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
                total += try readRegion(
                    descriptor, start: region.start, length: region.end - region.start, path: path, into: work)
            }
            if total < size {
                work.node.content.append(.hole(length: size - total))
                total = size
            }
            work.node.size = total
        } catch let error as SourceUnreadable {
            work.failed = true
            report("skipped \(path): \(error.message)")
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

    /// The next chunk's length: fixed-size blocks when asked for, content-defined otherwise.
    private func nextCut(_ data: UnsafeRawBufferPointer) -> Int? {
        if let fixedChunkSize { return data.count >= fixedChunkSize ? fixedChunkSize : nil }
        return repository.chunker.nextCut(data)
    }

    /// Reads `length` bytes from `start` into batches, cutting chunks as it goes; returns
    /// the bytes read (fewer if the file shrank meanwhile).
    private func readRegion(
        _ fd: Int32, start: UInt64, length: UInt64, path: FSPath, into work: FileWork
    ) throws -> UInt64 {
        var position = start
        var end = start + length
        var batch = try currentBatch()
        var cutStart = batch.used
        while true {
            while let cut = nextCut(UnsafeRawBufferPointer(rebasing: batch.buffer[cutStart..<batch.used])) {
                addChunk(work, batch: batch, offset: cutStart, length: cut)
                cutStart += cut
            }
            if position == end {
                if batch.used > cutStart {
                    addChunk(work, batch: batch, offset: cutStart, length: batch.used - cutStart)
                }
                return position - start
            }
            if batch.used == batch.buffer.count {
                // Full: carry the unfinished chunk into a fresh batch and send this one off.
                let tail = batch.used - cutStart
                let next = try takeBatch()
                next.buffer.baseAddress!.copyMemory(from: batch.buffer.baseAddress! + cutStart, byteCount: tail)
                next.used = tail
                batch.used = cutStart
                try submitCurrent()
                current = next
                batch = next
                cutStart = 0
            }
            let want = Int(min(UInt64(batch.buffer.count - batch.used), end - position))
            let target = UnsafeMutableRawBufferPointer(rebasing: batch.buffer[batch.used..<(batch.used + want)])
            let got = Posix.pread(fd, target, offset: position)
            if got < 0 { throw SourceUnreadable(message: ioError(Int32(-got), "reading", path.string).message) }
            if got == 0 {
                end = position  // the file shrank while it was read: keep what was there
                continue
            }
            batch.used += got
            position += UInt64(got)
            stats.bytesRead += UInt64(got)
            progress.bytes.add(UInt64(got), ordering: .relaxed)
        }
    }

    private func addChunk(_ work: FileWork, batch: ChunkBatch, offset: Int, length: Int) {
        work.node.content.append(.hole(length: UInt64(length)))  // placeholder until hashed
        batch.spans.append((offset, length))
        batch.targets.append((work, work.node.content.count - 1))
    }

    /// The batch being filled, or a new one when there is none or it has no room left.
    private func currentBatch() throws -> ChunkBatch {
        if let current, current.used < current.buffer.count { return current }
        try submitCurrent()
        let batch = try takeBatch()
        current = batch
        return batch
    }

    /// A new batch with a free buffer, waiting for the storer to return one if needed.
    private func takeBatch() throws -> ChunkBatch {
        while true {
            try applyStored(wait: false)
            condition.lock()
            // Wait only while nothing can free a buffer yet; a batch stored since the
            // `applyStored` above would otherwise be a missed wake-up.
            while freeBuffers.isEmpty && stored.isEmpty { condition.wait() }
            if let buffer = freeBuffers.popLast() {
                condition.unlock()
                defer { nextSequence += 1 }
                return ChunkBatch(sequence: nextSequence, buffer: buffer)
            }
            condition.unlock()
        }
    }

    /// Sends the batch being filled, with the tree blobs finished so far, to the storer.
    private func submitCurrent() throws {
        if current == nil && !pendingTrees.isEmpty { current = try takeBatch() }
        guard let batch = current else { return }
        current = nil
        batch.trees = pendingTrees
        pendingTrees = []
        submitted += 1
        let count = batch.spans.count
        batch.ids = SlotArray(count: count, initial: ObjectID(w0: 0, w1: 0, w2: 0, w3: 0))
        batch.fresh = SlotArray(count: count, initial: false)
        batch.compressed = SlotArray(count: count, initial: nil)
        condition.lock()
        batch.remaining = count
        if count == 0 {
            readyToWrite[batch.sequence] = batch
        } else {
            for chunk in 0..<count { chunkQueue.append((batch, chunk)) }
        }
        condition.broadcast()
        condition.unlock()
    }

    /// Takes finished batches back: fills in chunk ids, frees buffers, and finishes the
    /// directories whose contents are now all known.
    private func applyStored(wait: Bool) throws {
        condition.lock()
        if wait {
            while stored.isEmpty && applied < submitted { condition.wait() }
        }
        let done = stored
        stored.removeAll()
        condition.unlock()
        for batch in done.sorted(by: { $0.sequence < $1.sequence }) {
            if let error = batch.error { throw error }
            for (i, target) in batch.targets.enumerated() {
                target.file.node.content[target.slot] = .blob(batch.ids[i], length: UInt32(batch.spans[i].length))
            }
            appliedThrough = max(appliedThrough, batch.sequence)
            applied += 1
            condition.lock()
            freeBuffers.append(batch.buffer)
            condition.broadcast()
            condition.unlock()
        }
        try finishReadyDirectories()
    }

    /// Waits until every batch and every finished directory's tree is stored and applied.
    private func drain() throws {
        while true {
            if current != nil || !pendingTrees.isEmpty { try submitCurrent() }
            if applied == submitted {
                try applyStored(wait: false)
                if current == nil && pendingTrees.isEmpty { return }
                continue
            }
            try applyStored(wait: true)
        }
    }

    private func finishReadyDirectories() throws {
        while let directory = closedDirectories.first, directory.needsBatch <= appliedThrough {
            closedDirectories.removeFirst()
            var nodes: [Node] = []
            nodes.reserveCapacity(directory.entries.count)
            for entry in directory.entries {
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
                case .directory(var node, let child):
                    guard let treeID = child.treeID else {
                        throw LifeboatError(
                            .operationFailed, "internal error: a subdirectory finished after its parent")
                    }
                    node.subtree = treeID
                    nodes.append(node)
                }
            }
            directory.entries = []
            let bytes = TreeFormat.encode(nodes)
            let id = ObjectID.hash(bytes)
            directory.treeID = id
            if knownTrees.insert(id).inserted { pendingTrees.append((id, bytes)) }
        }
    }

    // MARK: - Chunk workers and writer

    /// Takes chunks one at a time: hash, claim if new, compress. The worker that finishes a
    /// batch's last chunk hands the batch to the writer.
    private func chunkWorker() {
        let zstd = repository.zstd
        while true {
            condition.lock()
            while chunkQueueHead == chunkQueue.count && !stopping { condition.wait() }
            if chunkQueueHead == chunkQueue.count {
                workersRunning -= 1
                condition.broadcast()
                condition.unlock()
                return
            }
            let (batch, chunk) = chunkQueue[chunkQueueHead]
            chunkQueueHead += 1
            // Drop taken entries now and then: they hold their batches, and so their memory.
            if chunkQueueHead == chunkQueue.count {
                chunkQueue.removeAll(keepingCapacity: true)
                chunkQueueHead = 0
            } else if chunkQueueHead >= 256 {
                chunkQueue.removeFirst(chunkQueueHead)
                chunkQueueHead = 0
            }
            condition.unlock()

            let span = batch.spans[chunk]
            let bytes = UnsafeRawBufferPointer(rebasing: batch.buffer[span.offset..<(span.offset + span.length)])
            let id = ObjectID.hash(bytes)
            let fresh = claim(id)
            let compressed = fresh ? zstd.compress(bytes) : nil
            batch.storeResult(chunk, id: id, fresh: fresh, compressed: compressed)

            condition.lock()
            batch.remaining -= 1
            if batch.remaining == 0 {
                readyToWrite[batch.sequence] = batch
                condition.broadcast()
            }
            condition.unlock()
        }
    }

    /// Appends new blobs to packs, batch by batch in submission order, and hands batches back.
    private func writeLoop() {
        while true {
            condition.lock()
            while readyToWrite[nextToWrite] == nil && !stopping { condition.wait() }
            guard let batch = readyToWrite.removeValue(forKey: nextToWrite) else {
                writerRunning = false
                condition.broadcast()
                condition.unlock()
                return
            }
            nextToWrite += 1
            condition.unlock()
            if writerFailed && batch.error == nil {
                batch.error = LifeboatError(.operationFailed, "backup stopped after an earlier error")
            }
            if batch.error == nil {
                do { try write(batch) } catch { batch.error = error }
            }
            batch.compressed = SlotArray(count: 0, initial: nil)  // written: free it now
            if batch.error != nil { writerFailed = true }
            condition.lock()
            stored.append(batch)
            condition.broadcast()
            condition.unlock()
        }
    }

    /// True if `id` is neither indexed nor already being stored; it is then pending until
    /// its pack is indexed.
    private func claim(_ id: ObjectID) -> Bool {
        indexLock.lock()
        defer { indexLock.unlock() }
        return !index.contains(id) && pending.insert(id).inserted
    }

    private func write(_ batch: ChunkBatch) throws {
        for i in 0..<batch.spans.count where batch.fresh[i] {
            let span = batch.spans[i]
            let raw = UnsafeRawBufferPointer(rebasing: batch.buffer[span.offset..<(span.offset + span.length)])
            try storeBlob(batch.ids[i], type: .data, raw: raw, compressed: batch.compressed[i])
        }
        for tree in batch.trees {
            indexLock.lock()
            let known = index.contains(tree.id) || pending.contains(tree.id)
            if !known { pending.insert(tree.id) }
            indexLock.unlock()
            if known { continue }
            try tree.bytes.withUnsafeBytes { raw in
                try storeBlob(tree.id, type: .tree, raw: raw, compressed: repository.zstd.compress(raw))
            }
        }
    }

    private func storeBlob(_ id: ObjectID, type: BlobType, raw: UnsafeRawBufferPointer, compressed: [UInt8]?) throws {
        let writer: PackWriter
        if type == .data {
            if dataPack == nil {
                dataPack = try PackWriter(repository: repository.paths, io: repository.io)
            }
            writer = dataPack!
        } else {
            if treePack == nil {
                treePack = try PackWriter(repository: repository.paths, io: repository.io)
            }
            writer = treePack!
        }
        if let compressed {
            try compressed.withUnsafeBytes {
                try writer.append(id: id, type: type, compressed: true, bytes: $0, rawLength: raw.count)
            }
            storeStats.storedBytes += UInt64(compressed.count)
        } else {
            try writer.append(id: id, type: type, compressed: false, bytes: raw, rawLength: raw.count)
            storeStats.storedBytes += UInt64(raw.count)
        }
        storeStats.newBlobs += 1
        storeStats.newBytes += UInt64(raw.count)
        if type == .data { progress.newBytes.add(UInt64(raw.count), ordering: .relaxed) }
        if writer.size >= UInt64(repository.config.packSize) { try finishPack(type) }
    }

    private func finishPack(_ type: BlobType) throws {
        guard let writer = type == .data ? dataPack : treePack else { return }
        if type == .data { dataPack = nil } else { treePack = nil }
        let result = try writer.finish()
        indexLock.lock()
        index.insert(pack: result.id, entries: result.entries)
        for entry in result.entries { pending.remove(entry.id) }
        indexLock.unlock()
        written.append(result)
    }

    // MARK: - End

    /// Stops the storer, finishes the open packs, and returns every pack written, for the index.
    func finish() throws -> [(id: ObjectID, entries: [PackEntry])] {
        stopStorer()
        try finishPack(.data)
        try finishPack(.tree)
        stats.newBlobs = storeStats.newBlobs
        stats.newBytes = storeStats.newBytes
        stats.storedBytes = storeStats.storedBytes
        return written
    }

    private func stopStorer() {
        condition.lock()
        stopping = true
        chunkQueue.removeAll()
        chunkQueueHead = 0
        condition.broadcast()
        while workersRunning > 0 || writerRunning { condition.wait() }
        readyToWrite.removeAll()
        condition.unlock()
    }

    /// After a failure: stops the storer and removes temp files of unfinished packs.
    func abandon() {
        stopStorer()
        dataPack?.abandon()
        treePack?.abandon()
        dataPack = nil
        treePack = nil
        reader.closePacks()
    }
}
