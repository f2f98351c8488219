import Glibc
import Synchronization
public import LifeboatCore

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
        let index = try loadIndex()
        let restorer = Restorer(repository: self, index: index, progress: progress)
        defer { restorer.reader.closePacks() }
        let snapshot = record.snapshot
        let components = (subpath ?? "").split(separator: "/").map { Array($0.utf8) }
        var treeID = snapshot.treeID
        var selected: Node?
        for (position, component) in components.enumerated() {
            let nodes = try TreeFormat.decode(try restorer.reader.read(treeID), id: treeID)
            guard let node = nodes.first(where: { $0.name == component }) else {
                throw LifeboatError(.badInput, "snapshot \(record.id.short) has no \(subpath!)",
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
            rootNode.xattrs = (root.xattrs ?? [:]).sorted { $0.key < $1.key }.map { (Array($0.key.utf8), Hex.decode($0.value) ?? []) }
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
                throw LifeboatError(.badInput, "restore target \(target) is not a directory", hint: "give a new or empty directory")
            }
            guard try Posix.listDirectory(target).isEmpty else {
                throw LifeboatError(.badInput, "restore target \(target) is not empty",
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
private final class FileJob {
    let node: Node
    let finalPath: FSPath
    let tempPath: FSPath
    let fd: Int32
    var remaining: Int
    var error: LifeboatError?

    init(node: Node, finalPath: FSPath, tempPath: FSPath, fd: Int32, remaining: Int) {
        self.node = node
        self.finalPath = finalPath
        self.tempPath = tempPath
        self.fd = fd
        self.remaining = remaining
    }
}

/// Walks a snapshot's trees, creating entries and restoring file contents in parallel batches.
private final class Restorer {
    let repository: Repository
    let reader: BlobReader
    let progress: TransferProgress
    let isRoot = geteuid() == 0
    var result = RestoreResult()

    static let batchBytes: UInt64 = 64 << 20
    static let batchFiles = 256
    private var openFiles: [FileJob] = []
    private var jobs: [(file: FileJob, id: ObjectID, offset: UInt64)] = []
    private var jobBytes: UInt64 = 0
    private var directories: [(path: FSPath, node: Node)] = []
    private var firstLinks: [HardLinkKey: FSPath] = [:]
    private var links: [(existing: FSPath, new: FSPath, node: Node)] = []

    struct HardLinkKey: Hashable {
        let device: UInt64
        let inode: UInt64
    }

    init(repository: Repository, index: BlobIndex, progress: TransferProgress) {
        self.repository = repository
        self.reader = BlobReader(repository: repository, index: index)
        self.progress = progress
    }

    func restoreTree(_ id: ObjectID, at directory: FSPath) throws {
        let nodes = try TreeFormat.decode(try reader.read(id), id: id)
        for node in nodes { try restoreEntry(node, in: directory) }
    }

    func restoreEntry(_ node: Node, in directory: FSPath) throws {
        guard !node.name.isEmpty, !node.name.contains(UInt8(ascii: "/")), node.name != [46], node.name != [46, 46] else {
            throw LifeboatError(.integrity, "snapshot holds an invalid file name \(node.nameString) in \(directory)")
        }
        let path = directory.appending(node.name)
        switch node.kind {
        case .directory:
            if path.withCString({ mkdir($0, 0o700) }) != 0 { throw ioError(errno, "creating directory", path.string) }
            try restoreTree(node.subtree!, at: path)
            directories.append((path, node))
            result.directories += 1
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
            let created = path.withCString { cPath in FSPath(bytes: node.linkTarget).withCString { symlink($0, cPath) } }
            if created != 0 { throw ioError(errno, "creating symlink", path.string) }
            try FileMetadata.apply(node, to: path, isRoot: isRoot)
            result.otherEntries += 1
        case .fifo, .characterDevice, .blockDevice, .socket:
            let type: mode_t = switch node.kind {
            case .fifo: S_IFIFO
            case .characterDevice: S_IFCHR
            case .blockDevice: S_IFBLK
            default: S_IFSOCK
            }
            if path.withCString({ mknod($0, type | 0o600, dev_t(node.rdev)) }) != 0 {
                result.failures.append((path.string, ioError(errno, "creating special file", path.string)))
                return
            }
            try FileMetadata.apply(node, to: path, isRoot: isRoot)
            result.otherEntries += 1
        }
    }

    private func startFile(_ node: Node, at path: FSPath) throws {
        let temp = FSPath(bytes: Array(path.bytes.dropLast(path.lastComponent.count)) + Array(".lifeboat-restore-\(ObjectID.random().short)".utf8))
        let fd = temp.withCString { open($0, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600) }
        if fd < 0 { throw ioError(errno, "creating", path.string) }
        if ftruncate(fd, off_t(node.size)) != 0 {
            let error = ioError(errno, "sizing", path.string)
            close(fd)
            _ = temp.withCString { unlink($0) }
            throw error
        }
        let blobs = node.content.reduce(0) { count, piece in if case .blob = piece { count + 1 } else { count } }
        let job = FileJob(node: node, finalPath: path, tempPath: temp, fd: fd, remaining: blobs)
        openFiles.append(job)
        var offset: UInt64 = 0
        for piece in node.content {
            if case .blob(let id, let length) = piece {
                jobs.append((job, id, offset))
                jobBytes += UInt64(length)
                if jobBytes >= Restorer.batchBytes { try runBatch() }
            }
            offset += piece.length
        }
        if openFiles.count >= Restorer.batchFiles { try runBatch() }
    }

    /// Reads, verifies and writes every queued blob on all cores, then completes finished files.
    private func runBatch() throws {
        let batch = jobs
        jobs.removeAll(keepingCapacity: true)
        jobBytes = 0
        let errors = SlotArray<LifeboatError?>(count: batch.count, initial: nil)
        let work = UncheckedBox(batch.map { ($0.file.fd, $0.id, $0.offset, $0.file.finalPath.string) })
        let reader = self.reader
        let progress = self.progress
        try parallelFor(batch.count) { i in
            let (fd, id, offset, path) = work.value[i]
            do {
                let plain = try reader.read(id)
                let code = plain.withUnsafeBytes { Posix.pwrite(fd, $0, offset: offset) }
                if code != 0 { throw ioError(code, "writing", path) }
                progress.bytes.add(UInt64(plain.count), ordering: .relaxed)
            } catch let error as LifeboatError {
                errors[i] = error
            }
        }
        for (i, job) in batch.enumerated() {
            job.file.remaining -= 1
            if let error = errors[i], job.file.error == nil { job.file.error = error }
        }
        var stillOpen: [FileJob] = []
        for file in openFiles {
            if file.remaining == 0 { try complete(file) } else { stillOpen.append(file) }
        }
        openFiles = stillOpen
    }

    /// Renames a fully verified file into place and applies its metadata; removes a failed one.
    private func complete(_ file: FileJob) throws {
        close(file.fd)
        if let error = file.error {
            _ = file.tempPath.withCString { unlink($0) }
            result.failures.append((file.finalPath.string, error))
            return
        }
        let renamed = file.tempPath.withCString { from in file.finalPath.withCString { rename(from, $0) } }
        if renamed != 0 { throw ioError(errno, "renaming into place", file.finalPath.string) }
        try FileMetadata.apply(file.node, to: file.finalPath, isRoot: isRoot)
        result.files += 1
        result.bytes += file.node.size
        progress.files.add(1, ordering: .relaxed)
    }

    /// Restores what is still queued, then hard links, then directory metadata (deepest first).
    func finish() throws {
        try runBatch()
        for link in links {
            let made = link.existing.withCString { from in link.new.withCString { Glibc.link(from, $0) } }
            if made != 0 {
                result.failures.append((link.new.string, ioError(errno, "linking to \(link.existing)", link.new.string)))
                continue
            }
            result.files += 1
        }
        for directory in directories {
            try FileMetadata.apply(directory.node, to: directory.path, isRoot: isRoot)
        }
    }
}
