import CLifeboatPosix
import Glibc
import LifeboatJournal
import LifeboatSystem

/// Thin wrappers over the syscalls the passthrough makes on the backing dir. Each returns 0
/// or a positive errno, which is what `fuse_reply_err` wants.
enum BackingCalls {
    static let oPath = lifeboat_o_path()
    static let oDirect = lifeboat_o_direct()
    static let atEmptyPath = lifeboat_at_empty_path()

    /// `/proc/self/fd/N`: a path that reaches the inode an (O_PATH) fd holds.
    static func procPath(_ fd: Int32) -> String { "/proc/self/fd/\(fd)" }

    /// `/proc/self/fd/N/name`: an entry of the directory an fd holds, not following `name`.
    static func procPath(_ fd: Int32, _ name: UnsafePointer<CChar>) -> String {
        "/proc/self/fd/\(fd)/" + String(cString: name)
    }

    static func check(_ result: Int32) -> Int32 { result < 0 ? errno : 0 }

    static func lstat(at dirfd: Int32, _ name: UnsafePointer<CChar>) -> (stat, Int32) {
        var st = stat()
        let rc = fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW)
        return (st, rc < 0 ? errno : 0)
    }

    static func fstat(_ fd: Int32) -> (stat, Int32) {
        var st = stat()
        let rc = fstatat(fd, "", &st, AT_SYMLINK_NOFOLLOW | atEmptyPath)
        return (st, rc < 0 ? errno : 0)
    }

    /// The file id kept in the xattr of the entry at `path` (not followed), if any.
    static func readFileID(path: String) -> FileID? {
        var value: UInt64 = 0
        let got = withUnsafeMutableBytes(of: &value) { buffer in
            lifeboat_lgetxattr(path, FileID.xattrName, buffer.baseAddress, 8)
        }
        return got == 8 ? UInt64(littleEndian: value) : nil
    }

    /// Stores a file id in the xattr of the entry at `path` (not followed).
    static func writeFileID(_ id: FileID, path: String) -> Int32 {
        var value = id.littleEndian
        let rc = withUnsafeBytes(of: &value) { buffer in
            lifeboat_lsetxattr(path, FileID.xattrName, buffer.baseAddress, 8, 0)
        }
        return rc < 0 ? errno : 0
    }

    /// Sets atime and/or mtime of the entry at `path` (not followed); nil leaves one as it is.
    static func setTimes(path: String, atime: FileTime?, mtime: FileTime?) -> Int32 {
        var times = [timespecOf(atime), timespecOf(mtime)]
        return check(utimensat(AT_FDCWD, path, &times, AT_SYMLINK_NOFOLLOW))
    }

    /// Sets atime and/or mtime of an inode held by the table. Its /proc/self/fd path must be
    /// followed (not following it would change the /proc link itself); a symlink is reached
    /// through its descriptor with AT_EMPTY_PATH instead, so its target is never touched.
    static func setTimes(of inode: Inode, atime: FileTime?, mtime: FileTime?) -> Int32 {
        var times = [timespecOf(atime), timespecOf(mtime)]
        if inode.isSymlink {
            return check(utimensat(inode.fd, "", &times, AT_SYMLINK_NOFOLLOW | atEmptyPath))
        }
        return check(utimensat(AT_FDCWD, procPath(inode.fd), &times, 0))
    }

    /// Sets the mtime of an open file.
    static func setModificationTime(fd: Int32, _ mtime: FileTime) -> Int32 {
        var times = [timespecOf(nil), timespecOf(mtime)]
        return check(futimens(fd, &times))
    }

    /// The time to set, or UTIME_OMIT ("leave it as it is") for nil.
    static func timespecOf(_ time: FileTime?) -> timespec {
        guard let time else { return FileTimes.omitted }
        return timespec(tv_sec: Int(time.seconds), tv_nsec: Int(time.nanoseconds))
    }

    static func now() -> FileTime {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return FileTime(seconds: Int64(ts.tv_sec), nanoseconds: UInt32(ts.tv_nsec))
    }

    /// A random file id that is neither 0 nor the root's.
    static func newFileID() -> FileID {
        while true {
            let id = UInt64.random(in: 2...UInt64.max)
            if id != FileID.root { return id }
        }
    }
}
