import Foundation
import Glibc
import LifeboatSystem
import XCTest

@testable import LifeboatRepository

/// A temp directory removed when the test ends, also on failure.
final class TempDirectory {
    let path: String

    init() {
        var template = Array("/tmp/lifeboat-test-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func sub(_ name: String) -> String { path + "/" + name }
}

/// Writes `bytes` to `path`, creating parent directories.
func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    try FileManager.default.createDirectory(
        atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Deterministic pseudo-random bytes (xorshift), fast enough for tens of MiB.
func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var state = seed | 1
    var out = [UInt8](repeating: 0, count: count)
    out.withUnsafeMutableBytes { raw in
        let words = raw.bindMemory(to: UInt64.self)
        for i in 0..<words.count {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            words[i] = state
        }
    }
    return out
}

/// Compressible text-like bytes.
func textBytes(_ count: Int) -> [UInt8] {
    let line = Array("row 0042: the quick brown fox jumps over the lazy dog\n".utf8)
    return (0..<count).map { line[$0 % line.count] }
}

/// Syscalls that fail a chosen call, for fault injection.
struct FailingSyscalls: SystemCalls {
    enum Failure: Sendable { case fsync, rename, write }
    let failure: Failure
    let real = RealSystemCalls()

    func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) -> Int {
        failure == .write ? -Int(ENOSPC) : real.write(fd, buffer)
    }

    func pwrite(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, _ offset: Int64) -> Int {
        failure == .write ? -Int(ENOSPC) : real.pwrite(fd, buffer, offset)
    }

    func fsync(_ fd: Int32) -> Int { failure == .fsync ? -Int(EIO) : real.fsync(fd) }

    func rename(_ from: String, _ to: String) -> Int { failure == .rename ? -Int(EIO) : real.rename(from, to) }

    func access(_ path: String, _ mode: Int32) -> Int { real.access(path, mode) }

    func stat(_ path: String, followLinks: Bool, _ status: inout stat) -> Int {
        real.stat(path, followLinks: followLinks, &status)
    }

    func listDirectory(_ path: String) -> (names: [[UInt8]], errno: Int32) { real.listDirectory(path) }
}

/// Every regular file below `root`, relative path → path.
func files(below root: String) -> [String] {
    (FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []).filter { relative in
        var st = stat()
        return lstat(root + "/" + relative, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }.sorted()
}
