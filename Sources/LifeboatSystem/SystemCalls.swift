public import Glibc
import Synchronization

/// The calls through which Lifeboat makes data durable: the one fault-injection seam.
///
/// Each method makes exactly one call, as the C function does, and returns its result or
/// `-errno`: it may write short and may fail with EINTR. The loops in `FileIO` retry EINTR and
/// short writes on top, so a fake that answers EINTR once tests the retry, one that answers
/// ENOSPC or EIO tests the failure path. The default, `RealSystemCalls`, makes the real calls.
///
/// Components take the seam in their initializer (`any SystemCalls`, kept for their life):
/// there is no global a test could race on.
public protocol SystemCalls: Sendable {
    /// write(2) at the file's offset: bytes written, or `-errno`.
    func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) -> Int
    /// pwrite(2): bytes written, or `-errno`.
    func pwrite(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, _ offset: Int64) -> Int
    /// fsync(2) of a file or a directory: 0 or `-errno`.
    func fsync(_ fd: Int32) -> Int
    /// rename(2): 0 or `-errno`.
    func rename(_ from: String, _ to: String) -> Int
    /// access(2) with `mode` (`F_OK`, `R_OK`, ...): 0 or `-errno`.
    func access(_ path: String, _ mode: Int32) -> Int
    /// stat(2) (lstat(2) without `followLinks`) into `status`: 0 or `-errno`.
    func stat(_ path: String, followLinks: Bool, _ status: inout stat) -> Int
    /// The names in a directory, without `.` and `..`, and 0; or no names and the errno.
    func listDirectory(_ path: String) -> (names: [[UInt8]], errno: Int32)
}

/// The real system calls.
public struct RealSystemCalls: SystemCalls {
    public init() {}

    public func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) -> Int {
        let done = Glibc.write(fd, buffer.baseAddress, buffer.count)
        return done < 0 ? -Int(errno) : done
    }

    public func pwrite(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, _ offset: Int64) -> Int {
        let done = Glibc.pwrite(fd, buffer.baseAddress, buffer.count, off_t(offset))
        return done < 0 ? -Int(errno) : done
    }

    public func fsync(_ fd: Int32) -> Int { Glibc.fsync(fd) == 0 ? 0 : -Int(errno) }

    public func rename(_ from: String, _ to: String) -> Int { Glibc.rename(from, to) == 0 ? 0 : -Int(errno) }

    public func access(_ path: String, _ mode: Int32) -> Int { Glibc.access(path, mode) == 0 ? 0 : -Int(errno) }

    public func stat(_ path: String, followLinks: Bool, _ status: inout stat) -> Int {
        let rc = fstatat(AT_FDCWD, path, &status, followLinks ? 0 : AT_SYMLINK_NOFOLLOW)
        return rc == 0 ? 0 : -Int(errno)
    }

    public func listDirectory(_ path: String) -> (names: [[UInt8]], errno: Int32) {
        guard let dir = opendir(path) else { return ([], errno) }
        defer { closedir(dir) }
        var names: [[UInt8]] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                let code = errno
                return code != 0 ? ([], code) : (names, 0)
            }
            let name = withUnsafeBytes(of: &entry.pointee.d_name) { raw -> [UInt8] in
                let bytes = raw.bindMemory(to: UInt8.self)
                return Array(bytes[0..<(bytes.firstIndex(of: 0) ?? bytes.count)])
            }
            if name == [UInt8(ascii: ".")] || name == [UInt8(ascii: "."), UInt8(ascii: ".")] { continue }
            names.append(name)
        }
    }
}

/// A seam that fails chosen calls and makes every other one for real: the test double for
/// EIO, ENOSPC and EINTR injection in every module's tests.
///
/// Each rule names a call, the errno to answer, and optionally which paths it hits (a
/// descriptor's path is read from /proc/self/fd) and how many times (nil: always). Counts of
/// injected failures are kept per call. Thread-safe.
public final class FaultyCalls: SystemCalls {
    /// Which call a rule fails.
    public enum Call: String, Sendable, CaseIterable {
        case write, pwrite, fsync, rename, access, stat, listDirectory
    }

    public struct Rule: Sendable {
        public var call: Call
        public var errno: Int32
        public var times: Int?
        public var matches: @Sendable (String) -> Bool

        public init(
            _ call: Call, _ errno: Int32, times: Int? = nil,
            where matches: @escaping @Sendable (String) -> Bool = { _ in true }
        ) {
            self.call = call
            self.errno = errno
            self.times = times
            self.matches = matches
        }
    }

    private let real = RealSystemCalls()
    private let state: Mutex<(rules: [Rule], injected: [Call: Int])>

    public init(_ rules: [Rule] = []) { state = Mutex((rules, [:])) }

    /// Replaces the rules (a test turns a fault on after setting things up).
    public func set(_ rules: [Rule]) { state.withLock { $0.rules = rules } }

    /// How many failures were injected into `call` so far.
    public func injected(_ call: Call) -> Int { state.withLock { $0.injected[call] ?? 0 } }

    /// The path a descriptor was opened from, as /proc/self/fd names it.
    public static func path(of fd: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let got = readlink("/proc/self/fd/\(fd)", &buffer, Int(PATH_MAX))
        guard got > 0 else { return "" }
        return String(decoding: buffer[0..<got].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The errno to answer for `call` on `path`, or 0 to make the real call.
    private func fault(_ call: Call, _ path: @autoclosure () -> String) -> Int32 {
        let candidates = state.withLock { state in state.rules.indices.filter { state.rules[$0].call == call } }
        if candidates.isEmpty { return 0 }
        let path = path()
        return state.withLock { state in
            for index in candidates where index < state.rules.count && state.rules[index].matches(path) {
                if let times = state.rules[index].times {
                    if times <= 0 { continue }
                    state.rules[index].times = times - 1
                }
                state.injected[call, default: 0] += 1
                return state.rules[index].errno
            }
            return 0
        }
    }

    public func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) -> Int {
        let code = fault(.write, Self.path(of: fd))
        return code != 0 ? -Int(code) : real.write(fd, buffer)
    }

    public func pwrite(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, _ offset: Int64) -> Int {
        let code = fault(.pwrite, Self.path(of: fd))
        return code != 0 ? -Int(code) : real.pwrite(fd, buffer, offset)
    }

    public func fsync(_ fd: Int32) -> Int {
        let code = fault(.fsync, Self.path(of: fd))
        return code != 0 ? -Int(code) : real.fsync(fd)
    }

    public func rename(_ from: String, _ to: String) -> Int {
        let code = fault(.rename, to)
        return code != 0 ? -Int(code) : real.rename(from, to)
    }

    public func access(_ path: String, _ mode: Int32) -> Int {
        let code = fault(.access, path)
        return code != 0 ? -Int(code) : real.access(path, mode)
    }

    public func stat(_ path: String, followLinks: Bool, _ status: inout stat) -> Int {
        let code = fault(.stat, path)
        return code != 0 ? -Int(code) : real.stat(path, followLinks: followLinks, &status)
    }

    public func listDirectory(_ path: String) -> (names: [[UInt8]], errno: Int32) {
        let code = fault(.listDirectory, path)
        return code != 0 ? ([], code) : real.listDirectory(path)
    }
}
