import CFuse3
import CLifeboatPosix
import Foundation
import Glibc
import LifeboatJournal
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
    struct Walk {
        var rootStatus: Cut.Status
        var rootXattrs: [(name: [UInt8], value: [UInt8])]
        var directories: [String: [Cut.Entry]]
        var everything: Bool
    }

    /// Lists the directories a snapshot needs (called with every change held back).
    func walk(everything requested: Bool, dirty: DirtySet) throws -> Walk {
        var needed: Set<FileID>?
        if !requested {
            needed = parentMap.ancestors(of: dirty.changedFiles.union(dirty.directories))
            if var found = needed {
                // A changed or new directory is itself walked: its entries may be the change.
                found.formUnion(dirty.directories)
                found.formUnion(dirty.changedFiles)
                needed = found
            }
        }
        let (rootStatus, err) = BackingCalls.fstat(root.fd)
        if err != 0 { throw CaptureError("cannot stat the backing dir: \(errnoText(err))") }
        var walk = Walk(
            rootStatus: Cut.Status(rootStatus), rootXattrs: try xattrs(BackingCalls.procPath(root.fd), follow: true),
            directories: [:], everything: needed == nil)
        try walkDirectory(
            fd: root.fd, relative: "", needed: needed, changed: dirty.changedFiles.union(dirty.directories), into: &walk
        )
        return walk
    }

    private func walkDirectory(
        fd dirFD: Int32, relative: String, needed: Set<FileID>?, changed: Set<FileID>, into walk: inout Walk
    ) throws {
        let listFD = Glibc.open(BackingCalls.procPath(dirFD), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard listFD >= 0, let stream = fdopendir(listFD) else {
            throw CaptureError("cannot list backing dir \(relative.isEmpty ? "/" : relative): \(errnoText(errno))")
        }
        defer { closedir(stream) }
        var entries: [Cut.Entry] = []
        var subdirectories: [(name: String, id: FileID?)] = []
        while let raw = Glibc.readdir(stream) {
            let name = withUnsafePointer(to: &raw.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name == "." || name == ".." { continue }
            var st = stat()
            guard fstatat(dirFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                throw CaptureError("cannot stat \(relative)/\(name): \(errnoText(errno))")
            }
            let entryPath = BackingCalls.procPath(dirFD) + "/" + name
            let id = BackingCalls.readFileID(path: entryPath)
            let isChanged = id.map { changed.contains($0) } ?? true
            var target: [UInt8] = []
            if st.st_mode & S_IFMT == S_IFLNK {
                var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let got = readlinkat(dirFD, name, &buffer, Int(PATH_MAX))
                if got >= 0 { target = buffer[0..<got].map { UInt8(bitPattern: $0) } }
            }
            let attributes = isChanged || needed == nil ? try xattrs(entryPath, follow: false) : []
            entries.append(
                Cut.Entry(
                    name: Array(name.utf8), fileID: id, status: Cut.Status(st), xattrs: attributes, linkTarget: target))
            if st.st_mode & S_IFMT == S_IFDIR { subdirectories.append((name, id)) }
        }
        walk.directories[relative] = entries
        for sub in subdirectories {
            if let needed, let id = sub.id, !needed.contains(id) { continue }
            let childFD = openat(dirFD, sub.name, BackingCalls.oPath | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard childFD >= 0 else { throw CaptureError("cannot open \(relative)/\(sub.name): \(errnoText(errno))") }
            defer { close(childFD) }
            try walkDirectory(
                fd: childFD, relative: relative.isEmpty ? sub.name : relative + "/" + sub.name, needed: needed,
                changed: changed, into: &walk)
        }
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
