import Foundation
import Glibc
public import LifeboatCore
import LifeboatSystem
import Synchronization

/// What a finished restore reports.
public struct RestoreResult: Sendable {
    public var files: UInt64 = 0
    public var directories: UInt64 = 0
    public var otherEntries: UInt64 = 0
    public var bytes: UInt64 = 0
    /// Entries that could not be restored; none of them was written under its final name.
    public var failures: [(path: String, error: LifeboatError)] = []
}

extension Repository {
    /// Restores `snapshot` (or the entry at `subpath` inside it) into `target`, which must
    /// be missing or empty.
    ///
    /// Every blob is verified before its bytes are written; a file with any unverifiable
    /// blob is left out (its temp file removed) and reported, and the rest is restored.
    public func restore(
        snapshot record: SnapshotRecord, subpath: String? = nil, target: String,
        progress: TransferProgress = TransferProgress()
    ) throws -> RestoreResult {
        try Repository.prepareTarget(target)
        let lock = try RepositoryLock.acquire(self, operation: "restore", exclusive: false)
        defer { try? lock.release() }
        let index = try loadIndex()
        let restorer = Restorer(repository: self, index: index, progress: progress)
        defer {
            restorer.abandon()
            restorer.reader.closePacks()
        }
        let snapshot = record.snapshot
        let components = (subpath ?? "").split(separator: "/").map { Array($0.utf8) }
        var treeID = snapshot.treeID
        var selected: Node?
        for (position, component) in components.enumerated() {
            let nodes = try TreeFormat.decode(try restorer.reader.read(treeID), id: treeID)
            guard let node = nodes.first(where: { $0.name == component }) else {
                throw LifeboatError(
                    .badInput, "snapshot \(record.id.short) has no \(subpath!)",
                    hint: "list its files with `lifeboat ls \(record.id.short)`")
            }
            if node.kind == .directory {
                treeID = node.subtree!
                selected = node
            } else if position == components.count - 1 {
                selected = node
            } else {
                throw LifeboatError(.badInput, "snapshot \(record.id.short): \(subpath!) is not below a directory")
            }
        }
        let targetPath = FSPath(target)
        if let selected, selected.kind != .directory {
            try restorer.restoreEntry(selected, in: targetPath)
        } else {
            try restorer.restoreTree(treeID, at: targetPath)
        }
        try restorer.finish()
        var rootNode: Node
        if let selected, selected.kind == .directory {
            rootNode = selected
        } else {
            let root = snapshot.root
            rootNode = Node(
                kind: .directory, name: [], mode: root.mode, uid: root.uid, gid: root.gid, mtime: root.mtime,
                ctime: root.mtime, device: 0, inode: 0, links: 1, size: 0, rdev: 0, xattrs: [], linkTarget: [],
                subtree: nil, content: [])
            rootNode.xattrs = (root.xattrs ?? [:]).sorted { $0.key < $1.key }.map {
                (Array($0.key.utf8), Hex.decode($0.value) ?? [])
            }
        }
        if selected == nil || selected?.kind == .directory {
            try FileMetadata.apply(rootNode, to: targetPath, isRoot: restorer.isRoot)
        }
        return restorer.result
    }

    /// Creates `target` (and missing parents) or checks that it is an empty directory.
    static func prepareTarget(_ target: String) throws {
        var st = stat()
        if stat(target, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFDIR else {
                throw LifeboatError(
                    .badInput, "restore target \(target) is not a directory", hint: "give a new or empty directory")
            }
            guard try Posix.listDirectory(target).isEmpty else {
                throw LifeboatError(
                    .badInput, "restore target \(target) is not empty",
                    hint: "give a new or empty directory; lifeboat never overwrites files")
            }
            return
        }
        var prefix = target.hasPrefix("/") ? "" : "."
        for component in target.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o700) != 0 && errno != EEXIST { throw ioError(errno, "creating", prefix) }
        }
    }
}

/// A file being restored: written under a temp name, renamed when all its blobs verified.
///
/// Shared by the walking thread and the workers: `remaining` and `error` are synchronized,
/// everything else is set before the first chunk is queued.
private final class FileJob: Sendable {
    let node: Node
    let finalPath: FSPath
    let tempPath: FSPath
    let fd: Int32
    let remaining: Atomic<Int>
    let error = Mutex<LifeboatError?>(nil)

    init(node: Node, finalPath: FSPath, tempPath: FSPath, fd: Int32, remaining: Int) {
        self.node = node
        self.finalPath = finalPath
        self.tempPath = tempPath
        self.fd = fd
        self.remaining = Atomic(remaining)
    }
}

/// One blob to read, verify and write at an offset of a file.
private struct ChunkJob: Sendable {
    let file: FileJob
    let id: ObjectID
    let offset: UInt64
    let length: UInt32
}

/// Worker threads that restore file contents while the walking thread creates entries.
///
/// The walker queues chunks; it waits when too many bytes are queued or too many files are
/// open, so memory and descriptors stay bounded. The worker that writes a file's last chunk
/// completes the file: rename into place (or removal after a failure) and metadata.
private final class RestoreWorkers: @unchecked Sendable {
    static let threads = 4
    static let maxQueuedBytes: UInt64 = 64 << 20
    static let maxOpenFiles = 512

    private let reader: BlobReader
    private let progress: TransferProgress
    private let isRoot: Bool
    private let condition = NSCondition()
    // Guarded by `condition`:
    private var queue: [ChunkJob] = []
    private var head = 0
    private var queuedBytes: UInt64 = 0
    private var openFiles = 0
    private var closing = false
    private var running = 0
    // Guarded by `results`:
    let results = Mutex(RestoreResult())
    /// The first failure to write into the target (no space, read-only, I/O error): it stops
    /// the whole restore, since every later file would fail the same way.
    let fatal = Mutex<LifeboatError?>(nil)

    init(reader: BlobReader, progress: TransferProgress, isRoot: Bool) {
        self.reader = reader
        self.progress = progress
        self.isRoot = isRoot
        running = RestoreWorkers.threads
        for _ in 0..<RestoreWorkers.threads {
            Thread { [self] in work() }.start()
        }
    }

    /// Throws the fatal target error, if one happened.
    func checkFatal() throws {
        if let error = fatal.withLock({ $0 }) { throw error }
    }

    /// Counts a newly opened file, waiting while too many are open.
    func fileOpened() {
        condition.lock()
        while openFiles >= RestoreWorkers.maxOpenFiles { condition.wait() }
        openFiles += 1
        condition.unlock()
    }

    /// Counts a file as closed without completing it.
    func fileClosed() {
        condition.lock()
        openFiles -= 1
        condition.broadcast()
        condition.unlock()
    }

    /// Queues chunks, waiting while too many bytes are queued.
    func enqueue(_ job: ChunkJob) {
        condition.lock()
        while queuedBytes >= RestoreWorkers.maxQueuedBytes { condition.wait() }
        queue.append(job)
        queuedBytes += UInt64(job.length)
        condition.signal()
        condition.unlock()
    }

    private func take() -> ChunkJob? {
        condition.lock()
        defer { condition.unlock() }
        while head == queue.count && !closing { condition.wait() }
        guard head < queue.count else { return nil }
        let job = queue[head]
        head += 1
        if head > 4096 && head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
        }
        queuedBytes -= UInt64(job.length)
        condition.broadcast()
        return job
    }

    private func work() {
        while let job = take() {
            if let stop = fatal.withLock({ $0 }) {
                job.file.error.withLock { if $0 == nil { $0 = stop } }
            } else {
                do {
                    let plain = try reader.read(job.id)
                    let code = plain.withUnsafeBytes { Posix.pwrite(job.file.fd, $0, offset: job.offset) }
                    if code != 0 {
                        let failure = ioError(code, "writing", job.file.finalPath.string)
                        fatal.withLock { if $0 == nil { $0 = failure } }
                        throw failure
                    }
                    progress.bytes.add(UInt64(plain.count), ordering: .relaxed)
                } catch {
                    let failure = error as? LifeboatError ?? LifeboatError(.operationFailed, "\(error)")
                    job.file.error.withLock { if $0 == nil { $0 = failure } }
                }
            }
            if job.file.remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { complete(job.file) }
        }
        condition.lock()
        running -= 1
        condition.broadcast()
        condition.unlock()
    }

    /// Renames a fully verified file into place and applies its metadata; removes a failed one.
    func complete(_ file: FileJob) {
        close(file.fd)
        defer { fileClosed() }
        if let error = file.error.withLock({ $0 }) {
            _ = file.tempPath.withCString { unlink($0) }
            // After a fatal target error the restore stops with that one error; no list of victims.
            if fatal.withLock({ $0 }) == nil {
                results.withLock { $0.failures.append((file.finalPath.string, error)) }
            }
            return
        }
        do {
            let renamed = file.tempPath.withCString { from in file.finalPath.withCString { rename(from, $0) } }
            if renamed != 0 { throw ioError(errno, "renaming into place", file.finalPath.string) }
            try FileMetadata.apply(file.node, to: file.finalPath, isRoot: isRoot)
        } catch {
            let failure = error as? LifeboatError ?? LifeboatError(.operationFailed, "\(error)")
            fatal.withLock { if $0 == nil { $0 = failure } }
            _ = file.finalPath.withCString { unlink($0) }
            return
        }
        results.withLock {
            $0.files += 1
            $0.bytes += file.node.size
        }
        progress.files.add(1, ordering: .relaxed)
    }

    /// Waits until every queued chunk is written and every file completed, then stops the threads.
    func finish() {
        condition.lock()
        closing = true
        condition.broadcast()
        while running > 0 { condition.wait() }
        condition.unlock()
    }
}

/// Walks a snapshot's trees, creating entries, while `RestoreWorkers` fill in file contents.
private final class Restorer {
    let reader: BlobReader
    let progress: TransferProgress
    let isRoot = geteuid() == 0
    private let workers: RestoreWorkers
    private var counts = RestoreResult()
    private var directories: [(path: FSPath, node: Node)] = []
    private var firstLinks: [HardLinkKey: FSPath] = [:]
    private var links: [(existing: FSPath, new: FSPath, node: Node)] = []

    struct HardLinkKey: Hashable {
        let device: UInt64
        let inode: UInt64
    }

    init(repository: Repository, index: BlobIndex, progress: TransferProgress) {
        self.reader = BlobReader(repository: repository, index: index)
        self.progress = progress
        workers = RestoreWorkers(reader: reader, progress: progress, isRoot: isRoot)
    }

    /// Everything restored so far, with the workers' files and failures.
    var result: RestoreResult {
        var merged = counts
        let fromWorkers = workers.results.withLock { $0 }
        merged.files += fromWorkers.files
        merged.bytes += fromWorkers.bytes
        merged.failures = fromWorkers.failures + counts.failures
        return merged
    }

    func restoreTree(_ id: ObjectID, at directory: FSPath) throws {
        let nodes = try TreeFormat.decode(try reader.read(id), id: id)
        for node in nodes { try restoreEntry(node, in: directory) }
    }

    func restoreEntry(_ node: Node, in directory: FSPath) throws {
        guard !node.name.isEmpty, !node.name.contains(UInt8(ascii: "/")), node.name != [46], node.name != [46, 46]
        else {
            throw LifeboatError(.integrity, "snapshot holds an invalid file name \(node.nameString) in \(directory)")
        }
        let path = directory.appending(node.name)
        switch node.kind {
        case .directory:
            if path.withCString({ mkdir($0, 0o700) }) != 0 { throw ioError(errno, "creating directory", path.string) }
            try restoreTree(node.subtree!, at: path)
            directories.append((path, node))
            counts.directories += 1
        case .file:
            if node.links > 1 {
                let key = HardLinkKey(device: node.device, inode: node.inode)
                if let first = firstLinks[key] {
                    links.append((first, path, node))
                    return
                }
                firstLinks[key] = path
            }
            try startFile(node, at: path)
        case .symlink:
            let created = path.withCString { cPath in FSPath(bytes: node.linkTarget).withCString { symlink($0, cPath) }
            }
            if created != 0 { throw ioError(errno, "creating symlink", path.string) }
            try FileMetadata.apply(node, to: path, isRoot: isRoot)
            counts.otherEntries += 1
        case .fifo, .characterDevice, .blockDevice, .socket:
            let type: mode_t =
                switch node.kind {
                case .fifo: S_IFIFO
                case .characterDevice: S_IFCHR
                case .blockDevice: S_IFBLK
                default: S_IFSOCK
                }
            if path.withCString({ mknod($0, type | 0o600, dev_t(node.rdev)) }) != 0 {
                counts.failures.append((path.string, ioError(errno, "creating special file", path.string)))
                return
            }
            try FileMetadata.apply(node, to: path, isRoot: isRoot)
            counts.otherEntries += 1
        }
    }

    private func startFile(_ node: Node, at path: FSPath) throws {
        let directory = Array(path.bytes.dropLast(path.lastComponent.count))
        let temp = FSPath(bytes: directory + Array(".lifeboat-restore-\(ObjectID.random().short)".utf8))
        try workers.checkFatal()
        workers.fileOpened()
        let fd = temp.withCString { open($0, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) }
        if fd < 0 {
            let error = ioError(errno, "creating", path.string)
            workers.fileClosed()
            throw error
        }
        if ftruncate(fd, off_t(node.size)) != 0 {
            let error = ioError(errno, "sizing", path.string)
            close(fd)
            _ = temp.withCString { unlink($0) }
            workers.fileClosed()
            throw error
        }
        let blobs = node.content.reduce(0) { count, piece in if case .blob = piece { count + 1 } else { count } }
        let job = FileJob(node: node, finalPath: path, tempPath: temp, fd: fd, remaining: blobs)
        if blobs == 0 {
            workers.complete(job)
            return
        }
        var offset: UInt64 = 0
        for piece in node.content {
            if case .blob(let id, let length) = piece {
                workers.enqueue(ChunkJob(file: job, id: id, offset: offset, length: length))
            }
            offset += piece.length
        }
    }

    /// Waits for the workers, then makes hard links and sets directory metadata (deepest first).
    func finish() throws {
        workers.finish()
        try workers.checkFatal()
        for link in links {
            let made = link.existing.withCString { from in link.new.withCString { Glibc.link(from, $0) } }
            if made != 0 {
                counts.failures.append(
                    (link.new.string, ioError(errno, "linking to \(link.existing)", link.new.string)))
                continue
            }
            counts.files += 1
        }
        for directory in directories {
            try FileMetadata.apply(directory.node, to: directory.path, isRoot: isRoot)
        }
    }

    /// Stops the workers after a failure of the walk.
    func abandon() {
        workers.finish()
    }
}
