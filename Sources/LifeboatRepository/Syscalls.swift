import Glibc
import LifeboatCore

/// The syscalls through which the repository makes data durable.
///
/// This is the seam for fault injection: tests pass an implementation whose fsync,
/// rename or write fails, and check that the operation aborts instead of committing.
/// Every function returns 0 on success or a positive errno.
public protocol StorageSyscalls: Sendable {
    /// Writes all of `buffer` at the file's current offset.
    func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) -> Int32
    /// Flushes the file's data and metadata to stable storage.
    func fsync(_ fd: Int32) -> Int32
    /// Atomically renames `from` to `to`.
    func rename(_ from: String, _ to: String) -> Int32
}

/// The real syscalls, retrying EINTR and short writes.
public struct SystemStorageSyscalls: StorageSyscalls {
    public init() {}

    public func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) -> Int32 {
        var offset = 0
        while offset < buffer.count {
            let written = Glibc.write(fd, buffer.baseAddress! + offset, buffer.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return errno
            }
            if written == 0 { return EIO }
            offset += written
        }
        return 0
    }

    public func fsync(_ fd: Int32) -> Int32 {
        while Glibc.fsync(fd) != 0 {
            if errno != EINTR { return errno }
        }
        return 0
    }

    public func rename(_ from: String, _ to: String) -> Int32 {
        Glibc.rename(from, to) == 0 ? 0 : errno
    }
}

/// Text for an errno value.
func errnoText(_ code: Int32) -> String {
    String(cString: strerror(code))
}

/// An error for a failed syscall on `path`, with advice for the common cases.
func ioError(_ code: Int32, _ action: String, _ path: String) -> LifeboatError {
    switch code {
    case ENOSPC, EDQUOT:
        return LifeboatError(
            .operationFailed, "no space left on device while \(action) \(path)",
            hint: "free space on that filesystem and run the command again")
    case EACCES, EPERM:
        return LifeboatError(
            .operationFailed, "permission denied while \(action) \(path)",
            hint: "run as a user that may write there")
    case EROFS:
        return LifeboatError(.operationFailed, "read-only filesystem while \(action) \(path)")
    default:
        return LifeboatError(.operationFailed, "\(action) \(path) failed: \(errnoText(code))")
    }
}

/// Low-level file helpers with EINTR retries; all report errors as `LifeboatError`.
enum Posix {
    /// Opens `path`, retrying EINTR; throws with the path on failure.
    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644, action: String = "opening") throws -> Int32 {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno == EINTR { continue }
            throw ioError(errno, action, path)
        }
    }

    /// Reads exactly `buffer.count` bytes at `offset`, or fewer only at end of file.
    static func pread(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, offset: UInt64) -> Int {
        var done = 0
        while done < buffer.count {
            let got = Glibc.pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if got < 0 {
                if errno == EINTR { continue }
                return -Int(errno)
            }
            if got == 0 { break }
            done += got
        }
        return done
    }

    /// Writes all of `buffer` at `offset`; returns 0 or an errno.
    static func pwrite(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, offset: UInt64) -> Int32 {
        var done = 0
        while done < buffer.count {
            let put = Glibc.pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if put < 0 {
                if errno == EINTR { continue }
                return errno
            }
            done += put
        }
        return 0
    }

    /// Reads a whole (small) file.
    static func readFile(_ path: String) throws -> [UInt8] {
        let fd = try open(path, O_RDONLY, action: "reading")
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ioError(errno, "reading", path) }
        var result = [UInt8](repeating: 0, count: Int(st.st_size))
        let got = result.withUnsafeMutableBytes { pread(fd, $0, offset: 0) }
        if got < 0 { throw ioError(Int32(-got), "reading", path) }
        if got != result.count { throw LifeboatError(.integrity, "\(path) changed size while it was read") }
        return result
    }

    /// fsyncs a directory so a rename or unlink in it is durable.
    static func fsyncDirectory(_ path: String, syscalls: any StorageSyscalls) throws {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        let code = syscalls.fsync(fd)
        if code != 0 { throw ioError(code, "syncing directory", path) }
    }

    /// Creates a directory; an existing one is fine.
    static func makeDirectory(_ path: String, mode: mode_t = 0o755) throws {
        if mkdir(path, mode) != 0 && errno != EEXIST { throw ioError(errno, "creating directory", path) }
    }

    /// Lists the names in a directory. A failed listing throws; it is never taken as empty.
    static func listDirectory(_ path: String) throws -> [[UInt8]] {
        guard let dir = opendir(path) else { throw ioError(errno, "listing", path) }
        defer { closedir(dir) }
        var names: [[UInt8]] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw ioError(errno, "listing", path) }
                break
            }
            let name = withUnsafeBytes(of: &entry.pointee.d_name) { raw -> [UInt8] in
                let bytes = raw.bindMemory(to: UInt8.self)
                let length = bytes.firstIndex(of: 0) ?? bytes.count
                return Array(bytes[0..<length])
            }
            if name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")] { continue }
            names.append(name)
        }
        return names
    }

    /// True when `path` exists (any type, links not followed).
    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }
}
