import CFuse3
import CLifeboatPosix
import Foundation
import Glibc
import LifeboatJournal
import LifeboatSystem
import Synchronization

/// Holds every change back while a snapshot takes its cut.
///
/// Each change enters the gate before it touches the backing dir and leaves it after its
/// journal record; `freeze()` waits for the changes in flight, then keeps new ones waiting
/// until `thaw()`.
final class MutationGate: @unchecked Sendable {
    // @unchecked: `frozen` and `inFlight` are only touched while holding `condition`.
    private let condition = NSCondition()
    private var frozen = false
    private var inFlight = 0

    func enter() {
        condition.lock()
        while frozen { condition.wait() }
        inFlight += 1
        condition.unlock()
    }

    func leave() {
        condition.lock()
        inFlight -= 1
        if inFlight == 0 && frozen { condition.broadcast() }
        condition.unlock()
    }

    func freeze() {
        condition.lock()
        while frozen { condition.wait() }
        frozen = true
        while inFlight > 0 { condition.wait() }
        condition.unlock()
    }

    func thaw() {
        condition.lock()
        frozen = false
        condition.broadcast()
        condition.unlock()
    }

    /// Runs one change inside the gate.
    func pass<T>(_ body: () -> T) -> T {
        enter()
        defer { leave() }
        return body()
    }
}

/// Which directories each file was last seen in, so a snapshot can walk only the directories
/// on the way to a change.
final class ParentMap: Sendable {
    private let parents = Mutex<[FileID: Set<FileID>]>([:])

    func add(_ child: FileID, in parent: FileID) {
        parents.withLock { map in
            if map[child]?.contains(parent) != true { map[child, default: []].insert(parent) }
        }
    }

    /// Every directory from each of `ids` up to the root, or nil if some chain is unknown
    /// (then the caller walks everything).
    func ancestors(of ids: Set<FileID>) -> Set<FileID>? {
        parents.withLock { map in
            var result: Set<FileID> = [FileID.root]
            var pending = Array(ids)
            var seen: Set<FileID> = []
            while let id = pending.popLast() {
                if id == FileID.root || !seen.insert(id).inserted { continue }
                guard let up = map[id], !up.isEmpty else { return nil }
                for parent in up {
                    result.insert(parent)
                    pending.append(parent)
                }
            }
            return result
        }
    }
}

extension Passthrough {
    /// Names, ids and types of the entries of the directories a snapshot needs, listed while
    /// namespace changes are held back (data changes go on).
    struct Listing {
        struct Item {
            var name: String
            var fileID: FileID?
            /// File type bits from the directory entry.
            var type: UInt32
        }
        /// Listed directories by path relative to the data dir ("" is the root), with their ids.
        var directories: [String: [Item]] = [:]
        var directoryIDs: Set<FileID> = [FileID.root]
        var everything: Bool
    }

    /// The directories to list: the changed ones and those on the way to a change; nil means
    /// every directory (asked for, or some way up is unknown).
    func directoriesToList(everything: Bool, dirty: DirtySet) -> Set<FileID>? {
        if everything { return nil }
        let changed = dirty.changedFiles.union(dirty.directories)
        guard var needed = parentMap.ancestors(of: changed) else { return nil }
        // A changed or new directory is itself listed: its entries may be the change.
        needed.formUnion(changed)
        return needed
    }

    /// Lists the directories in `needed` (all when nil). Call with namespace changes held.
    func list(_ needed: Set<FileID>?) throws -> Listing {
        var listing = Listing(everything: needed == nil)
        try listDirectory(fd: root.fd, relative: "", needed: needed, into: &listing)
        return listing
    }

    private func listDirectory(
        fd dirFD: Int32, relative: String, needed: Set<FileID>?, into listing: inout Listing
    )
        throws
    {
        let listFD = Glibc.open(BackingCalls.procPath(dirFD), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard listFD >= 0, let stream = fdopendir(listFD) else {
            throw CaptureError("cannot list backing dir \(relative.isEmpty ? "/" : relative): \(errnoText(errno))")
        }
        defer { closedir(stream) }
        var items: [Listing.Item] = []
        while let raw = Glibc.readdir(stream) {
            let name = withUnsafePointer(to: &raw.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name == "." || name == ".." { continue }
            var type = UInt32(raw.pointee.d_type) << 12
            if raw.pointee.d_type == UInt8(DT_UNKNOWN) {
                var st = stat()
                guard fstatat(dirFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                    throw CaptureError("cannot stat \(relative)/\(name): \(errnoText(errno))")
                }
                type = UInt32(st.st_mode & S_IFMT)
            }
            let id = BackingCalls.readFileID(path: BackingCalls.procPath(dirFD) + "/" + name)
            items.append(Listing.Item(name: name, fileID: id, type: type))
        }
        listing.directories[relative] = items
        for item in items where item.type == 0o040000 {
            if let needed, let id = item.fileID, !needed.contains(id) { continue }
            if let id = item.fileID { listing.directoryIDs.insert(id) }
            let childFD = openat(dirFD, item.name, BackingCalls.oPath | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard childFD >= 0 else { throw CaptureError("cannot open \(relative)/\(item.name): \(errnoText(errno))") }
            defer { close(childFD) }
            try listDirectory(
                fd: childFD, relative: relative.isEmpty ? item.name : relative + "/" + item.name, needed: needed,
                into: &listing)
        }
    }

    /// The cut's entries: every listed entry, with attributes (lstat, xattrs, link target) for
    /// the changed ones and those without an id. Called with every change held back.
    func describe(
        _ listing: Listing, changed: Set<FileID>
    ) throws -> (
        directories: [String: [Cut.Entry]], rootStatus: Cut.Status, rootXattrs: [(name: [UInt8], value: [UInt8])]
    ) {
        var directories: [String: [Cut.Entry]] = [:]
        for (relative, items) in listing.directories {
            var entries: [Cut.Entry] = []
            entries.reserveCapacity(items.count)
            for item in items {
                let path = relative.isEmpty ? item.name : relative + "/" + item.name
                guard item.fileID.map({ changed.contains($0) }) ?? true else {
                    entries.append(
                        Cut.Entry(
                            name: Array(item.name.utf8), fileID: item.fileID, status: Cut.Status(type: item.type),
                            xattrs: [], linkTarget: []))
                    continue
                }
                var st = stat()
                guard fstatat(root.fd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                    throw CaptureError("cannot stat \(path) in the backing dir: \(errnoText(errno))")
                }
                var target: [UInt8] = []
                if st.st_mode & S_IFMT == S_IFLNK {
                    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                    let got = readlinkat(root.fd, path, &buffer, Int(PATH_MAX))
                    if got >= 0 { target = buffer[0..<got].map { UInt8(bitPattern: $0) } }
                }
                let attributes = try xattrs(BackingCalls.procPath(root.fd) + "/" + path, follow: false)
                entries.append(
                    Cut.Entry(
                        name: Array(item.name.utf8), fileID: item.fileID, status: Cut.Status(st), xattrs: attributes,
                        linkTarget: target))
            }
            directories[relative] = entries
        }
        let (rootStatus, err) = BackingCalls.fstat(root.fd)
        if err != 0 { throw CaptureError("cannot stat the backing dir: \(errnoText(err))") }
        return (directories, Cut.Status(rootStatus), try xattrs(BackingCalls.procPath(root.fd), follow: true))
    }

    /// The xattrs of `path`; `follow` for /proc/self/fd paths of directories.
    func xattrs(_ path: String, follow: Bool) throws -> [(name: [UInt8], value: [UInt8])] {
        let list = follow ? lifeboat_listxattr : lifeboat_llistxattr
        let get = follow ? lifeboat_getxattr : lifeboat_lgetxattr
        let size = list(path, nil, 0)
        if size <= 0 { return [] }
        var names = [CChar](repeating: 0, count: size)
        let got = list(path, &names, size)
        if got <= 0 { return [] }
        var result: [(name: [UInt8], value: [UInt8])] = []
        for name in names[0..<got].split(separator: 0) {
            let nameText = String(decoding: name.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let valueSize = get(path, nameText, nil, 0)
            if valueSize < 0 { continue }
            var value = [UInt8](repeating: 0, count: valueSize)
            let read = value.withUnsafeMutableBytes { get(path, nameText, $0.baseAddress, valueSize) }
            if read < 0 { continue }
            result.append((Array(nameText.utf8), Array(value.prefix(read))))
        }
        return result.sorted { $0.name.lexicographicallyPrecedes($1.name) }
    }
}
