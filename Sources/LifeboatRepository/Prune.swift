import Glibc
import LifeboatCore
import LifeboatSystem

/// What `prune` did (or, with `dryRun`, would do).
public struct PruneReport: Sendable {
    public var packsKept = 0
    public var packsDeleted = 0
    public var packsRepacked = 0
    public var newPacks = 0
    public var bytesFreed: UInt64 = 0
    public var unusedBytesKept: UInt64 = 0
    public var indexFilesReplaced = 0
    public var tempFilesRemoved = 0
}

extension Repository {
    /// Removes data no snapshot references.
    ///
    /// Order (a crash at any step leaves a valid repository): repack still-used blobs of
    /// mostly-unused packs into new packs → write one new index covering everything kept →
    /// delete the old index files → delete the packs nothing indexes any more. Any failed
    /// listing or read aborts before anything is deleted.
    public func prune(
        maxUnusedFraction: Double = 0.1, dryRun: Bool = false, lockWait: Double = 0,
        warn: @escaping @Sendable (String) -> Void = { _ in }
    ) throws -> PruneReport {
        let lock = try RepositoryLock.acquire(self, operation: "prune", exclusive: true, wait: lockWait, warn: warn)
        defer { try? lock.release() }
        return try pruneLocked(lock: lock, maxUnusedFraction: maxUnusedFraction, dryRun: dryRun)
    }

    func pruneLocked(lock: RepositoryLock, maxUnusedFraction: Double, dryRun: Bool) throws -> PruneReport {
        var report = PruneReport()
        let snapshots = try listSnapshots()
        let indexFiles = try loadIndexFiles()
        let index = BlobIndex()
        var packEntries: [ObjectID: [PackEntry]] = [:]
        for file in indexFiles {
            for pack in file.packs {
                index.insert(pack: pack.id, entries: pack.entries)
                packEntries[pack.id] = pack.entries
            }
        }
        let onDisk = try listPacks()
        for pack in packEntries.keys where onDisk[pack] == nil {
            throw LifeboatError(
                .integrity, "pack \(pack.hex) is in the index but missing; prune stops without deleting anything",
                hint: "run `lifeboat check` and repair the repository first")
        }

        // Mark every blob a snapshot reaches.
        let reader = BlobReader(repository: self, index: index)
        defer { reader.closePacks() }
        var used = Set<ObjectID>()
        for record in snapshots {
            var stack = [record.snapshot.treeID]
            while let treeID = stack.popLast() {
                guard used.insert(treeID).inserted else { continue }
                let nodes = try TreeFormat.decode(try reader.read(treeID), id: treeID)
                for node in nodes {
                    if let subtree = node.subtree { stack.append(subtree) }
                    for piece in node.content {
                        guard case .blob(let id, _) = piece else { continue }
                        guard index.contains(id) else {
                            throw LifeboatError(
                                .integrity,
                                "snapshot \(record.id.short) needs blob \(id.hex), which is not indexed; prune stops without deleting anything",
                                hint: "run `lifeboat check`")
                        }
                        used.insert(id)
                    }
                }
            }
        }

        // Decide per pack: keep, delete, or repack.
        var keep: [ObjectID] = []
        var delete: [ObjectID] = []
        var repack: [ObjectID] = []
        for (pack, entries) in packEntries {
            let total = entries.reduce(UInt64(0)) { $0 + UInt64($1.length) }
            let usedBytes = entries.reduce(UInt64(0)) { $0 + (used.contains($1.id) ? UInt64($1.length) : 0) }
            if usedBytes == 0 {
                delete.append(pack)
            } else if Double(total - usedBytes) > Double(total) * maxUnusedFraction {
                repack.append(pack)
            } else {
                keep.append(pack)
                report.unusedBytesKept += total - usedBytes
            }
        }
        let orphans = onDisk.keys.filter { packEntries[$0] == nil }
        report.packsKept = keep.count
        report.packsRepacked = repack.count
        report.packsDeleted = delete.count + orphans.count + repack.count
        report.bytesFreed = (delete + orphans + repack).reduce(0) { $0 + (onDisk[$1] ?? 0) }
        if dryRun { return report }
        if delete.isEmpty && repack.isEmpty && orphans.isEmpty {
            report.tempFilesRemoved = try removeTempFiles()
            return report
        }

        // 1. Repack the used blobs of mostly-unused packs (each verified as it is read).
        var newPacks: [(id: ObjectID, entries: [PackEntry])] = []
        var writer: PackWriter?
        var copied = Set<ObjectID>()
        let keepSet = Set(keep)
        for pack in repack {
            for entry in packEntries[pack]! where used.contains(entry.id) && !copied.contains(entry.id) {
                // A blob that a kept pack also holds needs no copy.
                if let location = index.lookup(entry.id), keepSet.contains(index.packs[Int(location.pack)]) { continue }
                copied.insert(entry.id)
                let plain = try reader.read(entry.id)
                if writer == nil { writer = try PackWriter(repository: paths, io: io) }
                let compressed = entry.compressed ? plain.withUnsafeBytes { zstd.compress($0) } : nil
                if let compressed {
                    try compressed.withUnsafeBytes {
                        try writer!.append(
                            id: entry.id, type: entry.type, compressed: true, bytes: $0, rawLength: plain.count)
                    }
                } else {
                    try plain.withUnsafeBytes {
                        try writer!.append(
                            id: entry.id, type: entry.type, compressed: false, bytes: $0, rawLength: plain.count)
                    }
                }
                if writer!.size >= UInt64(config.packSize) {
                    newPacks.append(try writer!.finish())
                    writer = nil
                }
            }
        }
        if let open = writer { newPacks.append(try open.finish()) }
        report.newPacks = newPacks.count
        CrashPoints.reached("prune.after-repack")

        // 2. One new index for everything kept, then 3. drop the old index files.
        try lock.ensureHeld()
        let kept = keep.map { (id: $0, entries: packEntries[$0]!) } + newPacks
        let oldIndexFiles = indexFiles.map(\.id)
        var newIndexID: ObjectID?
        if !kept.isEmpty { newIndexID = try writeIndex(kept) }
        CrashPoints.reached("prune.after-index-write")
        try lock.ensureHeld()
        for id in oldIndexFiles where id != newIndexID {
            try removeFile(directory: paths.indexDir, name: id.hex)
            report.indexFilesReplaced += 1
        }
        CrashPoints.reached("prune.after-index-delete")

        // 4. Delete the packs no index names any more.
        for pack in delete + repack + orphans {
            try lock.ensureHeld()
            try removeFile(directory: paths.packDirectory(pack), name: pack.hex)
            CrashPoints.reached("prune.after-pack-delete")
        }

        report.tempFilesRemoved = try removeTempFiles()
        return report
    }

    /// Removes leftover temp files of interrupted writers (no live writer holds a lock now).
    private func removeTempFiles() throws -> Int {
        var removed = 0
        for dir in [paths.dataDir, paths.indexDir, paths.snapshotsDir] {
            for name in try Posix.listDirectory(dir) where name.starts(with: Array(RepositoryPaths.tempPrefix.utf8)) {
                let path = dir + "/" + String(decoding: name, as: UTF8.self)
                if unlink(path) == 0 { removed += 1 }
            }
        }
        return removed
    }
}
