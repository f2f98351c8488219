import Foundation
public import LifeboatAPI
import LifeboatCapture
public import LifeboatCore
import LifeboatJournal
import LifeboatRepository
import LifeboatSystem
public import Logging
import Synchronization

/// Takes snapshots of one workload into the agent's repository, one at a time.
///
/// The first snapshot after the agent starts scans the backing dir (reading only files that
/// changed since the workload's newest snapshot in the repository), then takes a cut that
/// makes it exact; every later one reads only what the dirty map names.
public final class WorkloadSnapshots: Sendable {
    let runtime: WorkloadRuntime
    let repositoryPath: String
    let host: String
    private struct State {
        /// The snapshot the dirty map has been collecting changes since, if any.
        var base: ObjectID?
        var last: SnapshotReport?
    }
    private let state = Mutex(State())
    private let running = Mutex(())

    /// Changed bytes a delta snapshot holds in memory at most; above this a snapshot scans
    /// instead (reading whole changed files, streaming, with bounded memory).
    static let maxDeltaBytes: UInt64 = 512 << 20

    /// Asked right before a snapshot commits: nil while this host may still write the
    /// workload's snapshots (it holds the lease of the snapshot's epoch), else why not.
    let mayCommit: @Sendable () -> String?
    /// Told the position of every committed snapshot (peers may drop records through it).
    let committed: @Sendable (Position) -> Void

    init(
        runtime: WorkloadRuntime, repositoryPath: String, host: String,
        mayCommit: @escaping @Sendable () -> String? = { nil },
        committed: @escaping @Sendable (Position) -> Void = { _ in }
    ) {
        self.runtime = runtime
        self.repositoryPath = repositoryPath
        self.host = host
        self.mayCommit = mayCommit
        self.committed = committed
    }

    public var lastReport: SnapshotReport? { state.withLock { $0.last } }

    /// Takes a snapshot now and commits it. Safe to call from any thread; calls wait for
    /// one another. `positionIfEmpty` is the snapshot's position when the journal holds no
    /// record yet (a seed snapshot: recoveries use only snapshots with a position). A snapshot
    /// that fails is logged (an error line naming the tags) and the error is thrown.
    public func snapshotNow(tags: [String] = [], positionIfEmpty: Position? = nil) throws -> SnapshotReport {
        do {
            return try running.withLock { _ in try takeSnapshot(tags: tags, positionIfEmpty: positionIfEmpty) }
        } catch {
            let kind = tags.isEmpty ? "snapshot" : "\(tags.joined(separator: ",")) snapshot"
            runtime.logger.error("\(kind) failed: \(error)")
            throw error
        }
    }

    private func takeSnapshot(tags: [String], positionIfEmpty: Position?) throws -> SnapshotReport {
        let name = runtime.configuration.name
        let repository = try Repository.open(at: repositoryPath)
        let started = Date()
        let startedNanoseconds = monotonicNanoseconds()
        let epoch = runtime.journal.epoch
        let writer = try DeltaSnapshotWriter(repository: repository, epoch: epoch)
        var committed = false
        defer { if !committed { writer.abandon() } }

        let previous = state.withLock { $0.base }
        var method = "delta"
        var base: ObjectID?
        var parent: ObjectID? = previous
        var cut: Cut
        var dirty: DirtySet
        let dirtyBytes = runtime.mount.dirtySummary.bytes
        if let previous, dirtyBytes <= WorkloadSnapshots.maxDeltaBytes {
            base = try writer.tree(ofSnapshot: previous)
            (cut, dirty) = try runtime.mount.takeCut(walkEverything: false)
        } else {
            method = "scan"
            if previous == nil { parent = try newestSnapshot(repository, workload: name) }
            (base, cut, dirty) = try scanThenCut(writer, parentSnapshot: parent)
        }
        var input = DeltaInputBuilder.input(from: cut)
        if input.position == nil { input.position = positionIfEmpty }
        var tree: ObjectID
        do {
            tree = try writer.build(base: base, input: input)
        } catch let missing as DeltaSnapshotWriter.MissingBase {
            // Something unchanged is not in the base (e.g. a file moved out of a directory that
            // was then removed): fall back to a scan, which covers everything.
            runtime.logger.warning("snapshot: \(missing); scanning instead")
            dirty.closeDescriptors()
            method = "scan"
            (base, cut, dirty) = try scanThenCut(writer, parentSnapshot: parent)
            input = DeltaInputBuilder.input(from: cut)
            if input.position == nil { input.position = positionIfEmpty }
            tree = try writer.build(base: base, input: input)
        } catch {
            runtime.mount.restoreDirty(dirty)
            throw error
        }
        let result: (id: ObjectID, snapshot: Snapshot)
        do {
            if let reason = mayCommit() {
                throw LifeboatError(.operationFailed, "snapshot of \(name) refused: \(reason)")
            }
            result = try writer.commit(
                tree: tree, input: input, host: host, workload: name, source: runtime.configuration.dataDir,
                tags: tags, parent: parent, epoch: epoch)
        } catch {
            runtime.mount.restoreDirty(dirty)
            throw error
        }
        committed = true
        dirty.closeDescriptors()
        var removed = 0
        let position = cut.position ?? positionIfEmpty
        if let position {
            // The journal is kept from the snapshot's position on: that is what a restore of
            // this snapshot replays, and what peers serve as the delta.
            removed = (try? runtime.journal.writer.removeSegments(through: position.seq)) ?? 0
            self.committed(position)
        }
        let stats = writer.stats
        let report = SnapshotReport(
            snapshot: result.id.hex, workload: name, position: position.map { "\($0)" }, parent: parent?.hex,
            method: method, stallMs: cut.stallSeconds * 1000,
            changedBytesRead: cut.precopiedBytes + cut.stalledBytes, changedBytesReadDuringStall: cut.stalledBytes,
            baseBytesRead: writer.baseBytesRead, scanBytesRead: method == "scan" ? stats.bytesRead : 0,
            newBytes: stats.newBytes, storedBytes: stats.storedBytes, files: stats.files, totalBytes: stats.totalBytes,
            seconds: Date().timeIntervalSince(started), journalSegmentsRemoved: removed)
        state.withLock { state in
            state.base = result.id
            state.last = report
        }
        runtime.metrics.snapshotted(
            .nanoseconds(Int64(truncatingIfNeeded: monotonicNanoseconds() &- startedNanoseconds)))
        runtime.logger.info(
            "snapshot \(result.id.short) of \(name) at \(report.position ?? "empty journal") (\(method)): stall \(String(format: "%.2f", report.stallMs)) ms, \(report.changedBytesRead) changed bytes read, \(report.newBytes) new bytes"
        )
        return report
    }

    /// Scans the backing dir into a base tree (while the service keeps writing), then takes a
    /// cut of everything that changed meanwhile.
    private func scanThenCut(
        _ writer: DeltaSnapshotWriter, parentSnapshot: ObjectID?
    ) throws
        -> (ObjectID, Cut, DirtySet)
    {
        runtime.mount.discardDirty()
        let parentTree = try parentSnapshot.map { try writer.tree(ofSnapshot: $0) }
        let base = try writer.scanBase(source: runtime.configuration.backingDir, parent: parentTree)
        let (cut, dirty) = try runtime.mount.takeCut(walkEverything: true)
        return (base, cut, dirty)
    }

    private func newestSnapshot(_ repository: Repository, workload: String) throws -> ObjectID? {
        try repository.listSnapshots().last {
            $0.snapshot.workload == workload
        }?.id
    }
}

/// Turns a capture cut into the repository's input.
enum DeltaInputBuilder {
    static func input(from cut: Cut) -> DeltaSnapshotInput {
        var directories: [String: [CutListing]] = [:]
        for (path, entries) in cut.directories {
            directories[path] = entries.compactMap { entry in
                guard let kind = NodeKind(mode: entry.status.mode) else { return nil }
                let status = entry.status
                let node = Node(
                    kind: kind, name: entry.name, mode: status.mode & 0o7777, uid: status.uid, gid: status.gid,
                    mtime: status.mtime, ctime: status.ctime, device: status.device, inode: status.inode,
                    links: status.links, size: kind == .file ? status.size : 0,
                    rdev: (kind == .characterDevice || kind == .blockDevice) ? status.rdev : 0, xattrs: entry.xattrs,
                    linkTarget: entry.linkTarget)
                return CutListing(name: entry.name, fileID: entry.fileID, kind: kind, metadata: node)
            }
        }
        var rootXattrs: [String: String]?
        let visible = cut.rootXattrs
        if !visible.isEmpty {
            rootXattrs = Dictionary(
                visible.map { (String(decoding: $0.name, as: UTF8.self), Hex.encode($0.value)) },
                uniquingKeysWith: { first, _ in first })
        }
        let root = Snapshot.RootMetadata(
            mode: cut.rootStatus.mode & 0o7777, uid: cut.rootStatus.uid, gid: cut.rootStatus.gid,
            mtime: cut.rootStatus.mtime, xattrs: rootXattrs)
        return DeltaSnapshotInput(
            directories: directories, changed: cut.changed, created: cut.created, overlays: cut.overlays, root: root,
            position: cut.position)
    }
}
