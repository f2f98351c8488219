import CLifeboatPosix
import Foundation
import Glibc
import LifeboatCore
import LifeboatJournal
import XCTest

@testable import LifeboatCapture

/// A tree deeper than PATH_MAX, built through a real FUSE mount: its journal replays into an
/// empty dir to the same tree as the backing dir (needs root and /dev/fuse).
final class DeepReplayTests: XCTestCase {
    var root = ""

    override func setUpWithError() throws {
        try XCTSkipUnless(getuid() == 0 && access("/dev/fuse", R_OK | W_OK) == 0, "needs root and /dev/fuse")
        root = NSTemporaryDirectory() + "lifeboat-deep-\(UUID().uuidString)"
        for sub in ["data", "backing", "replayed"] {
            try FileManager.default.createDirectory(atPath: root + "/" + sub, withIntermediateDirectories: true)
        }
    }

    override func tearDownWithError() throws {
        guard !root.isEmpty else { return }
        umount2(root + "/data", Int32(MNT_DETACH))
        // Paths below are too long for path-based removal: remove entry by entry, by descriptor.
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            for name in ["backing", "replayed"] { removeTree(fd, Array(name.utf8)) }
            close(fd)
        }
        try? FileManager.default.removeItem(atPath: root)
    }

    func testAJournalOfATreeDeeperThanPathMaxReplaysToTheBackingDir() throws {
        let writer = try JournalWriter(directory: root + "/journal")
        let journal = CaptureJournal(writer: writer, epoch: 1)
        let mount = try CaptureMount(dataDir: root + "/data", backingDir: root + "/backing", journal: journal)
        try mount.start(threads: 4)
        var mounted = true
        defer { if mounted { mount.stop() } }

        // 24 levels of 200-byte names: about 4,800 bytes below the data dir, past PATH_MAX.
        var levels: [Int32] = [open(root + "/data", O_RDONLY | O_DIRECTORY | O_CLOEXEC)]
        // Closed before the unmount (an open descriptor in the mount keeps it busy).
        defer { for fd in levels where fd >= 0 { close(fd) } }
        XCTAssertGreaterThanOrEqual(levels[0], 0)
        var depth = 0
        for level in 0..<24 {
            let name = levelName(level)
            depth += name.count + 1
            try call(mkdirat(levels.last!, name, 0o755), "mkdirat \(level)")
            let next = openat(levels.last!, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            try call(next < 0 ? -1 : 0, "openat \(level)")
            levels.append(next)
        }
        XCTAssertGreaterThan(depth, Int(PATH_MAX))
        let bottom = levels.last!

        // Files at the bottom: writes (with a hole), rename, hard link, unlink, symlink,
        // chmod, xattrs, a subdir moved up the chain, a FIFO.
        let a = openat(bottom, "a", O_CREAT | O_WRONLY | O_CLOEXEC, 0o640)
        try call(a < 0 ? -1 : 0, "create a")
        XCTAssertEqual(pwrite(a, "hello", 5, 0), 5)
        XCTAssertEqual(pwrite(a, "later", 5, 100_000), 5)
        let value = Array("deep value".utf8)
        try call(lifeboat_fsetxattr(a, "user.deep", value, value.count, 0), "fsetxattr")
        XCTAssertEqual(fsync(a), 0)
        close(a)
        let b = openat(bottom, "b", O_CREAT | O_WRONLY | O_CLOEXEC, 0o600)
        try call(b < 0 ? -1 : 0, "create b")
        XCTAssertEqual(write(b, "gone soon", 9), 9)
        close(b)
        try call(renameat(bottom, "a", bottom, "renamed"), "renameat")
        try call(linkat(bottom, "renamed", levels[12], "hard-from-the-bottom", 0), "linkat")
        try call(unlinkat(bottom, "b", 0), "unlinkat")
        try call(symlinkat("renamed", bottom, "sym"), "symlinkat")
        try call(fchmodat(bottom, "renamed", 0o604, 0), "fchmodat")
        try call(mkfifoat(bottom, "fifo", 0o620), "mkfifoat")
        try call(mkdirat(bottom, "sub", 0o750), "mkdirat sub")
        let sub = openat(bottom, "sub", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        try call(sub < 0 ? -1 : 0, "open sub")
        let inner = openat(sub, "inner", O_CREAT | O_WRONLY | O_CLOEXEC, 0o644)
        XCTAssertEqual(write(inner, "inner data", 10), 10)
        close(inner)
        close(sub)
        try call(renameat(bottom, "sub", levels[5], "moved-sub"), "renameat sub up")
        // A directory in the middle of the chain is renamed: everything below it moves.
        try call(renameat(levels[9], levelName(9), levels[9], "renamed-level"), "rename mid-chain")
        let c = openat(bottom, "renamed", O_WRONLY | O_APPEND | O_CLOEXEC)
        XCTAssertEqual(write(c, " appended", 9), 9)
        XCTAssertEqual(fsync(c), 0)
        close(c)
        for fd in levels where fd >= 0 { close(fd) }
        levels.removeAll()
        XCTAssertTrue(journal.makeDurable())
        mount.stop()
        mounted = false

        // Replay in two parts: the second replayer indexes the deep tree the first one built.
        var records: [JournalRecord] = []
        try JournalReader.read(directory: root + "/journal") { record in
            records.append(record)
            return true
        }
        XCTAssertGreaterThan(records.count, 30)
        let half = records.count / 2
        do {
            let first = try Replayer(root: root + "/replayed")
            for record in records[..<half] { try first.apply(record) }
            first.closeFiles()
            let second = try Replayer(root: root + "/replayed")
            for record in records[half...] { try second.apply(record) }
            second.closeFiles()
            XCTAssertEqual(first.applied + second.applied, records.count)
        } catch {
            XCTFail("replay failed: \(error)")
        }
        let expected = try describeTree(root + "/backing")
        let replayed = try describeTree(root + "/replayed")
        XCTAssertGreaterThanOrEqual(expected.count, 30)
        XCTAssertTrue(expected.contains { $0.contains("renamed|file|604") && $0.contains("user.deep=deep value") })
        XCTAssertEqual(expected.count, replayed.count)
        for (want, got) in zip(expected, replayed) where want != got {
            XCTFail("backing: \(want.suffix(300))\nreplayed: \(got.suffix(300))")
            break
        }
    }

    // MARK: - helpers

    func levelName(_ level: Int) -> String {
        let prefix = "level-\(level)-"
        return prefix + String(repeating: "x", count: 200 - prefix.count)
    }

    func call(_ rc: Int32, _ what: String) throws {
        if rc != 0 { throw LifeboatError(.operationFailed, "\(what): \(String(cString: strerror(errno)))") }
    }

    /// One line per entry below `path` (not the root itself), in name order: path, type, mode,
    /// owner, size, mtime, link count, content checksum or symlink target, user xattrs. Walked
    /// by descriptor, so any depth works.
    func describeTree(_ path: String) throws -> [String] {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        try call(fd < 0 ? -1 : 0, "open \(path)")
        defer { close(fd) }
        var lines: [String] = []
        try describe(fd, prefix: "", into: &lines)
        return lines
    }

    func describe(_ dir: Int32, prefix: String, into lines: inout [String]) throws {
        for name in try entries(dir) {
            var st = stat()
            try call(fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW), "fstatat \(name)")
            let path = prefix + "/" + name
            let type: String
            var detail = ""
            switch st.st_mode & S_IFMT {
            case S_IFDIR: type = "dir"
            case S_IFREG:
                type = "file"
                let fd = openat(dir, name, O_RDONLY | O_CLOEXEC)
                try call(fd < 0 ? -1 : 0, "open \(name)")
                var content: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 65536)
                while true {
                    let got = read(fd, &buffer, buffer.count)
                    if got <= 0 { break }
                    content += buffer[..<got]
                }
                close(fd)
                detail = "fnv=\(fnv(content))"
            case S_IFLNK:
                type = "symlink"
                var target = [CChar](repeating: 0, count: 4097)
                let got = readlinkat(dir, name, &target, 4096)
                detail = "->" + String(decoding: target[..<max(got, 0)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            case S_IFIFO: type = "fifo"
            default: type = "other"
            }
            let isDir = type == "dir"
            let mtime = "\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)"
            lines.append(
                "\(path)|\(type)|\(String(st.st_mode & 0o7777, radix: 8))|\(st.st_uid):\(st.st_gid)|"
                    + "\(isDir ? "-" : "\(st.st_size)")|\(mtime)|\(isDir ? "-" : "\(st.st_nlink)")|\(detail)|"
                    + xattrs(dir, name))
            if isDir {
                let child = openat(dir, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                try call(child < 0 ? -1 : 0, "open dir \(name)")
                defer { close(child) }
                try describe(child, prefix: path, into: &lines)
            }
        }
    }

    func entries(_ dir: Int32) throws -> [String] {
        let copy = openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard copy >= 0, let stream = fdopendir(copy) else { throw LifeboatError(.operationFailed, "fdopendir") }
        defer { closedir(stream) }
        var names: [String] = []
        while let entry = readdir(stream) {
            let name = withUnsafeBytes(of: &entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    /// `name=value` of every xattr but Lifeboat's own, sorted.
    func xattrs(_ dir: Int32, _ name: String) -> String {
        let path = "/proc/self/fd/\(dir)/\(name)"
        var list = [CChar](repeating: 0, count: 4096)
        let got = lifeboat_llistxattr(path, &list, list.count)
        guard got > 0 else { return "" }
        let names = list[..<got].split(separator: 0).map {
            String(decoding: $0.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return names.filter { !$0.hasPrefix(FileID.reservedXattrPrefix) }.sorted().map { key in
            var value = [UInt8](repeating: 0, count: 4096)
            let size = lifeboat_lgetxattr(path, key, &value, value.count)
            return key + "=" + String(decoding: value[..<max(size, 0)], as: UTF8.self)
        }.joined(separator: ",")
    }

    func fnv(_ bytes: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return hash
    }

    /// Removes `name` in `dir` and everything below it, by descriptor.
    func removeTree(_ dir: Int32, _ name: [UInt8]) {
        let cName = name.map { CChar(bitPattern: $0) } + [0]
        var st = stat()
        guard fstatat(dir, cName, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return }
        if st.st_mode & S_IFMT == S_IFDIR {
            let child = openat(dir, cName, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            if child >= 0 {
                if let names = try? entries(child) {
                    for entry in names { removeTree(child, Array(entry.utf8)) }
                }
                close(child)
            }
            unlinkat(dir, cName, AT_REMOVEDIR)
        } else {
            unlinkat(dir, cName, 0)
        }
    }
}
