import CLifeboatPosix
import Glibc
import LifeboatCore

/// Reading and applying the metadata that snapshots keep: type, mode, owner, times, xattrs.
enum FileMetadata {
    /// lstat of `path`, or the errno.
    static func lstat(_ path: FSPath) -> Result<stat, LifeboatError> {
        var st = stat()
        let code = path.withCString { Glibc.lstat($0, &st) }
        return code == 0 ? .success(st) : .failure(ioError(errno, "reading metadata of", path.string))
    }

    static func kind(of st: stat) -> NodeKind? {
        switch st.st_mode & S_IFMT {
        case S_IFREG: .file
        case S_IFDIR: .directory
        case S_IFLNK: .symlink
        case S_IFIFO: .fifo
        case S_IFCHR: .characterDevice
        case S_IFBLK: .blockDevice
        case S_IFSOCK: .socket
        default: nil
        }
    }

    /// A node with the metadata of `st`; contents, target and subtree are filled in by the caller.
    static func node(name: [UInt8], stat st: stat, kind: NodeKind) -> Node {
        Node(
            kind: kind, name: name, mode: UInt32(st.st_mode & 0o7777), uid: st.st_uid, gid: st.st_gid,
            mtime: Timestamp(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: Int32(st.st_mtim.tv_nsec)),
            ctime: Timestamp(seconds: Int64(st.st_ctim.tv_sec), nanoseconds: Int32(st.st_ctim.tv_nsec)),
            device: UInt64(st.st_dev), inode: UInt64(st.st_ino), links: UInt32(truncatingIfNeeded: st.st_nlink),
            size: kind == .file ? UInt64(st.st_size) : 0,
            rdev: (kind == .characterDevice || kind == .blockDevice) ? UInt64(st.st_rdev) : 0, xattrs: [],
            linkTarget: [], subtree: nil, content: [])
    }

    /// The extended attributes of `path` (links not followed), sorted by name.
    static func xattrs(_ path: FSPath) throws -> [(name: [UInt8], value: [UInt8])] {
        let namesSize = path.withCString { lifeboat_llistxattr($0, nil, 0) }
        if namesSize < 0 {
            if errno == ENOTSUP || errno == ENOSYS { return [] }
            throw ioError(errno, "listing xattrs of", path.string)
        }
        if namesSize == 0 { return [] }
        var names = [UInt8](repeating: 0, count: namesSize)
        let got = path.withCString { cPath in
            names.withUnsafeMutableBytes { lifeboat_llistxattr(cPath, $0.baseAddress, namesSize) }
        }
        if got < 0 { throw ioError(errno, "listing xattrs of", path.string) }
        var result: [(name: [UInt8], value: [UInt8])] = []
        for name in names.prefix(got).split(separator: 0) {
            let nameBytes = Array(name)
            let cName = String(decoding: nameBytes, as: UTF8.self)
            let valueSize = path.withCString { lifeboat_lgetxattr($0, cName, nil, 0) }
            if valueSize < 0 {
                if errno == ENODATA { continue }
                throw ioError(errno, "reading xattr \(cName) of", path.string)
            }
            var value = [UInt8](repeating: 0, count: valueSize)
            let read = path.withCString { cPath in
                value.withUnsafeMutableBytes { lifeboat_lgetxattr(cPath, cName, $0.baseAddress, valueSize) }
            }
            if read < 0 { throw ioError(errno, "reading xattr \(cName) of", path.string) }
            result.append((nameBytes, Array(value.prefix(read))))
        }
        return result.sorted { $0.name.lexicographicallyPrecedes($1.name) }
    }

    /// Reads a symlink's target.
    static func readlink(_ path: FSPath, size: Int) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: max(size, 255) + 1)
        let got = path.withCString { cPath in
            buffer.withUnsafeMutableBytes {
                Glibc.readlink(cPath, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count)
            }
        }
        if got < 0 { throw ioError(errno, "reading symlink", path.string) }
        return Array(buffer.prefix(got))
    }

    /// Applies owner (as root), xattrs, mode and mtime to `path`, in the order that keeps
    /// setuid bits and times intact. Symlinks get owner, xattrs and times only.
    static func apply(_ node: Node, to path: FSPath, isRoot: Bool) throws {
        try path.withCString { cPath in
            if isRoot, lchown(cPath, node.uid, node.gid) != 0 {
                throw ioError(errno, "setting owner of", path.string)
            }
            for xattr in node.xattrs {
                let name = String(decoding: xattr.name, as: UTF8.self)
                let code = xattr.value.withUnsafeBytes { lifeboat_lsetxattr(cPath, name, $0.baseAddress, $0.count, 0) }
                if code != 0 {
                    // Some namespaces (security., trusted.) need privileges; say so and go on.
                    if errno == EPERM || errno == ENOTSUP { continue }
                    throw ioError(errno, "setting xattr \(name) on", path.string)
                }
            }
            if node.kind != .symlink, chmod(cPath, mode_t(node.mode)) != 0 {
                throw ioError(errno, "setting mode of", path.string)
            }
            var times = [
                timespec(tv_sec: Int(node.mtime.seconds), tv_nsec: Int(node.mtime.nanoseconds)),
                timespec(tv_sec: Int(node.mtime.seconds), tv_nsec: Int(node.mtime.nanoseconds)),
            ]
            if utimensat(AT_FDCWD, cPath, &times, AT_SYMLINK_NOFOLLOW) != 0 {
                throw ioError(errno, "setting times of", path.string)
            }
        }
    }
}
