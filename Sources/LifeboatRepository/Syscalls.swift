import Glibc
import LifeboatCore
import LifeboatSystem

/// An error for a failed syscall on `path`, with advice for the common cases; `underlying`
/// is the `SystemError` (call = the action) so callers match the errno, not this text.
func ioError(_ code: Int32, _ action: String, _ path: String) -> LifeboatError {
    LifeboatError(SystemError(action, path, code: code), action: action, path: path)
}

/// The repository's wording of a failed call (see `LifeboatError.init(_:action:path:...)`).
func ioError(_ error: SystemError) -> LifeboatError { LifeboatError(error) }

/// Low-level file helpers over LifeboatSystem; all report errors as `LifeboatError`.
enum Posix {
    /// Opens `path`, retrying EINTR; throws with the path on failure.
    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644, action: String = "opening") throws -> Int32 {
        do {
            return try FileIO.real.open(path, flags, mode: mode)
        } catch {
            throw LifeboatError(error, action: action)
        }
    }

    /// Reads exactly `buffer.count` bytes at `offset`, or fewer only at end of file; a
    /// negative result is `-errno`.
    static func pread(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, offset: UInt64) -> Int {
        do {
            return try FileIO.real.preadAll(fd, buffer, at: offset, path: "")
        } catch {
            return -Int(error.code)
        }
    }

    /// Writes all of `buffer` at `offset`; returns 0 or an errno.
    static func pwrite(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, offset: UInt64) -> Int32 {
        do {
            try FileIO.real.pwriteAll(fd, buffer, at: offset, path: "")
            return 0
        } catch {
            return error.code
        }
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
    static func fsyncDirectory(_ path: String, io: FileIO) throws {
        do {
            try io.fsyncDirectory(path)
        } catch {
            throw ioError(error)
        }
    }

    /// Creates a directory; an existing one is fine.
    static func makeDirectory(_ path: String, mode: mode_t = 0o755) throws {
        if mkdir(path, mode) != 0 && errno != EEXIST { throw ioError(errno, "creating directory", path) }
    }

    /// Lists the names in a directory. A failed listing throws; it is never taken as empty.
    static func listDirectory(_ path: String, io: FileIO = .real) throws -> [[UInt8]] {
        do {
            return try io.listDirectory(path)
        } catch {
            throw ioError(error)
        }
    }

    /// True when `path` exists (any type, links not followed).
    static func exists(_ path: String) -> Bool {
        var st = stat()
        return lstat(path, &st) == 0
    }
}
