import Glibc
import LifeboatJournal
import Synchronization

/// One backing inode the kernel knows about: an O_PATH descriptor that pins it, its file id
/// (which is also its FUSE node id), and the kernel's lookup count.
final class Inode: Sendable {
    let id: FileID
    /// O_PATH descriptor of the backing inode; closed when the kernel forgets it.
    let fd: Int32
    let device: UInt64
    let number: UInt64
    /// The file type bits (`st_mode & S_IFMT`).
    let kind: mode_t
    /// Serializes a change to this inode with its journal record, so the records of one file
    /// are in the order the changes were made.
    let mutation = Mutex(())

    var isSymlink: Bool { kind == S_IFLNK }

    init(id: FileID, fd: Int32, device: UInt64, number: UInt64, kind: mode_t) {
        self.id = id
        self.fd = fd
        self.device = device
        self.number = number
        self.kind = kind
    }
}

/// The inode table of the low-level FUSE API: node id → inode with lookup counts, and
/// (device, inode number) → node id so every name of a hard-linked file maps to one node.
final class InodeTable: Sendable {
    private struct Key: Hashable {
        var device: UInt64
        var number: UInt64
    }

    private struct Entry {
        var inode: Inode
        var lookups: UInt64
    }

    private struct State {
        var byID: [FileID: Entry] = [:]
        var byKey: [Key: FileID] = [:]
    }

    private let state = Mutex(State())

    /// Adds the root, which is never forgotten.
    init(root: Inode) {
        state.withLock { state in
            state.byID[root.id] = Entry(inode: root, lookups: 1 << 62)
            state.byKey[Key(device: root.device, number: root.number)] = root.id
        }
    }

    func inode(_ id: FileID) -> Inode? {
        state.withLock { $0.byID[id]?.inode }
    }

    /// The known inode for a backing (device, inode number), counting one more lookup.
    func lookup(device: UInt64, number: UInt64) -> Inode? {
        state.withLock { state in
            guard let id = state.byKey[Key(device: device, number: number)], var entry = state.byID[id] else {
                return nil
            }
            entry.lookups += 1
            state.byID[id] = entry
            return entry.inode
        }
    }

    /// Adds a newly opened inode with one lookup. If another thread added the same backing
    /// inode first, that one gets the lookup and `inode`'s descriptor is closed.
    func insert(_ inode: Inode) -> Inode {
        let existing: Inode? = state.withLock { state in
            let key = Key(device: inode.device, number: inode.number)
            if let id = state.byKey[key], var entry = state.byID[id] {
                entry.lookups += 1
                state.byID[id] = entry
                return entry.inode
            }
            if var entry = state.byID[inode.id] {
                // The same file id on a different backing inode (a copy made outside Lifeboat):
                // keep the first; the caller gets it.
                entry.lookups += 1
                state.byID[inode.id] = entry
                return entry.inode
            }
            state.byID[inode.id] = Entry(inode: inode, lookups: 1)
            state.byKey[key] = inode.id
            return nil
        }
        if let existing {
            close(inode.fd)
            return existing
        }
        return inode
    }

    /// Counts one more lookup of a known node (link, and create of a name the kernel knows).
    func addLookup(_ id: FileID) {
        state.withLock { state in
            state.byID[id]?.lookups += 1
        }
    }

    /// Drops `count` lookups; the inode's descriptor is closed when none are left.
    func forget(_ id: FileID, count: UInt64) {
        let closed: Inode? = state.withLock { state in
            guard var entry = state.byID[id] else { return nil }
            entry.lookups -= min(entry.lookups, count)
            if entry.lookups > 0 {
                state.byID[id] = entry
                return nil
            }
            state.byID[id] = nil
            state.byKey[Key(device: entry.inode.device, number: entry.inode.number)] = nil
            return entry.inode
        }
        if let closed { close(closed.fd) }
    }

    /// Closes every descriptor (at unmount).
    func removeAll() {
        let all = state.withLock { state in
            let all = state.byID.values.map(\.inode)
            state = State()
            return all
        }
        for inode in all { close(inode.fd) }
    }

    var count: Int { state.withLock { $0.byID.count } }
}
