import Glibc
import LifeboatCore
import LifeboatSystem
import Synchronization

/// What `check` found.
public struct CheckReport: Sendable {
    /// Damage: anything here means data may not restore.
    public var errors: [String] = []
    /// Harmless leftovers (unreferenced packs, temp files) that `prune` removes.
    public var warnings: [String] = []
    public var snapshots = 0
    public var packs = 0
    public var blobs = 0
    public var bytesRead: UInt64 = 0
}

extension Repository {
    /// Verifies the repository's structure: every snapshot, index file and tree readable and
    /// intact, every referenced blob indexed, every indexed pack present. With `readData`,
    /// also reads every pack and verifies every blob's checksum.
    public func check(readData: Bool, progress: TransferProgress = TransferProgress()) throws -> CheckReport {
        var report = CheckReport()
        let lock = try RepositoryLock.acquire(self, operation: "check", exclusive: false)
        defer { try? lock.release() }

        var snapshots: [SnapshotRecord] = []
        for id in try listObjects(in: paths.snapshotsDir) {
            do {
                snapshots.append(SnapshotRecord(id: id, snapshot: try loadSnapshot(id)))
            } catch let error as LifeboatError {
                report.errors.append(error.message)
            }
        }
        report.snapshots = snapshots.count

        let index = BlobIndex()
        var indexedEntries: [ObjectID: [PackEntry]] = [:]
        for id in try listObjects(in: paths.indexDir) {
            do {
                let bytes = try readVerified(paths.indexPath(id), id: id, kind: "index file")
                for pack in try IndexFormat.decode(bytes, name: id.hex) {
                    index.insert(pack: pack.id, entries: pack.entries)
                    indexedEntries[pack.id] = pack.entries
                }
            } catch let error as LifeboatError {
                report.errors.append(error.message)
            }
        }
        report.blobs = index.count

        let onDisk = try listPacks()
        report.packs = onDisk.count
        for pack in index.packs where onDisk[pack] == nil {
            report.errors.append("pack \(pack.hex) is named in the index but missing from data/")
        }
        for (pack, _) in onDisk where !index.knowsPack(pack) {
            report.warnings.append(
                "pack \(pack.hex) is not referenced by any index (left by an interrupted operation; `prune` removes it)"
            )
        }
        for dir in [paths.dataDir, paths.indexDir, paths.snapshotsDir] {
            for name in try Posix.listDirectory(dir) where name.starts(with: Array(RepositoryPaths.tempPrefix.utf8)) {
                report.warnings.append(
                    "temp file \(dir)/\(String(decoding: name, as: UTF8.self)) left by an interrupted operation (`prune` removes it)"
                )
            }
        }

        // Walk every snapshot's trees; each tree is read and verified once.
        let reader = BlobReader(repository: self, index: index)
        defer { reader.closePacks() }
        var seenTrees = Set<ObjectID>()
        var missingData = Set<ObjectID>()
        for record in snapshots {
            var stack: [(ObjectID, String)] = [(record.snapshot.treeID, "/")]
            while let (treeID, path) = stack.popLast() {
                guard seenTrees.insert(treeID).inserted else { continue }
                let nodes: [Node]
                do {
                    nodes = try TreeFormat.decode(try reader.read(treeID), id: treeID)
                } catch let error as LifeboatError {
                    report.errors.append("snapshot \(record.id.short), directory \(path): \(error.message)")
                    continue
                }
                for node in nodes {
                    if let subtree = node.subtree { stack.append((subtree, path + node.nameString + "/")) }
                    for piece in node.content {
                        guard case .blob(let id, let length) = piece else { continue }
                        guard let location = index.lookup(id) else {
                            if missingData.insert(id).inserted {
                                report.errors.append(
                                    "snapshot \(record.id.short), file \(path)\(node.nameString): blob \(id.hex) is missing from the index"
                                )
                            }
                            continue
                        }
                        if location.rawLength != length {
                            report.errors.append(
                                "snapshot \(record.id.short), file \(path)\(node.nameString): blob \(id.hex) has length \(location.rawLength) in the index, \(length) in the tree"
                            )
                        }
                    }
                }
            }
        }

        if readData {
            for pack in index.packs where onDisk[pack] != nil {
                let problems = verifyPack(
                    pack, size: onDisk[pack]!, indexed: indexedEntries[pack] ?? [], progress: progress)
                report.errors.append(contentsOf: problems)
                report.bytesRead += onDisk[pack]!
            }
        }
        return report
    }

    /// Reads one pack whole and verifies its trailer, every blob, and agreement with the index.
    func verifyPack(_ pack: ObjectID, size: UInt64, indexed: [PackEntry], progress: TransferProgress) -> [String] {
        let path = paths.packPath(pack)
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return ["pack \(pack.hex): cannot open: \(errnoText(errno))"] }
        defer { close(fd) }
        let trailer: [PackEntry]
        do {
            trailer = try PackFormat.readTrailer(fd: fd, size: size, name: pack.hex)
        } catch let error as LifeboatError {
            return [error.message]
        } catch {
            return ["pack \(pack.hex): \(error)"]
        }
        var problems: [String] = []
        var header = [UInt8](repeating: 0, count: PackFormat.headerMagic.count)
        if header.withUnsafeMutableBytes({ Posix.pread(fd, $0, offset: 0) }) != header.count
            || header != PackFormat.headerMagic
        {
            problems.append("pack \(pack.hex) has a damaged header")
        }
        if Set(trailer.map(\.id)) != Set(indexed.map(\.id)) || trailer.count != indexed.count {
            problems.append("pack \(pack.hex): its trailer lists other blobs than the index says")
        }
        let found = SlotArray<String?>(count: trailer.count, initial: nil)
        let zstd = self.zstd
        try? parallelFor(trailer.count) { i in
            let entry = trailer[i]
            var got = 0
            let stored = [UInt8](unsafeUninitializedCapacity: Int(entry.length)) { buffer, initialized in
                got = Posix.pread(fd, UnsafeMutableRawBufferPointer(buffer), offset: UInt64(entry.offset))
                initialized = max(got, 0)
            }
            guard got == Int(entry.length) else {
                found[i] = "pack \(pack.hex): blob \(entry.id.hex) could not be read"
                return
            }
            let location = BlobLocation(
                pack: 0, offset: entry.offset, length: entry.length, rawLength: entry.rawLength, type: entry.type,
                compressed: entry.compressed)
            do {
                _ = try BlobReader.decode(stored, id: entry.id, location: location, zstd: zstd, packName: pack.hex)
            } catch let error as LifeboatError {
                found[i] = error.message
            }
            progress.bytes.add(UInt64(entry.length), ordering: .relaxed)
        }
        for i in 0..<trailer.count {
            if let problem = found[i] { problems.append(problem) }
        }
        return problems
    }
}
