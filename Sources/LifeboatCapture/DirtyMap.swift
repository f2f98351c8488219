import Glibc
public import LifeboatJournal
import Synchronization

/// What changed in a captured data dir since the last snapshot: byte ranges per file,
/// files whose metadata changed, directories whose entries changed, and files created.
///
/// The passthrough marks it inside each change (under the change's locks); a snapshot swaps
/// it for an empty one and reads only what it names.
public struct DirtySet: Sendable {
    /// Changed byte ranges per file (`upperBound == .max` means "to the end of the file").
    public var ranges: [FileID: RangeSet] = [:]
    /// Files (and dirs) whose own metadata changed: mode, owner, times, size, xattrs, links.
    public var metadata: Set<FileID> = []
    /// Directories whose entries changed.
    public var directories: Set<FileID> = []
    /// Files created since the last snapshot: they have no earlier content.
    public var created: Set<FileID> = []
    /// A descriptor (O_PATH) per file with changed bytes, to read them even after a rename or
    /// an unlink. Owned by the set: `closeDescriptors()` closes them.
    public var descriptors: [FileID: Int32] = [:]

    public init() {}

    /// Every file or dir that needs a new tree node.
    public var changedFiles: Set<FileID> { metadata.union(ranges.keys).union(created) }

    public var dirtyBytes: UInt64 { ranges.values.reduce(0) { $0 + $1.boundedLength } }

    public func closeDescriptors() {
        for fd in descriptors.values { close(fd) }
    }

    /// Adds `other` (a later set) to this one.
    public mutating func merge(_ other: DirtySet) {
        for (id, set) in other.ranges { ranges[id, default: RangeSet()].formUnion(set) }
        metadata.formUnion(other.metadata)
        directories.formUnion(other.directories)
        created.formUnion(other.created)
        for (id, fd) in other.descriptors {
            if descriptors[id] == nil { descriptors[id] = fd } else { close(fd) }
        }
    }
}

/// Sorted, non-overlapping half-open byte ranges.
public struct RangeSet: Sendable, Equatable {
    public private(set) var ranges: [Range<UInt64>] = []

    public init() {}

    public init(_ ranges: [Range<UInt64>]) {
        for range in ranges { insert(range) }
    }

    public mutating func insert(_ range: Range<UInt64>) {
        guard !range.isEmpty else { return }
        var merged = range
        var result: [Range<UInt64>] = []
        result.reserveCapacity(ranges.count + 1)
        var placed = false
        for existing in ranges {
            if existing.upperBound < merged.lowerBound {
                result.append(existing)
            } else if merged.upperBound < existing.lowerBound {
                if !placed {
                    result.append(merged)
                    placed = true
                }
                result.append(existing)
            } else {
                merged = min(existing.lowerBound, merged.lowerBound)..<max(existing.upperBound, merged.upperBound)
            }
        }
        if !placed { result.append(merged) }
        ranges = result
    }

    public mutating func formUnion(_ other: RangeSet) {
        for range in other.ranges { insert(range) }
    }

    /// Total length, counting an open end (`.max`) as nothing.
    public var boundedLength: UInt64 {
        ranges.reduce(0) { $0 + ($1.upperBound == .max ? 0 : $1.upperBound - $1.lowerBound) }
    }
}

/// The live dirty map: one `DirtySet` behind a lock, swapped out by each snapshot.
public final class DirtyMap: Sendable {
    private let state = Mutex(DirtySet())

    public init() {}

    func markRange(_ inode: Inode, _ range: Range<UInt64>) {
        state.withLock { set in
            set.ranges[inode.id, default: RangeSet()].insert(range)
            set.metadata.insert(inode.id)
            if set.descriptors[inode.id] == nil {
                let fd = dup(inode.fd)
                if fd >= 0 { set.descriptors[inode.id] = fd }
            }
        }
    }

    /// Drops the changed ranges of a file that has no name left (its last link was removed):
    /// no snapshot needs them, and the kept descriptor would hold its disk space.
    func forgetIfUnlinked(_ id: FileID) {
        let closing: Int32? = state.withLock { set in
            guard let fd = set.descriptors[id] else { return nil }
            var st = stat()
            guard fstat(fd, &st) == 0, st.st_nlink == 0 else { return nil }
            set.descriptors[id] = nil
            set.ranges[id] = nil
            return fd
        }
        if let closing { close(closing) }
    }

    func markMetadata(_ id: FileID) {
        _ = state.withLock { $0.metadata.insert(id) }
    }

    func markDirectory(_ id: FileID) {
        _ = state.withLock { $0.directories.insert(id) }
    }

    func markCreated(_ id: FileID, in parent: FileID) {
        state.withLock { set in
            set.created.insert(id)
            set.metadata.insert(id)
            set.directories.insert(parent)
        }
    }

    /// Hands the current set to the caller and starts an empty one.
    public func swap() -> DirtySet {
        state.withLock { set in
            let taken = set
            set = DirtySet()
            return taken
        }
    }

    /// Puts a taken set back (a snapshot that failed): nothing it named is forgotten.
    public func restore(_ taken: DirtySet) {
        state.withLock { set in
            var combined = taken
            combined.merge(set)
            set = combined
        }
    }

    /// A copy of the current set's bookkeeping, for status (no descriptors).
    public var summary: (files: Int, directories: Int, bytes: UInt64) {
        state.withLock { ($0.changedFiles.count, $0.directories.count, $0.dirtyBytes) }
    }
}
