import Glibc
public import LifeboatCore
import LifeboatSystem

/// One entry of a directory listed at a cut (see `DeltaSnapshotInput`).
public struct CutListing: Sendable {
    public var name: [UInt8]
    /// The file id from `trusted.lifeboat.fid`, when the entry has one.
    public var fileID: UInt64?
    public var kind: NodeKind
    /// Attributes at the cut. For unchanged entries they are not used: the base node is.
    public var metadata: Node

    public init(name: [UInt8], fileID: UInt64?, kind: NodeKind, metadata: Node) {
        self.name = name
        self.fileID = fileID
        self.kind = kind
        self.metadata = metadata
    }
}

/// A data dir's state at one position, as changes against a base tree: the listings of
/// the directories that changed, which files changed, and the bytes of their changed ranges.
public struct DeltaSnapshotInput: Sendable {
    /// Walked directories by path relative to the data dir ("" is the root).
    public var directories: [String: [CutListing]]
    /// Files (by id) whose node must be rebuilt from its listed metadata.
    public var changed: Set<UInt64>
    /// Files created since the base: no base content.
    public var created: Set<UInt64>
    /// New bytes per file, sorted by offset, not overlapping.
    public var overlays: [UInt64: [(offset: UInt64, bytes: [UInt8])]]
    public var root: Snapshot.RootMetadata
    public var position: Position?

    public init(
        directories: [String: [CutListing]], changed: Set<UInt64>, created: Set<UInt64>,
        overlays: [UInt64: [(offset: UInt64, bytes: [UInt8])]], root: Snapshot.RootMetadata, position: Position?
    ) {
        self.directories = directories
        self.changed = changed
        self.created = created
        self.overlays = overlays
        self.root = root
        self.position = position
    }
}

/// Writes snapshots of a captured data dir from its cuts: content is patched from a base
/// tree (the previous snapshot, or a scan made just before the cut) with only the changed
/// ranges; directories that did not change keep their trees.
///
/// One writer per snapshot. It holds a shared repository lock from `init` to `commit` or
/// `abandon`.
public final class DeltaSnapshotWriter {
    let repository: Repository
    let index: BlobIndex
    let reader: BlobReader
    let lock: RepositoryLock
    private var dataPack: PackWriter?
    private var treePack: PackWriter?
    private var written: [(id: ObjectID, entries: [PackEntry])] = []
    private var session = Set<ObjectID>()
    public private(set) var stats = Snapshot.Summary(
        files: 0, directories: 0, otherEntries: 0, totalBytes: 0, bytesRead: 0, filesUnchanged: 0, newBlobs: 0,
        newBytes: 0, storedBytes: 0, durationSeconds: 0, unreadable: 0)
    /// Bytes of base blobs read back to patch files.
    public private(set) var baseBytesRead: UInt64 = 0
    private let started = monotonicSeconds()

    public init(repository: Repository, epoch: UInt64) throws {
        self.repository = repository
        lock = try RepositoryLock.acquire(repository, operation: "backup", exclusive: false, wait: 30, epoch: epoch)
        do {
            index = try repository.loadIndex()
        } catch {
            try? lock.release()
            throw error
        }
        reader = BlobReader(repository: repository, index: index)
    }

    /// Backs up `source` with the scanning archiver, without committing a snapshot: the
    /// result is the base a cut taken right after is patched onto.
    public func scanBase(source: String, parent: ObjectID?) throws -> ObjectID {
        let archiver = try Archiver(
            repository: repository, index: index, progress: TransferProgress(),
            fixedChunkSize: DeltaSnapshotWriter.blockSize, warn: { _ in })
        defer { archiver.abandon() }
        var parentNodes: [[UInt8]: Node]?
        if let parent { parentNodes = archiver.loadParentTree(parent, what: "the previous snapshot") }
        let tree = try archiver.archive(FSPath(source), parentNodes: parentNodes)
        written.append(contentsOf: try archiver.finish())
        stats.bytesRead += archiver.stats.bytesRead
        stats.newBlobs += archiver.stats.newBlobs
        stats.newBytes += archiver.stats.newBytes
        stats.storedBytes += archiver.stats.storedBytes
        return tree
    }

    /// The tree of a committed snapshot.
    public func tree(ofSnapshot id: ObjectID) throws -> ObjectID {
        try repository.loadSnapshot(id).treeID
    }

    /// Builds the new tree from `base` (a tree id) and `input`. Throws `MissingBase` when an
    /// unchanged entry is not in the base (the caller then scans a new base).
    public func build(base: ObjectID?, input: DeltaSnapshotInput) throws -> ObjectID {
        var baseByID: [UInt64: Node] = [:]
        var baseByPath: [String: [[UInt8]: Node]] = [:]
        if let base {
            // The base listings of the walked directories: every unchanged entry of a walked
            // directory was in one of them (a move is a change of both directories).
            let paths = input.directories.keys.sorted { $0.count < $1.count }
            var trees: [String: ObjectID] = ["": base]
            for path in paths {
                guard let treeID = trees[path] else { continue }
                let nodes = try TreeFormat.decode(try reader.read(treeID), id: treeID)
                var byName: [[UInt8]: Node] = [:]
                for node in nodes {
                    byName[node.name] = node
                    if let id = DeltaSnapshotWriter.fileID(of: node) { baseByID[id] = node }
                    if node.kind == .directory, let subtree = node.subtree {
                        trees[path.isEmpty ? node.nameString : path + "/" + node.nameString] = subtree
                    }
                }
                baseByPath[path] = byName
            }
        }
        return try buildDirectory("", input: input, baseByID: baseByID, baseByPath: baseByPath)
    }

    /// An unchanged entry that the base does not have.
    public struct MissingBase: Error, CustomStringConvertible {
        public let path: String
        public var description: String { "\(path) is unchanged but not in the base snapshot" }
    }

    private func buildDirectory(
        _ path: String, input: DeltaSnapshotInput, baseByID: [UInt64: Node], baseByPath: [String: [[UInt8]: Node]]
    ) throws -> ObjectID {
        guard let entries = input.directories[path] else { throw MissingBase(path: path) }
        var nodes: [Node] = []
        nodes.reserveCapacity(entries.count)
        for entry in entries {
            let childPath =
                path.isEmpty
                ? String(decoding: entry.name, as: UTF8.self) : path + "/" + String(decoding: entry.name, as: UTF8.self)
            let base = entry.fileID.flatMap { baseByID[$0] } ?? baseByPath[path]?[entry.name]
            let changed = entry.fileID.map { input.changed.contains($0) } ?? (base == nil)
            var node: Node
            if !changed, var reused = base, reused.kind == entry.kind {
                reused.name = entry.name
                node = reused
            } else {
                node = entry.metadata
                node.name = entry.name
                if entry.kind == .file {
                    let baseContent =
                        (entry.fileID.map { input.created.contains($0) } ?? false) ? [] : (base?.content ?? [])
                    if base == nil && !(entry.fileID.map { input.created.contains($0) } ?? false) {
                        throw MissingBase(path: childPath)
                    }
                    node.content = try patch(
                        baseContent, size: node.size, overlays: entry.fileID.flatMap { input.overlays[$0] } ?? [])
                    let layers = entry.fileID.flatMap { input.overlays[$0] } ?? []
                    for layer in layers { stats.bytesRead += UInt64(layer.bytes.count) }
                }
            }
            if entry.kind == .directory {
                if input.directories[childPath] != nil {
                    node.subtree = try buildDirectory(
                        childPath, input: input, baseByID: baseByID, baseByPath: baseByPath)
                } else if let subtree = base?.subtree {
                    node.subtree = subtree
                } else {
                    throw MissingBase(path: childPath)
                }
                stats.directories += 1
            } else if entry.kind == .file {
                stats.files += 1
                stats.totalBytes += node.size
                if !changed { stats.filesUnchanged += 1 }
            } else {
                stats.otherEntries += 1
            }
            nodes.append(node)
        }
        let bytes = TreeFormat.encode(nodes)
        let id = ObjectID.hash(bytes)
        try bytes.withUnsafeBytes { try store(id, type: .tree, raw: $0) }
        return id
    }

    /// The file id a node carries in its xattrs.
    static func fileID(of node: Node) -> UInt64? {
        guard let xattr = node.xattrs.first(where: { $0.name == Array(ReservedXattr.fileID.utf8) }),
            xattr.value.count == 8
        else { return nil }
        return xattr.value.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
    }

    // MARK: - content

    /// The content of a file of `size` bytes: `base` with `overlays` laid over it. Pieces of
    /// the base that no overlay touches are kept; touched ones are read back, patched and
    /// chunked again; bytes past the base's end that no overlay covers are holes.
    func patch(
        _ base: [ContentPiece], size: UInt64, overlays: [(offset: UInt64, bytes: [UInt8])]
    ) throws
        -> [ContentPiece]
    {
        // Overlays clipped to the size.
        var layers: [(offset: UInt64, bytes: [UInt8])] = []
        for layer in overlays where layer.offset < size {
            let end = min(layer.offset + UInt64(layer.bytes.count), size)
            layers.append((layer.offset, Array(layer.bytes[0..<Int(end - layer.offset)])))
        }
        func touches(_ start: UInt64, _ end: UInt64) -> Bool {
            layers.contains { $0.offset < end && $0.offset + UInt64($0.bytes.count) > start }
        }
        var result: [ContentPiece] = []
        var offset: UInt64 = 0
        var spanStart: UInt64 = 0
        var spanBytes: [UInt8]?
        func flushSpan() throws {
            guard var bytes = spanBytes else { return }
            spanBytes = nil
            let spanEnd = spanStart + UInt64(bytes.count)
            for layer in layers {
                let from = max(layer.offset, spanStart)
                let to = min(layer.offset + UInt64(layer.bytes.count), spanEnd)
                guard from < to else { continue }
                bytes.withUnsafeMutableBytes { target in
                    layer.bytes.withUnsafeBytes { source in
                        (target.baseAddress! + Int(from - spanStart)).copyMemory(
                            from: source.baseAddress! + Int(from - layer.offset), byteCount: Int(to - from))
                    }
                }
            }
            result.append(contentsOf: try storeContent(bytes))
        }
        for piece in base {
            guard offset < size else { break }
            let length = min(piece.length, size - offset)
            let end = offset + length
            if touches(offset, end) || length < piece.length {
                if spanBytes == nil {
                    spanStart = offset
                    spanBytes = []
                }
                switch piece {
                case .blob(let id, _):
                    let data = try reader.read(id)
                    baseBytesRead += UInt64(data.count)
                    spanBytes!.append(contentsOf: data.prefix(Int(length)))
                case .hole:
                    spanBytes!.append(contentsOf: repeatElement(0, count: Int(length)))
                }
            } else {
                try flushSpan()
                result.append(piece)
            }
            offset = end
        }
        try flushSpan()
        // Past the base's end: overlays are data, gaps are holes.
        while offset < size {
            if let layer = layers.first(where: { $0.offset + UInt64($0.bytes.count) > offset && $0.offset < size }),
                layer.offset <= offset
            {
                // Contiguous overlay bytes starting at `offset`.
                var bytes: [UInt8] = []
                var cursor = offset
                for next in layers where next.offset + UInt64(next.bytes.count) > cursor {
                    if next.offset > cursor { break }
                    bytes.append(contentsOf: next.bytes[Int(cursor - next.offset)...])
                    cursor = next.offset + UInt64(next.bytes.count)
                }
                result.append(contentsOf: try storeContent(bytes))
                offset = cursor
            } else {
                let next = layers.map(\.offset).filter { $0 > offset }.min() ?? size
                result.append(.hole(length: min(next, size) - offset))
                offset = min(next, size)
            }
        }
        return result
    }

    /// Block size of captured files' content: a database page write touches one block, so a
    /// snapshot reads back and stores one block per changed region instead of a 256 KiB
    /// content-defined chunk.
    public static let blockSize = 64 << 10

    /// Cuts `bytes` into blocks, stores new ones, returns the pieces (all-zero blocks become holes).
    func storeContent(_ bytes: [UInt8]) throws -> [ContentPiece] {
        var pieces: [ContentPiece] = []
        try bytes.withUnsafeBytes { raw in
            var start = 0
            while start < raw.count {
                let length = min(DeltaSnapshotWriter.blockSize, raw.count - start)
                let chunk = UnsafeRawBufferPointer(rebasing: raw[start..<(start + length)])
                if chunk.allSatisfy({ $0 == 0 }) {
                    if case .hole(let previous)? = pieces.last {
                        pieces[pieces.count - 1] = .hole(length: previous + UInt64(length))
                    } else {
                        pieces.append(.hole(length: UInt64(length)))
                    }
                } else {
                    let id = ObjectID.hash(chunk)
                    try store(id, type: .data, raw: chunk)
                    pieces.append(.blob(id, length: UInt32(length)))
                }
                start += length
            }
        }
        return pieces
    }

    private func store(_ id: ObjectID, type: BlobType, raw: UnsafeRawBufferPointer) throws {
        if index.contains(id) || session.contains(id) { return }
        session.insert(id)
        if type == .data, dataPack == nil {
            dataPack = try PackWriter(repository: repository.paths, io: repository.io)
        }
        if type == .tree, treePack == nil {
            treePack = try PackWriter(repository: repository.paths, io: repository.io)
        }
        let writer = type == .data ? dataPack! : treePack!
        if let compressed = repository.zstd.compress(raw) {
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
        if writer.size >= UInt64(repository.config.packSize) { try finishPack(type) }
    }

    private func finishPack(_ type: BlobType) throws {
        guard let writer = type == .data ? dataPack : treePack else { return }
        if type == .data { dataPack = nil } else { treePack = nil }
        let result = try writer.finish()
        index.insert(pack: result.id, entries: result.entries)
        written.append(result)
    }

    // MARK: - commit

    /// Finishes the packs, writes the index and the snapshot manifest (in that order), and
    /// releases the lock. Returns the snapshot id.
    public func commit(
        tree: ObjectID, input: DeltaSnapshotInput, host: String, workload: String, source: String, tags: [String],
        parent: ObjectID?, epoch: UInt64
    ) throws -> (id: ObjectID, snapshot: Snapshot) {
        defer { try? lock.release() }
        try finishPack(.data)
        try finishPack(.tree)
        try lock.ensureHeld()
        if !written.isEmpty { try repository.writeIndex(written) }
        stats.durationSeconds = monotonicSeconds() - started
        let snapshot = Snapshot(
            version: Snapshot.formatVersion, time: .now(), host: host, workload: workload, tags: tags, paths: [source],
            parent: parent?.hex, tree: tree.hex, root: input.root, position: input.position, epoch: epoch,
            summary: stats, program: LifeboatVersion.string)
        try lock.ensureHeld()
        try repository.checkEpoch(epoch, workload: workload)
        let id = try repository.writeSnapshot(snapshot)
        reader.closePacks()
        return (id, snapshot)
    }

    /// After a failure: removes unfinished packs' temp files and releases the lock. Finished
    /// packs stay (unreferenced until a later index names them; prune removes them).
    public func abandon() {
        dataPack?.abandon()
        treePack?.abandon()
        dataPack = nil
        treePack = nil
        reader.closePacks()
        try? lock.release()
    }
}
