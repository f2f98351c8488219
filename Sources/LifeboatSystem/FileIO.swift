public import Glibc
import SystemPackage

/// The file plumbing every module uses: EINTR retried, short writes continued, failures
/// thrown as `SystemError` with the call and the path, durable calls through one seam.
///
/// The durability calls (write, pwrite, fsync, rename, access, stat, listings) go through
/// `calls`; reads and opens are made directly. A value is cheap to copy and safe to share.
public struct FileIO: Sendable {
    /// The seam the durability calls go through.
    public let calls: any SystemCalls

    public init(_ calls: any SystemCalls = RealSystemCalls()) { self.calls = calls }

    /// The real calls.
    public static let real = FileIO()

    /// Opens `path`, retrying EINTR; `call` names it in the error ("open", or "create" when
    /// the file is being made).
    public func open(
        _ path: String, _ flags: Int32, mode: mode_t = 0o644, call: String = "open"
    ) throws(SystemError)
        -> Int32
    {
        while true {
            let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno == EINTR { continue }
            throw SystemError(call, path, Errno(rawValue: errno))
        }
    }

    /// Writes all of `buffer` at the file's offset (`path` names the file in errors).
    public func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, path: String) throws(SystemError) {
        var done = 0
        while done < buffer.count {
            let wrote = calls.write(fd, UnsafeRawBufferPointer(rebasing: buffer[done...]))
            if wrote < 0 {
                if wrote == -Int(EINTR) { continue }
                throw SystemError("write", path, Errno(rawValue: Int32(-wrote)))
            }
            if wrote == 0 { throw SystemError("write", path, .ioError) }
            done += wrote
        }
    }

    /// Writes all of `buffer` at `offset`.
    public func pwriteAll(
        _ fd: Int32, _ buffer: UnsafeRawBufferPointer, at offset: UInt64, path: String
    )
        throws(SystemError)
    {
        let (written, code) = pwriteMost(fd, buffer, at: offset)
        if written < buffer.count { throw SystemError("pwrite", path, Errno(rawValue: code != 0 ? code : EIO)) }
    }

    /// Writes as much of `buffer` at `offset` as the file takes, retrying EINTR and short
    /// writes: returns the bytes written and the errno that stopped it (0 when all were
    /// written, or when the file took no more). The FUSE write path: a partial write is
    /// answered as one, a failure before any byte as the errno.
    @inline(__always)
    public func pwriteMost(
        _ fd: Int32, _ buffer: UnsafeRawBufferPointer, at offset: UInt64
    ) -> (
        written: Int, errno: Int32
    ) {
        var done = 0
        while done < buffer.count {
            let wrote = calls.pwrite(
                fd, UnsafeRawBufferPointer(rebasing: buffer[done...]), Int64(offset) + Int64(done))
            if wrote < 0 {
                if wrote == -Int(EINTR) { continue }
                return (done, Int32(-wrote))
            }
            if wrote == 0 { break }
            done += wrote
        }
        return (done, 0)
    }

    /// Reads `buffer.count` bytes at `offset`, fewer only at the end of the file; returns
    /// how many were read.
    public func preadAll(
        _ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, at offset: UInt64, path: String
    )
        throws(SystemError) -> Int
    {
        var done = 0
        while done < buffer.count {
            let got = Glibc.pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if got < 0 {
                if errno == EINTR { continue }
                throw SystemError("pread", path, Errno(rawValue: errno))
            }
            if got == 0 { break }
            done += got
        }
        return done
    }

    /// fsyncs an open file. A failure is final: it is never retried into success.
    public func fsync(_ fd: Int32, path: String) throws(SystemError) {
        while true {
            let rc = calls.fsync(fd)
            if rc == 0 { return }
            if rc == -Int(EINTR) { continue }
            throw SystemError("fsync", path, Errno(rawValue: Int32(-rc)))
        }
    }

    /// fsyncs a directory, so the names created, renamed or removed in it are durable.
    public func fsyncDirectory(_ path: String) throws(SystemError) {
        let fd = try open(path, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        do throws(SystemError) {
            try fsync(fd, path: path)
        } catch {
            throw SystemError("fsync directory", path, error.errno)
        }
    }

    /// Renames `from` to `to` (the error names `to`).
    public func rename(_ from: String, _ to: String) throws(SystemError) {
        while true {
            let rc = calls.rename(from, to)
            if rc == 0 { return }
            if rc == -Int(EINTR) { continue }
            throw SystemError("rename", to, Errno(rawValue: Int32(-rc)))
        }
    }

    /// True when `path` exists, false only when it does not (ENOENT). Any other failure
    /// (EIO, EACCES on the way) throws: it is never taken for "absent".
    public func exists(_ path: String) throws(SystemError) -> Bool {
        while true {
            let rc = calls.access(path, F_OK)
            if rc == 0 { return true }
            if rc == -Int(ENOENT) { return false }
            if rc == -Int(EINTR) { continue }
            throw SystemError("access", path, Errno(rawValue: Int32(-rc)))
        }
    }

    /// stat (lstat without `followLinks`) of `path`; nil only when it does not exist.
    public func status(_ path: String, followLinks: Bool = false) throws(SystemError) -> stat? {
        var st = stat()
        while true {
            let rc = calls.stat(path, followLinks: followLinks, &st)
            if rc == 0 { return st }
            if rc == -Int(ENOENT) { return nil }
            if rc == -Int(EINTR) { continue }
            throw SystemError(followLinks ? "stat" : "lstat", path, Errno(rawValue: Int32(-rc)))
        }
    }

    /// The names in a directory (no `.` and `..`). A failed listing throws; it is never
    /// taken as empty.
    public func listDirectory(_ path: String) throws(SystemError) -> [[UInt8]] {
        while true {
            let (names, code) = calls.listDirectory(path)
            if code == 0 { return names }
            if code == EINTR { continue }
            throw SystemError("readdir", path, Errno(rawValue: code))
        }
    }

    /// The names in a directory as strings; see `listDirectory`.
    public func listNames(_ path: String) throws(SystemError) -> [String] {
        try listDirectory(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Reads a whole small file; nil when it does not exist. Any other failure throws.
    public func readFileIfPresent(_ path: String) throws(SystemError) -> [UInt8]? {
        let fd: Int32
        do throws(SystemError) {
            fd = try open(path, O_RDONLY)
        } catch {
            if error.isNotFound { return nil }
            throw error
        }
        defer { close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let got = try chunk.withUnsafeMutableBytes { buffer in
                Result { () throws(SystemError) in try preadAll(fd, buffer, at: UInt64(result.count), path: path) }
            }.get()
            result.append(contentsOf: chunk[0..<got])
            if got < chunk.count { return result }
        }
    }

    /// The prefix of every temp file `writeFileAtomically` makes (leftovers of a crash carry it).
    public static let tempPrefix = ".tmp-"

    /// A fresh temp file name in `directory`: `.tmp-` and 64 random hex digits.
    public static func tempPath(in directory: String) -> String {
        var name = tempPrefix
        for _ in 0..<4 {
            let hex = String(UInt64.random(in: 0...UInt64.max), radix: 16)
            name += String(repeating: "0", count: 16 - hex.count) + hex
        }
        return directory + "/" + name
    }

    /// Writes a small file the crash-safe way: a fresh temp file in the same directory,
    /// write, fsync, close, rename over `name`, fsync the directory.
    ///
    /// When it returns the file is durable under `name`; when it throws, no partial file is
    /// under `name` (the temp file is removed) and the old one, if any, is intact. With
    /// `crashPrefix`, the crash points `PREFIX.before-rename` and `PREFIX.after-rename` are
    /// reached (see `CrashPoints`).
    public func writeFileAtomically(
        directory: String, name: String, bytes: [UInt8], mode: mode_t = 0o444, crashPrefix: String? = nil
    ) throws(SystemError) {
        let temp = FileIO.tempPath(in: directory)
        let fd = try open(temp, O_WRONLY | O_CREAT | O_EXCL, mode: mode, call: "create")
        var closed = false
        defer {
            if !closed { close(fd) }
        }
        do throws(SystemError) {
            try bytes.withUnsafeBytes { buffer in
                Result { () throws(SystemError) in try writeAll(fd, buffer, path: temp) }
            }.get()
            try fsync(fd, path: temp)
            close(fd)
            closed = true
            if let crashPrefix { CrashPoints.reached("\(crashPrefix).before-rename") }
            try rename(temp, directory + "/" + name)
            try fsyncDirectory(directory)
            if let crashPrefix { CrashPoints.reached("\(crashPrefix).after-rename") }
        } catch {
            unlink(temp)
            throw error
        }
    }
}
