import CLifeboatPosix
import Foundation
import Glibc
import LifeboatCore
import XCTest

@testable import LifeboatJournal

/// Replay keeps names as the bytes the records hold: names need not be UTF-8.
final class ReplayNamesTests: XCTestCase {
    let t = FileTime(seconds: 1_700_000_000, nanoseconds: 42)
    var root = ""

    override func setUpWithError() throws {
        root = NSTemporaryDirectory() + "lifeboat-names-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: false)
    }

    override func tearDownWithError() throws {
        if !root.isEmpty { try? FileManager.default.removeItem(atPath: root) }
    }

    func testNamesThatAreNotUTF8ReplayAsTheirBytes() throws {
        let file: [UInt8] = [0x66, 0xff, 0xfe, 0x2e, 0x64, 0x62]  // "f", two invalid bytes, ".db"
        let renamed: [UInt8] = [0x72, 0xe9, 0x73]  // Latin-1 "rés": invalid as UTF-8
        let directory: [UInt8] = [0xc3, 0x28, 0x64]  // a broken two-byte sequence
        let link: [UInt8] = [0x80, 0x81]
        let target: [UInt8] = [0x2e, 0x2e, 0x2f, 0x72, 0xe9, 0x73]  // "../rés" as Latin-1
        var seq: UInt64 = 0
        func apply(_ replayer: Replayer, _ mutation: Mutation) throws {
            seq += 1
            try replayer.apply(
                JournalRecord(
                    position: Position(epoch: 1, seq: seq), kind: mutation.kind.rawValue, payload: mutation.encoded()))
        }
        let first = try Replayer(root: root)
        try apply(first, .mkdir(parent: 1, name: directory, file: 20, mode: 0o40750, uid: 0, gid: 0, time: t))
        try apply(first, .create(parent: 1, name: file, file: 21, mode: 0o100640, uid: 0, gid: 0, rdev: 0, time: t))
        try apply(first, .write(file: 21, offset: 0, data: Array("contents".utf8), time: t))
        try apply(first, .link(file: 21, parent: 20, name: link, time: t))
        try apply(
            first,
            .rename(parent: 1, name: file, newParent: 1, newName: renamed, flags: 0, file: 21, time: t))
        try apply(first, .symlink(parent: 20, name: file, file: 22, target: target, uid: 0, gid: 0, time: t))
        try apply(first, .setxattr(file: 21, name: Array("user.k".utf8), value: [1, 2, 0xff], flags: 0))
        first.closeFiles()

        // A second replayer finds the files by indexing the tree: the names it reads are bytes too.
        let second = try Replayer(root: root)
        try apply(second, .write(file: 21, offset: 8, data: Array("+more".utf8), time: t))
        try apply(second, .unlink(parent: 20, name: link, file: 21, time: t))
        try apply(second, .create(parent: 20, name: link, file: 23, mode: 0o100600, uid: 0, gid: 0, rdev: 0, time: t))
        second.closeFiles()

        XCTAssertEqual(try names(in: root), [directory, renamed].sorted { $0.lexicographicallyPrecedes($1) })
        let inside = Array((root + "/").utf8) + directory
        XCTAssertEqual(try names(bytes: inside), [file, link].sorted { $0.lexicographicallyPrecedes($1) })
        XCTAssertEqual(try contents(Array(root.utf8), renamed), Array("contents+more".utf8))
        XCTAssertEqual(try contents(inside, link), [])
        var buffer = [CChar](repeating: 0, count: 256)
        let got = withBytes(Array((root + "/").utf8) + directory + [0x2f] + file) { readlink($0, &buffer, 256) }
        XCTAssertEqual(buffer[..<max(got, 0)].map { UInt8(bitPattern: $0) }, target)
        var value = [UInt8](repeating: 0, count: 16)
        let size = withBytes(Array((root + "/").utf8) + renamed) { lifeboat_lgetxattr($0, "user.k", &value, 16) }
        XCTAssertEqual(Array(value[..<max(size, 0)]), [1, 2, 0xff])
    }

    // MARK: - helpers (paths here are short: built from bytes, never decoded)

    func withBytes<T>(_ bytes: [UInt8], _ body: (UnsafePointer<CChar>) -> T) -> T {
        let terminated = bytes.map { CChar(bitPattern: $0) } + [0]
        return terminated.withUnsafeBufferPointer { body($0.baseAddress!) }
    }

    func names(in path: String) throws -> [[UInt8]] { try names(bytes: Array(path.utf8)) }

    func names(bytes path: [UInt8]) throws -> [[UInt8]] {
        guard let dir = withBytes(path, { opendir($0) }) else {
            throw LifeboatError(.operationFailed, "opendir: \(String(cString: strerror(errno)))")
        }
        defer { closedir(dir) }
        var found: [[UInt8]] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: &entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name != [0x2e] && name != [0x2e, 0x2e] { found.append(name) }
        }
        return found.sorted { $0.lexicographicallyPrecedes($1) }
    }

    func contents(_ directory: [UInt8], _ name: [UInt8]) throws -> [UInt8] {
        let fd = withBytes(directory + [0x2f] + name) { open($0, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { throw LifeboatError(.operationFailed, "open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let got = read(fd, &buffer, buffer.count)
        return Array(buffer[..<max(got, 0)])
    }
}
