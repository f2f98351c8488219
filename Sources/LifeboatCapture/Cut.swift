import CFuse3
import CLifeboatPosix
import Foundation
import Glibc
public import LifeboatCore
public import LifeboatJournal
import LifeboatSystem

/// A data dir's state at one journal position, as much of it as changed since the last
/// snapshot: the listings of the directories that changed (and their ancestors), the metadata
/// of every entry in them, and the bytes of every changed range. Everything else is as it
/// was in the previous snapshot.
public struct Cut: Sendable {
    /// The attributes of an entry at the cut (from lstat of the backing file).
    public struct Status: Sendable {
        /// `st_mode`: type and permission bits.
        public var mode: UInt32
        public var uid: UInt32
        public var gid: UInt32
        public var size: UInt64
        public var mtime: Timestamp
        public var ctime: Timestamp
        public var device: UInt64
        public var inode: UInt64
        public var links: UInt32
        public var rdev: UInt64

        /// Only the type, for an entry whose attributes the snapshot takes from the previous one.
        init(type: UInt32) {
            mode = type
            uid = 0
            gid = 0
            size = 0
            mtime = Timestamp(seconds: 0, nanoseconds: 0)
            ctime = mtime
            device = 0
            inode = 0
            links = 0
            rdev = 0
        }

        init(_ st: stat) {
            mode = UInt32(st.st_mode)
            uid = st.st_uid
            gid = st.st_gid
            size = UInt64(st.st_size)
            mtime = Timestamp(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: Int32(st.st_mtim.tv_nsec))
            ctime = Timestamp(seconds: Int64(st.st_ctim.tv_sec), nanoseconds: Int32(st.st_ctim.tv_nsec))
            device = UInt64(st.st_dev)
            inode = UInt64(st.st_ino)
            links = UInt32(st.st_nlink)
            rdev = UInt64(st.st_rdev)
        }
    }

    /// One entry of a walked directory, with its attributes at the cut.
    public struct Entry: Sendable {
        public var name: [UInt8]
        public var fileID: FileID?
        public var status: Status
        /// Xattrs (Lifeboat's own included), read for changed entries only.
        public var xattrs: [(name: [UInt8], value: [UInt8])]
        public var linkTarget: [UInt8]
    }

    /// The position the cut is exact at (nil: the journal is empty).
    public var position: Position?
    public var rootStatus: Status
    public var rootXattrs: [(name: [UInt8], value: [UInt8])]
    /// Walked directories by path relative to the data dir ("" is the root).
    public var directories: [String: [Entry]]
    /// True when every directory was walked (no previous snapshot to build on).
    public var walkedEverything: Bool
    /// Files and dirs whose node must be rebuilt.
    public var changed: Set<FileID>
    /// Files created since the previous snapshot (no earlier content).
    public var created: Set<FileID>
    /// Bytes at the cut of every changed range, per file, sorted by offset.
    public var overlays: [FileID: [(offset: UInt64, bytes: [UInt8])]]
    /// How long changes were held back while the cut was taken.
    public var stallSeconds: Double
    /// Changed bytes read before the stall (without holding writes back).
    public var precopiedBytes: UInt64
    /// Changed bytes read during the stall.
    public var stalledBytes: UInt64
}

extension CaptureMount {
    /// Takes a cut. `walkEverything` (a first snapshot, or one after a restart) lists every
    /// directory. Changed ranges are read in two rounds: first without holding writes back,
    /// then, with every change held back, only what changed during the first round, plus
    /// the directory listings and metadata. The hold is the stall a service sees.
    ///
    /// On failure the dirty map is put back, so no change is forgotten.
    public func takeCut(walkEverything: Bool) throws -> (cut: Cut, dirty: DirtySet) {
        let fs = passthrough
        var first = fs.dirty.swap()
        var overlays: [FileID: [(offset: UInt64, bytes: [UInt8])]] = [:]
        var precopied: UInt64 = 0
        do {
            precopied = try readRanges(first, into: &overlays)
        } catch {
            fs.dirty.restore(first)
            throw error
        }
        // Namespace changes wait from here until the cut is taken: the listing below is then
        // exact at the cut. Data changes go on until the freeze.
        return try fs.withNamespaceHeld {
            var listing: Passthrough.Listing
            do {
                listing = try fs.list(fs.directoriesToList(everything: walkEverything, dirty: first))
            } catch {
                fs.dirty.restore(first)
                throw error
            }
            let start = monotonicSeconds()
            var cut: Cut?
            var failure: (any Error)?
            fs.gate.freeze()
            let second = fs.dirty.swap()
            var merged = false
            do {
                // Read before merging: the merge closes the second set's duplicate descriptors.
                let stalled = try readRanges(second, into: &overlays)
                first.merge(second)
                merged = true
                // Changes during the listing may lie in directories it skipped: list those too.
                if !listing.everything, let needed = fs.directoriesToList(everything: false, dirty: first),
                    !needed.isSubset(of: listing.directoryIDs)
                {
                    listing = try fs.list(needed)
                } else if !listing.everything, fs.directoriesToList(everything: false, dirty: first) == nil {
                    listing = try fs.list(nil)
                }
                let changed = first.changedFiles.union(first.directories)
                let described = try fs.describe(listing, changed: changed)
                cut = Cut(
                    position: fs.journal.writer.lastPosition, rootStatus: described.rootStatus,
                    rootXattrs: described.rootXattrs, directories: described.directories,
                    walkedEverything: listing.everything, changed: changed, created: first.created, overlays: overlays,
                    stallSeconds: 0, precopiedBytes: precopied, stalledBytes: stalled)
            } catch {
                if !merged { first.merge(second) }
                failure = error
            }
            fs.gate.thaw()
            guard var result = cut else {
                fs.dirty.restore(first)
                throw failure!
            }
            result.stallSeconds = monotonicSeconds() - start
            return (result, first)
        }
    }

    /// Reads every range of `set` from the backing files into `overlays` (later reads of the
    /// same bytes replace earlier ones). Returns the bytes read.
    private func readRanges(
        _ set: DirtySet, into overlays: inout [FileID: [(offset: UInt64, bytes: [UInt8])]]
    ) throws
        -> UInt64
    {
        var total: UInt64 = 0
        for (id, ranges) in set.ranges {
            guard let pathFD = set.descriptors[id] else { continue }
            let fd = open(BackingCalls.procPath(pathFD), O_RDONLY | O_CLOEXEC)
            if fd < 0 {
                throw CaptureError("cannot open a changed file to read its changes: \(errnoText(errno))")
            }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw CaptureError("cannot stat a changed file: \(errnoText(errno))") }
            let size = UInt64(st.st_size)
            var pieces = overlays[id] ?? []
            for range in ranges.ranges {
                let end = min(range.upperBound, size)
                guard range.lowerBound < end else { continue }
                let count = Int(end - range.lowerBound)
                var bytes = [UInt8](repeating: 0, count: count)
                let read = bytes.withUnsafeMutableBytes { buffer in
                    Result { () throws(SystemError) in
                        try FileIO.real.preadAll(fd, buffer, at: range.lowerBound, path: "a changed file")
                    }
                }
                let done: Int
                switch read {
                case .success(let got): done = got
                case .failure(let error): throw CaptureError("cannot read a changed range: \(errnoText(error.code))")
                }
                bytes.removeLast(count - done)
                total += UInt64(done)
                pieces = Cut.overlay(pieces, with: (range.lowerBound, bytes))
            }
            overlays[id] = pieces
        }
        return total
    }
}

extension Cut {
    /// Lays `piece` over sorted, non-overlapping `pieces`: its bytes win where they overlap.
    static func overlay(
        _ pieces: [(offset: UInt64, bytes: [UInt8])], with piece: (offset: UInt64, bytes: [UInt8])
    ) -> [(offset: UInt64, bytes: [UInt8])] {
        let start = piece.offset
        let end = start + UInt64(piece.bytes.count)
        var result: [(offset: UInt64, bytes: [UInt8])] = []
        for existing in pieces {
            let eStart = existing.offset
            let eEnd = eStart + UInt64(existing.bytes.count)
            if eEnd <= start || eStart >= end {
                result.append(existing)
                continue
            }
            if eStart < start { result.append((eStart, Array(existing.bytes[0..<Int(start - eStart)]))) }
            if eEnd > end { result.append((end, Array(existing.bytes[Int(end - eStart)...]))) }
        }
        result.append(piece)
        result.sort { $0.offset < $1.offset }
        return result
    }
}

extension CaptureMount {
    /// Forgets what changed so far (a scan is about to read everything).
    public func discardDirty() {
        passthrough.dirty.swap().closeDescriptors()
    }

    /// Puts back a dirty set a failed snapshot took, so the next one reads it.
    public func restoreDirty(_ set: DirtySet) {
        passthrough.dirty.restore(set)
    }

    /// Files, directories and bytes changed since the last snapshot.
    public var dirtySummary: (files: Int, directories: Int, bytes: UInt64) { passthrough.dirty.summary }
}
