import Foundation
import Glibc
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
struct FailingSyscalls: StorageSyscalls {
    enum Failure: Sendable { case fsync, rename, write }
    let failure: Failure
    let real = SystemStorageSyscalls()

    func write(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) -> Int32 {
        failure == .write ? ENOSPC : real.write(fd, buffer)
    }

    func fsync(_ fd: Int32) -> Int32 { failure == .fsync ? EIO : real.fsync(fd) }

    func rename(_ from: String, _ to: String) -> Int32 { failure == .rename ? EIO : real.rename(from, to) }
}

/// Every regular file below `root`, relative path → path.
func files(below root: String) -> [String] {
    (FileManager.default.enumerator(atPath: root)?.allObjects as? [String] ?? []).filter { relative in
        var st = stat()
        return lstat(root + "/" + relative, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }.sorted()
}
