import CLifeboatPosix
import Glibc
import LifeboatCore
import LifeboatSystem

/// Applies journal records to a directory tree that holds a data dir's state at an earlier
/// position (a restored snapshot, or an empty dir for a whole journal), bringing it to a later
/// one.
///
/// Files are found by the file ids in their `trusted.lifeboat.fid` xattrs; the tree is indexed
/// once at the start. Every entry is reached relative to its parent directory's descriptor
/// (`openat` and friends), never through a whole path, so trees deeper than PATH_MAX replay
/// like any other; names are bytes and stay bytes (they need not be UTF-8). Directory
/// descriptors are cached (at most `directoryLimit` besides the root and the ones the current
/// record uses) and reopened from the nearest cached ancestor on a miss. Every record sets the
/// times it carries, so the result matches the live data dir's contents and metadata. Runs as
/// root (owners, trusted xattrs, directories of any mode). Not thread-safe: one caller at a
/// time.
public final class Replayer {
    public let root: String
    /// Every name of each file id, as (parent id, name); the root has none.
    private var names: [FileID: [Entry]] = [:]
    /// The file id of each named entry that has one.
    private var ids: [Entry: FileID] = [:]
    private var openFiles: [FileID: Int32] = [:]
    private var directories = DirectoryCache(limit: Replayer.directoryLimit)
    private var rootFD: Int32 = -1
    public private(set) var applied = 0
    /// Records about files that have no name any more (unlinked while open): nothing visible
    /// changes, so they are counted and skipped.
    public private(set) var skippedNameless = 0

    /// Directory descriptors kept open between records (besides the root's).
    static let directoryLimit = 128
    /// File descriptors kept open between records (for writes, truncations, fallocate).
    static let fileLimit = 256

    public init(root: String) throws {
        self.root = root
        do {
            try index()
        } catch let problem as ReplayProblem {
            closeFiles()
            throw LifeboatError(.operationFailed, "cannot index \(root) for replay: \(problem.text)")
        } catch {
            closeFiles()
            throw error
        }
    }

    deinit { closeFiles() }

    /// Applies one record. Throws (with the record's position) if the tree does not match
    /// what the record expects: the tree is not the state right before this record.
    public func apply(_ record: JournalRecord) throws {
        let mutation = try Mutation(record: record)
        defer { directories.unpinAll() }
        do {
            try apply(mutation)
            applied += 1
        } catch let error as ReplayProblem {
            throw LifeboatError(
                .integrity, "cannot replay journal record \(record.position) (\(mutation.kind)): \(error.text)",
                hint: "the tree is not the state the journal continues from")
        }
    }

    /// Closes the descriptors kept open between records (files and directories). A later
    /// `apply` opens what it needs again.
    public func closeFiles() {
        for fd in openFiles.values { close(fd) }
        openFiles.removeAll()
        directories.closeAll()
        if rootFD >= 0 {
            close(rootFD)
            rootFD = -1
        }
    }

    // MARK: - the tree model

    /// One name of a file: the directory it is in and its name there (bytes, no `/`).
    private struct Entry: Hashable {
        let parent: FileID
        let name: [UInt8]
    }

    private func add(_ id: FileID, _ entry: Entry) {
        names[id, default: []].append(entry)
        ids[entry] = id
    }

    /// `entry` no longer names `id`; a file left with no name is closed and forgotten.
    private func forget(_ id: FileID, _ entry: Entry) {
        if ids[entry] == id { ids[entry] = nil }
        names[id]?.removeAll { $0 == entry }
        if names[id]?.isEmpty == true {
            names[id] = nil
            if let fd = openFiles.removeValue(forKey: id) { close(fd) }
            directories.remove(id)
        }
    }

    // MARK: - index

    /// Reads every directory that has a file id, from the root down (iteratively: a deep tree
    /// needs no deep recursion and no descriptor per level).
    private func index() throws {
        var pending: [FileID] = [FileID.root]
        while let directory = pending.popLast() {
            defer { directories.unpinAll() }
            let fd = try directoryFD(directory)
            for (name, type) in try list(fd, directory) {
                guard let id = readID(fd, name) else { continue }
                add(id, Entry(parent: directory, name: name))
                var isDirectory = type == UInt8(DT_DIR)
                if type == UInt8(DT_UNKNOWN) {
                    var st = stat()
                    if withName(name, { fstatat(fd, $0, &st, AT_SYMLINK_NOFOLLOW) }) != 0 {
                        throw problem("cannot stat \(describe(directory, name))")
                    }
                    isDirectory = st.st_mode & S_IFMT == S_IFDIR
                }
                if isDirectory { pending.append(id) }
            }
        }
    }

    /// The entries of the directory `fd` holds: names (bytes) and `d_type`s.
    private func list(_ fd: Int32, _ directory: FileID) throws -> [([UInt8], UInt8)] {
        let listFD = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard listFD >= 0, let stream = fdopendir(listFD) else {
            let failure = problem("cannot read directory \(describe(directory))")
            if listFD >= 0 { close(listFD) }
            throw failure
        }
        defer { closedir(stream) }
        var entries: [([UInt8], UInt8)] = []
        while true {
            errno = 0
            guard let entry = readdir(stream) else {
                if errno != 0 { throw problem("cannot read directory \(describe(directory))") }
                break
            }
            let name = withUnsafeBytes(of: &entry.pointee.d_name) { raw in
                Array(raw.prefix { $0 != 0 })
            }
            if name == [46] || name == [46, 46] { continue }
            entries.append((name, entry.pointee.d_type))
        }
        return entries
    }

    // MARK: - descriptors

    private func rootDescriptor() throws -> Int32 {
        if rootFD < 0 {
            rootFD = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if rootFD < 0 { throw problem("cannot open \(root)") }
        }
        return rootFD
    }

    /// A descriptor of directory `id`, valid until the current record is done. On a cache miss
    /// the chain of parents is walked up to the nearest open ancestor and opened down from it,
    /// one name at a time.
    private func directoryFD(_ id: FileID) throws -> Int32 {
        if id == FileID.root { return try rootDescriptor() }
        if let fd = directories.use(id) {
            directories.pin(id)
            return fd
        }
        var chain: [FileID] = []
        var current = id
        var fd: Int32
        while true {
            guard let link = names[current]?.first else {
                throw ReplayProblem("directory \(hex(current)) is not in the tree")
            }
            chain.append(current)
            if link.parent == FileID.root {
                fd = try rootDescriptor()
                break
            }
            if let open = directories.use(link.parent) {
                fd = open
                break
            }
            current = link.parent
            if chain.count > names.count { throw ReplayProblem("directory \(hex(id)) is inside itself") }
        }
        for directory in chain.reversed() {
            let name = names[directory]![0].name
            let next = withName(name) { openat(fd, $0, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
            if next < 0 { throw problem("cannot open directory \(describe(directory))") }
            // May close older unpinned descriptors, `fd` among them: it is not used again.
            directories.insert(directory, next)
            fd = next
        }
        directories.pin(id)
        return fd
    }

    /// Where file `id` is: its parent's descriptor and its name there (the root is "." in
    /// itself). Nil for a file with no name any more.
    private func location(_ id: FileID) throws -> (directory: Int32, name: [UInt8])? {
        if id == FileID.root { return (try rootDescriptor(), [46]) }
        guard let link = names[id]?.first else { return nil }
        return (try directoryFD(link.parent), link.name)
    }

    private func existingLocation(_ id: FileID) throws -> (directory: Int32, name: [UInt8]) {
        guard let found = try location(id) else { throw ReplayProblem("file \(hex(id)) is not in the tree") }
        return found
    }

    /// The open descriptor of a file (read-write), kept for the next records.
    private func descriptor(_ id: FileID) throws -> Int32? {
        if let fd = openFiles[id] { return fd }
        guard let (directory, name) = try location(id) else { return nil }
        let fd = withName(name) { openat(directory, $0, O_RDWR | O_CLOEXEC | O_NOFOLLOW) }
        if fd < 0 { throw problem("cannot open \(describe(id))") }
        if openFiles.count >= Replayer.fileLimit {
            for open in openFiles.values { close(open) }
            openFiles.removeAll()
        }
        openFiles[id] = fd
        return fd
    }

    // MARK: - file ids and xattrs

    /// `/proc/self/fd/D/NAME`: reaches an entry (not following it) for the l*xattr calls,
    /// which have no *at variants.
    private func entryPath(_ directory: Int32, _ name: [UInt8]) -> [UInt8] {
        Array("/proc/self/fd/\(directory)/".utf8) + name
    }

    private func readID(_ directory: Int32, _ name: [UInt8]) -> FileID? {
        var value: UInt64 = 0
        let got = withName(entryPath(directory, name)) { path in
            withUnsafeMutableBytes(of: &value) { lifeboat_lgetxattr(path, FileID.xattrName, $0.baseAddress, 8) }
        }
        return got == 8 ? UInt64(littleEndian: value) : nil
    }

    private func writeID(_ id: FileID, _ directory: Int32, _ name: [UInt8], _ what: @autoclosure () -> String) throws {
        var value = id.littleEndian
        let rc = withName(entryPath(directory, name)) { path in
            withUnsafeBytes(of: &value) { lifeboat_lsetxattr(path, FileID.xattrName, $0.baseAddress, 8, 0) }
        }
        if rc != 0 { throw problem("cannot set the file id of \(what())") }
    }

    // MARK: - applying

    private struct ReplayProblem: Error {
        let text: String
        init(_ text: String) { self.text = text }
    }

    private func checkName(_ name: [UInt8]) throws {
        guard !name.isEmpty, !name.contains(UInt8(ascii: "/")), !name.contains(0), name != [46], name != [46, 46]
        else { throw ReplayProblem("bad name \(Replayer.display(name))") }
    }

    private func check(_ rc: Int32, _ what: @autoclosure () -> String) throws {
        if rc != 0 { throw problem("\(what())") }
    }

    private func setTimes(
        _ directory: Int32, _ name: [UInt8], atime: FileTime?, mtime: FileTime?, _ what: @autoclosure () -> String
    ) throws {
        var times = [Replayer.timespec(of: atime), Replayer.timespec(of: mtime)]
        let rc = withName(name) { utimensat(directory, $0, &times, AT_SYMLINK_NOFOLLOW) }
        if rc != 0 { throw problem("setting times of \(what())") }
    }

    /// Sets the mtime of a directory a namespace change touched.
    private func setDirectoryMtime(_ directory: Int32, _ id: FileID, _ time: FileTime) throws {
        var times = [Replayer.timespec(of: nil), Replayer.timespec(of: time)]
        if futimens(directory, &times) != 0 {
            throw problem("setting the mtime of directory \(describe(id))")
        }
    }

    private func apply(_ mutation: Mutation) throws {
        switch mutation {
        case .create(let parent, let name, let file, let mode, let uid, let gid, let rdev, let time):
            try checkName(name)
            let directory = try directoryFD(parent)
            let type = mode & UInt32(S_IFMT)
            if type == UInt32(S_IFREG) || type == 0 {
                let fd = withName(name) {
                    openat(directory, $0, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode_t(mode & 0o7777))
                }
                if fd < 0 { throw problem("creating \(describe(parent, name))") }
                close(fd)
            } else {
                try check(
                    withName(name) { mknodat(directory, $0, mode_t(mode), dev_t(rdev)) },
                    "creating \(describe(parent, name))")
            }
            try finishCreation(
                directory, parent, name, file: file, mode: mode & 0o7777, uid: uid, gid: gid, time: time)
        case .mkdir(let parent, let name, let file, let mode, let uid, let gid, let time):
            try checkName(name)
            let directory = try directoryFD(parent)
            try check(
                withName(name) { mkdirat(directory, $0, mode_t(mode & 0o7777)) },
                "creating directory \(describe(parent, name))")
            try finishCreation(
                directory, parent, name, file: file, mode: mode & 0o7777, uid: uid, gid: gid, time: time)
        case .symlink(let parent, let name, let file, let target, let uid, let gid, let time):
            try checkName(name)
            guard !target.contains(0) else { throw ReplayProblem("symlink target with a NUL byte") }
            let directory = try directoryFD(parent)
            try check(
                withName(target) { cTarget in withName(name) { symlinkat(cTarget, directory, $0) } },
                "creating symlink \(describe(parent, name))")
            try finishCreation(directory, parent, name, file: file, mode: nil, uid: uid, gid: gid, time: time)
        case .link(let file, let parent, let name, let time):
            try checkName(name)
            let (from, fromName) = try existingLocation(file)
            let directory = try directoryFD(parent)
            try check(
                withName(fromName) { old in withName(name) { linkat(from, old, directory, $0, 0) } },
                "linking \(describe(parent, name))")
            add(file, Entry(parent: parent, name: name))
            try setDirectoryMtime(directory, parent, time)
        case .unlink(let parent, let name, _, let time), .rmdir(let parent, let name, _, let time):
            try checkName(name)
            let directory = try directoryFD(parent)
            let entry = Entry(parent: parent, name: name)
            let removed = ids[entry]
            if case .rmdir = mutation {
                try check(
                    withName(name) { unlinkat(directory, $0, AT_REMOVEDIR) },
                    "removing directory \(describe(parent, name))")
            } else {
                try check(withName(name) { unlinkat(directory, $0, 0) }, "removing \(describe(parent, name))")
            }
            if let removed { forget(removed, entry) }
            try setDirectoryMtime(directory, parent, time)
        case .rename(let parent, let name, let newParent, let newName, let flags, _, let time):
            try checkName(name)
            try checkName(newName)
            let from = try directoryFD(parent)
            let to = try directoryFD(newParent)
            let fromEntry = Entry(parent: parent, name: name)
            let toEntry = Entry(parent: newParent, name: newName)
            let moved = ids[fromEntry]
            let replaced = ids[toEntry]
            try check(
                withName(name) { old in withName(newName) { lifeboat_renameat2(from, old, to, $0, flags) } },
                "renaming \(describe(parent, name)) to \(describe(newParent, newName))")
            if flags & lifeboat_rename_exchange() != 0 {
                exchange(fromEntry, moved, toEntry, replaced)
            } else if moved == nil || moved != replaced {
                // (Two names of one file: rename(2) leaves both as they are.)
                if let replaced { forget(replaced, toEntry) }
                ids[fromEntry] = nil
                if let moved {
                    ids[toEntry] = moved
                    names[moved] = names[moved]?.map { $0 == fromEntry ? toEntry : $0 }
                }
            }
            try setDirectoryMtime(from, parent, time)
            if newParent != parent { try setDirectoryMtime(to, newParent, time) }
        case .write(let file, let offset, let data, let time):
            guard let fd = try descriptor(file) else {
                skippedNameless += 1
                return
            }
            let failure = data.withUnsafeBytes { buffer -> SystemError? in
                do throws(SystemError) {
                    try FileIO.real.pwriteAll(fd, buffer, at: offset, path: describe(file))
                    return nil
                } catch {
                    return error
                }
            }
            if let failure { throw ReplayProblem("writing \(describe(file)): \(errnoText(failure.code))") }
            try setFileMtime(fd, time, file)
        case .setattr(let file, let change, let time):
            guard let (directory, name) = try location(file) else {
                skippedNameless += 1
                return
            }
            if let mode = change.mode {
                try check(withName(name) { fchmodat(directory, $0, mode_t(mode), 0) }, "chmod \(describe(file))")
            }
            if change.uid != nil || change.gid != nil {
                try check(
                    withName(name) {
                        fchownat(directory, $0, change.uid ?? uid_t.max, change.gid ?? gid_t.max, AT_SYMLINK_NOFOLLOW)
                    }, "chown \(describe(file))")
            }
            if let size = change.size {
                guard let fd = try descriptor(file) else { return }
                try check(ftruncate(fd, off_t(size)), "truncating \(describe(file))")
            }
            let mtime = change.mtime ?? (change.size != nil ? time : nil)
            if change.atime != nil || mtime != nil {
                try setTimes(directory, name, atime: change.atime, mtime: mtime, describe(file))
            }
        case .fallocate(let file, let mode, let offset, let length, let time):
            guard let fd = try descriptor(file) else {
                skippedNameless += 1
                return
            }
            try check(
                lifeboat_fallocate(fd, Int32(bitPattern: mode), off_t(offset), off_t(length)),
                "fallocate of \(describe(file))")
            try setFileMtime(fd, time, file)
        case .setxattr(let file, let name, let value, let flags):
            guard let (directory, entry) = try location(file) else {
                skippedNameless += 1
                return
            }
            let rc = withName(entryPath(directory, entry)) { path in
                withName(name) { cName in
                    value.withUnsafeBytes {
                        lifeboat_lsetxattr(path, cName, $0.baseAddress, value.count, Int32(bitPattern: flags))
                    }
                }
            }
            try check(rc, "setting xattr \(Replayer.display(name)) of \(describe(file))")
        case .removexattr(let file, let name):
            guard let (directory, entry) = try location(file) else {
                skippedNameless += 1
                return
            }
            try check(
                withName(entryPath(directory, entry)) { path in withName(name) { lifeboat_lremovexattr(path, $0) } },
                "removing xattr \(Replayer.display(name)) of \(describe(file))")
        case .assignID(let parent, let name, let file):
            try checkName(name)
            let directory = try directoryFD(parent)
            try writeID(file, directory, name, describe(parent, name))
            add(file, Entry(parent: parent, name: name))
        }
    }

    /// After RENAME_EXCHANGE: the two entries swapped files.
    private func exchange(_ first: Entry, _ firstID: FileID?, _ second: Entry, _ secondID: FileID?) {
        ids[first] = secondID
        ids[second] = firstID
        guard firstID != secondID else { return }
        if let firstID { names[firstID] = names[firstID]?.map { $0 == first ? second : $0 } }
        if let secondID { names[secondID] = names[secondID]?.map { $0 == second ? first : $0 } }
    }

    private func setFileMtime(_ fd: Int32, _ time: FileTime, _ file: FileID) throws {
        var times = [Replayer.timespec(of: nil), Replayer.timespec(of: time)]
        if futimens(fd, &times) != 0 { throw problem("setting mtime of \(describe(file))") }
    }

    /// Owner, exact mode (no umask: it is set after creation), file id and times of a new
    /// entry, and the parent's mtime.
    private func finishCreation(
        _ directory: Int32, _ parent: FileID, _ name: [UInt8], file: FileID, mode: UInt32?, uid: UInt32, gid: UInt32,
        time: FileTime
    ) throws {
        try check(
            withName(name) { fchownat(directory, $0, uid, gid, AT_SYMLINK_NOFOLLOW) }, "chown \(describe(parent, name))"
        )
        // After the chown, which drops set-user-id and set-group-id bits.
        if let mode {
            try check(withName(name) { fchmodat(directory, $0, mode_t(mode), 0) }, "chmod \(describe(parent, name))")
        }
        try writeID(file, directory, name, describe(parent, name))
        add(file, Entry(parent: parent, name: name))
        try setTimes(directory, name, atime: time, mtime: time, describe(parent, name))
        try setDirectoryMtime(directory, parent, time)
    }

    // MARK: - helpers

    /// Calls `body` with `bytes` as a NUL-terminated C string (bytes as they are: no encoding).
    private func withName<T>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) throws -> T) rethrows -> T {
        var terminated = bytes
        terminated.append(0)
        return try terminated.withUnsafeBufferPointer { buffer in
            try buffer.withMemoryRebound(to: CChar.self) { try body($0.baseAddress!) }
        }
    }

    /// A readable path of file `id` below the root, for messages: built from the names, only
    /// its last 200 characters when longer.
    private func describe(_ id: FileID) -> String {
        var components: [String] = []
        var current = id
        var steps = 0
        while current != FileID.root, let link = names[current]?.first, steps <= names.count {
            components.append(Replayer.display(link.name))
            current = link.parent
            steps += 1
        }
        if current != FileID.root { components.append("<file \(hex(current)) with no name>") }
        let path = components.reversed().joined(separator: "/")
        if path.isEmpty { return "the root" }
        return path.count > 200 ? "…" + path.suffix(200) : path
    }

    private func describe(_ parent: FileID, _ name: [UInt8]) -> String {
        parent == FileID.root ? Replayer.display(name) : describe(parent) + "/" + Replayer.display(name)
    }

    /// A name for messages: as it is when it is UTF-8, else with the other bytes as \xNN.
    static func display(_ bytes: [UInt8]) -> String {
        if let text = String(validating: bytes, as: UTF8.self) { return text }
        return bytes.map { $0 >= 0x20 && $0 < 0x7f ? String(UnicodeScalar($0)) : "\\x" + hexByte($0) }.joined()
    }

    private static func hexByte(_ byte: UInt8) -> String {
        let digits = Array("0123456789abcdef")
        return String([digits[Int(byte >> 4)], digits[Int(byte & 15)]])
    }

    /// A problem naming `what` and the current errno (read before `what` is built).
    private func problem(_ what: @autoclosure () -> String) -> ReplayProblem {
        let code = errno
        return ReplayProblem("\(what()): \(String(cString: strerror(code)))")
    }

    /// A time for utimensat; nil is UTIME_OMIT ("leave it").
    private static func timespec(of time: FileTime?) -> timespec {
        guard let time else { return FileTimes.omitted }
        return Glibc.timespec(tv_sec: Int(time.seconds), tv_nsec: Int(time.nanoseconds))
    }

    private func hex(_ id: FileID) -> String { String(id, radix: 16) }
}

/// Open directory descriptors by file id, least recently used closed first. Descriptors
/// pinned for the current record are never closed by the limit (only by `remove`).
private struct DirectoryCache {
    let limit: Int
    private var open: [FileID: (fd: Int32, used: UInt64)] = [:]
    private var pinned: Set<FileID> = []
    private var clock: UInt64 = 0

    init(limit: Int) { self.limit = limit }

    mutating func use(_ id: FileID) -> Int32? {
        guard let found = open[id] else { return nil }
        clock += 1
        open[id] = (found.fd, clock)
        return found.fd
    }

    mutating func pin(_ id: FileID) { pinned.insert(id) }
    mutating func unpinAll() { pinned.removeAll(keepingCapacity: true) }

    mutating func insert(_ id: FileID, _ fd: Int32) {
        if let old = open[id] { close(old.fd) }
        clock += 1
        open[id] = (fd, clock)
        while open.count > limit {
            guard
                let oldest = open.filter({ !pinned.contains($0.key) && $0.key != id }).min(by: {
                    $0.value.used < $1.value.used
                })
            else { break }
            close(oldest.value.fd)
            open[oldest.key] = nil
        }
    }

    mutating func remove(_ id: FileID) {
        if let old = open.removeValue(forKey: id) { close(old.fd) }
        pinned.remove(id)
    }

    mutating func closeAll() {
        for entry in open.values { close(entry.fd) }
        open.removeAll()
        pinned.removeAll()
    }
}
