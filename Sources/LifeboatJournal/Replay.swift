import CLifeboatPosix
import Glibc
import LifeboatCore

/// Applies journal records to a directory tree that holds a data dir's state at an earlier
/// position (a restored snapshot), bringing it to a later one.
///
/// Files are found by the file ids in their `trusted.lifeboat.fid` xattrs; the tree is indexed
/// once at the start. Every record sets the times it carries, so the result matches the live
/// data dir's contents and metadata. Runs as root (owners, trusted xattrs).
public final class Replayer {
    public let root: String
    /// Paths (relative to root, "" for the root) of every name of each file id.
    private var paths: [FileID: [String]] = [:]
    private var openFiles: [FileID: Int32] = [:]
    public private(set) var applied = 0
    /// Records about files that have no name any more (unlinked while open): nothing visible
    /// changes, so they are counted and skipped.
    public private(set) var skippedNameless = 0

    public init(root: String) throws {
        self.root = root
        umask(0)
        paths[FileID.root] = [""]
        try index("")
    }

    deinit { closeFiles() }

    /// Applies one record. Throws (with the record's position) if the tree does not match
    /// what the record expects: the tree is not the state right before this record.
    public func apply(_ record: JournalRecord) throws {
        let mutation = try Mutation(record: record)
        do {
            try apply(mutation)
            applied += 1
        } catch let error as ReplayProblem {
            throw LifeboatError(
                .integrity, "cannot replay journal record \(record.position) (\(mutation.kind)): \(error.text)",
                hint: "the tree is not the state the journal continues from")
        }
    }

    /// Closes the files kept open between records.
    public func closeFiles() {
        for fd in openFiles.values { close(fd) }
        openFiles.removeAll()
    }

    // MARK: - index

    private func index(_ relative: String) throws {
        let dirPath = full(relative)
        guard let dir = opendir(dirPath) else {
            throw LifeboatError(.operationFailed, "cannot read \(dirPath): \(String(cString: strerror(errno)))")
        }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name == "." || name == ".." { continue }
            let child = relative.isEmpty ? name : relative + "/" + name
            if let id = readID(child) { paths[id, default: []].append(child) }
            if entry.pointee.d_type == UInt8(DT_DIR) { try index(child) }
        }
    }

    private func full(_ relative: String) -> String { relative.isEmpty ? root : root + "/" + relative }

    private func readID(_ relative: String) -> FileID? {
        var value: UInt64 = 0
        let got = withUnsafeMutableBytes(of: &value) {
            lifeboat_lgetxattr(full(relative), FileID.xattrName, $0.baseAddress, 8)
        }
        return got == 8 ? UInt64(littleEndian: value) : nil
    }

    private func writeID(_ id: FileID, _ relative: String) throws {
        var value = id.littleEndian
        let rc = withUnsafeBytes(of: &value) {
            lifeboat_lsetxattr(full(relative), FileID.xattrName, $0.baseAddress, 8, 0)
        }
        if rc != 0 { throw ReplayProblem("cannot set the file id of \(relative): \(String(cString: strerror(errno)))") }
    }

    // MARK: - applying

    private struct ReplayProblem: Error {
        let text: String
        init(_ text: String) { self.text = text }
    }

    private func path(of id: FileID) throws -> String {
        guard let path = paths[id]?.first else { throw ReplayProblem("file \(hex(id)) is not in the tree") }
        return path
    }

    private func entryPath(_ parent: FileID, _ name: [UInt8]) throws -> String {
        let dir = try path(of: parent)
        let text = String(decoding: name, as: UTF8.self)
        guard !name.contains(UInt8(ascii: "/")), !name.isEmpty, text != ".", text != ".." else {
            throw ReplayProblem("bad name \(text)")
        }
        return dir.isEmpty ? text : dir + "/" + text
    }

    private func check(_ rc: Int32, _ what: String) throws {
        if rc != 0 { throw ReplayProblem("\(what): \(String(cString: strerror(errno)))") }
    }

    private func setTimes(_ relative: String, atime: FileTime?, mtime: FileTime?) throws {
        var times = [Replayer.timespec(of: atime), Replayer.timespec(of: mtime)]
        try check(utimensat(AT_FDCWD, full(relative), &times, AT_SYMLINK_NOFOLLOW), "setting times of \(relative)")
    }

    /// The open descriptor of a file (read-write), kept for the next records.
    private func descriptor(_ id: FileID) throws -> Int32? {
        if let fd = openFiles[id] { return fd }
        guard let relative = paths[id]?.first else { return nil }
        let fd = open(full(relative), O_RDWR | O_CLOEXEC | O_NOFOLLOW)
        if fd < 0 { throw ReplayProblem("cannot open \(relative): \(String(cString: strerror(errno)))") }
        if openFiles.count >= 256 { closeFiles() }
        openFiles[id] = fd
        return fd
    }

    private func forgetPath(_ id: FileID, _ relative: String) {
        paths[id]?.removeAll { $0 == relative }
        if paths[id]?.isEmpty == true {
            paths[id] = nil
            if let fd = openFiles.removeValue(forKey: id) { close(fd) }
        }
    }

    /// After `from` became `to`: every path at or below `from` moves.
    private func movePaths(from: String, to: String) {
        for (id, list) in paths {
            var changed = false
            let moved = list.map { path -> String in
                if path == from {
                    changed = true
                    return to
                }
                if path.hasPrefix(from + "/") {
                    changed = true
                    return to + path.dropFirst(from.count)
                }
                return path
            }
            if changed { paths[id] = moved }
        }
    }

    private func idAt(_ relative: String) -> FileID? {
        paths.first { $0.value.contains(relative) }?.key
    }

    private func apply(_ mutation: Mutation) throws {
        switch mutation {
        case .create(let parent, let name, let file, let mode, let uid, let gid, let rdev, let time):
            let relative = try entryPath(parent, name)
            if mode & UInt32(S_IFMT) == UInt32(S_IFREG) || mode & UInt32(S_IFMT) == 0 {
                let fd = open(full(relative), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode_t(mode & 0o7777))
                if fd < 0 { throw ReplayProblem("creating \(relative): \(String(cString: strerror(errno)))") }
                close(fd)
            } else {
                try check(mknod(full(relative), mode_t(mode), dev_t(rdev)), "creating \(relative)")
            }
            try finishCreation(
                relative, parent: parent, file: file, mode: mode & 0o7777, uid: uid, gid: gid, time: time)
        case .mkdir(let parent, let name, let file, let mode, let uid, let gid, let time):
            let relative = try entryPath(parent, name)
            try check(mkdir(full(relative), mode_t(mode & 0o7777)), "creating directory \(relative)")
            try finishCreation(
                relative, parent: parent, file: file, mode: mode & 0o7777, uid: uid, gid: gid, time: time)
        case .symlink(let parent, let name, let file, let target, let uid, let gid, let time):
            let relative = try entryPath(parent, name)
            try check(symlink(String(decoding: target, as: UTF8.self), full(relative)), "creating symlink \(relative)")
            try finishCreation(relative, parent: parent, file: file, mode: nil, uid: uid, gid: gid, time: time)
        case .link(let file, let parent, let name, let time):
            let relative = try entryPath(parent, name)
            let existing = try path(of: file)
            try check(link(full(existing), full(relative)), "linking \(relative)")
            paths[file, default: []].append(relative)
            try setTimes(try path(of: parent), atime: nil, mtime: time)
        case .unlink(let parent, let name, _, let time), .rmdir(let parent, let name, _, let time):
            let relative = try entryPath(parent, name)
            let removed = idAt(relative)
            if case .rmdir = mutation {
                try check(rmdir(full(relative)), "removing directory \(relative)")
            } else {
                try check(unlink(full(relative)), "removing \(relative)")
            }
            if let removed { forgetPath(removed, relative) }
            try setTimes(try path(of: parent), atime: nil, mtime: time)
        case .rename(let parent, let name, let newParent, let newName, let flags, _, let time):
            let from = try entryPath(parent, name)
            let to = try entryPath(newParent, newName)
            let moved = idAt(from)
            let replaced = idAt(to)
            try check(lifeboat_renameat2(AT_FDCWD, full(from), AT_FDCWD, full(to), flags), "renaming \(from) to \(to)")
            if flags & lifeboat_rename_exchange() != 0 {
                movePaths(from: from, to: "\u{0}swap")
                movePaths(from: to, to: from)
                movePaths(from: "\u{0}swap", to: to)
            } else {
                if let replaced, replaced != moved {
                    // Whatever was at `to` (and, for a dir, under it) is gone.
                    forgetPath(replaced, to)
                }
                movePaths(from: from, to: to)
            }
            try setTimes(try path(of: parent), atime: nil, mtime: time)
            if newParent != parent { try setTimes(try path(of: newParent), atime: nil, mtime: time) }
        case .write(let file, let offset, let data, let time):
            guard let fd = try descriptor(file) else {
                skippedNameless += 1
                return
            }
            var done = 0
            while done < data.count {
                let wrote = data.withUnsafeBytes {
                    pwrite(fd, $0.baseAddress! + done, data.count - done, off_t(offset) + off_t(done))
                }
                if wrote < 0 {
                    throw ReplayProblem("writing \(try path(of: file)): \(String(cString: strerror(errno)))")
                }
                done += wrote
            }
            try setFileMtime(fd, time, file)
        case .setattr(let file, let change, let time):
            guard let relative = paths[file]?.first else {
                skippedNameless += 1
                return
            }
            if let mode = change.mode { try check(chmod(full(relative), mode_t(mode)), "chmod \(relative)") }
            if change.uid != nil || change.gid != nil {
                try check(
                    lchown(full(relative), change.uid ?? uid_t.max, change.gid ?? gid_t.max), "chown \(relative)")
            }
            if let size = change.size {
                guard let fd = try descriptor(file) else { return }
                try check(ftruncate(fd, off_t(size)), "truncating \(relative)")
            }
            let mtime = change.mtime ?? (change.size != nil ? time : nil)
            if change.atime != nil || mtime != nil { try setTimes(relative, atime: change.atime, mtime: mtime) }
        case .fallocate(let file, let mode, let offset, let length, let time):
            guard let fd = try descriptor(file) else {
                skippedNameless += 1
                return
            }
            try check(lifeboat_fallocate(fd, Int32(bitPattern: mode), off_t(offset), off_t(length)), "fallocate")
            try setFileMtime(fd, time, file)
        case .setxattr(let file, let name, let value, let flags):
            guard let relative = paths[file]?.first else {
                skippedNameless += 1
                return
            }
            let rc = (String(decoding: name, as: UTF8.self)).withCString { cName in
                value.withUnsafeBytes {
                    lifeboat_lsetxattr(full(relative), cName, $0.baseAddress, value.count, Int32(bitPattern: flags))
                }
            }
            try check(rc, "setting xattr of \(relative)")
        case .removexattr(let file, let name):
            guard let relative = paths[file]?.first else {
                skippedNameless += 1
                return
            }
            try check(
                lifeboat_lremovexattr(full(relative), String(decoding: name, as: UTF8.self)),
                "removing xattr of \(relative)")
        case .assignID(let parent, let name, let file):
            let relative = try entryPath(parent, name)
            try writeID(file, relative)
            paths[file, default: []].append(relative)
        }
    }

    private func setFileMtime(_ fd: Int32, _ time: FileTime, _ file: FileID) throws {
        var times = [Replayer.timespec(of: nil), Replayer.timespec(of: time)]
        if futimens(fd, &times) != 0 { throw ReplayProblem("setting mtime of \(try path(of: file))") }
    }

    private func finishCreation(
        _ relative: String, parent: FileID, file: FileID, mode: UInt32?, uid: UInt32, gid: UInt32, time: FileTime
    ) throws {
        try check(lchown(full(relative), uid, gid), "chown \(relative)")
        if let mode { try check(chmod(full(relative), mode_t(mode)), "chmod \(relative)") }
        try writeID(file, relative)
        paths[file, default: []].append(relative)
        try setTimes(relative, atime: time, mtime: time)
        try setTimes(try path(of: parent), atime: nil, mtime: time)
    }

    /// A time for utimensat; nil is UTIME_OMIT ("leave it"), which Swift does not import.
    private static func timespec(of time: FileTime?) -> timespec {
        guard let time else { return Glibc.timespec(tv_sec: 0, tv_nsec: (1 << 30) - 2) }
        return Glibc.timespec(tv_sec: Int(time.seconds), tv_nsec: Int(time.nanoseconds))
    }

    private func hex(_ id: FileID) -> String { String(id, radix: 16) }
}
