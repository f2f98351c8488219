import CLifeboatPosix
import Foundation
import Glibc
import LifeboatCore
import XCTest

@testable import LifeboatRepository

final class RepositoryTests: XCTestCase {
    /// A tree with every kind of entry and metadata a restore must keep.
    private func makeTree(_ root: String) throws {
        try writeFile(root + "/data/big.bin", randomBytes(3 << 20, seed: 11) + textBytes(2 << 20))
        try writeFile(root + "/data/with space and\nnewline ü.txt", Array("odd name".utf8))
        try writeFile(root + "/empty", [])
        try FileManager.default.createDirectory(atPath: root + "/emptydir", withIntermediateDirectories: true)
        XCTAssertEqual(symlink("data/big.bin", root + "/link"), 0)
        XCTAssertEqual(link(root + "/data/big.bin", root + "/hardlink"), 0)
        XCTAssertEqual(mkfifo(root + "/fifo", 0o640), 0)
        // Sparse, larger than 4 GiB, with data past the 4 GiB mark.
        let sparse = open(root + "/sparse.img", O_WRONLY | O_CREAT, 0o600)
        XCTAssertEqual(ftruncate(sparse, off_t(5) << 30), 0)
        let marker = Array("past four gibibytes".utf8)
        _ = marker.withUnsafeBytes { pwrite(sparse, $0.baseAddress, $0.count, (off_t(4) << 30) + 12345) }
        close(sparse)
        XCTAssertEqual(lifeboat_lsetxattr(root + "/data/big.bin", "user.origin", "test", 4, 0), 0)
        XCTAssertEqual(chmod(root + "/data/with space and\nnewline ü.txt", 0o4751), 0)
        if geteuid() == 0 { XCTAssertEqual(chown(root + "/empty", 1234, 5678), 0) }
        var times = [timespec(tv_sec: 1_600_000_000, tv_nsec: 42), timespec(tv_sec: 1_600_000_000, tv_nsec: 42)]
        XCTAssertEqual(utimensat(AT_FDCWD, root + "/data", &times, 0), 0)
        XCTAssertEqual(utimensat(AT_FDCWD, root + "/link", &times, AT_SYMLINK_NOFOLLOW), 0)
    }

    func testRestoreReproducesContentsAndMetadataExactly() throws {
        let temp = TempDirectory()
        try makeTree(temp.sub("src"))
        let repository = try Repository.initialize(at: temp.sub("repo"))
        let result = try repository.backup(source: temp.sub("src"), options: BackupOptions(host: "h", workload: "w"))
        XCTAssertTrue(result.unreadable.isEmpty)
        let record = try repository.resolveSnapshot(String(result.id.hex.prefix(6)))
        let restored = try repository.restore(snapshot: record, target: temp.sub("out"))
        XCTAssertTrue(restored.failures.isEmpty)
        XCTAssertEqual(try TreeDigest.compute(temp.sub("src")).digest, try TreeDigest.compute(temp.sub("out")).digest)
        // Checks independent of the digest code.
        XCTAssertEqual(
            try Posix.readFile(temp.sub("out/data/big.bin")), try Posix.readFile(temp.sub("src/data/big.bin")))
        var a = stat()
        var b = stat()
        XCTAssertEqual(stat(temp.sub("out/hardlink"), &a), 0)
        XCTAssertEqual(stat(temp.sub("out/data/big.bin"), &b), 0)
        XCTAssertEqual(a.st_ino, b.st_ino, "hard link restored as a link")
        XCTAssertEqual(stat(temp.sub("out/sparse.img"), &a), 0)
        XCTAssertEqual(a.st_size, off_t(5) << 30)
        XCTAssertLessThan(a.st_blocks * 512, 1 << 20, "sparse file stays sparse")
        XCTAssertEqual(stat(temp.sub("out/data/with space and\nnewline ü.txt"), &a), 0)
        XCTAssertEqual(a.st_mode & 0o7777, 0o4751)
        XCTAssertEqual(lstat(temp.sub("out/link"), &a), 0)
        XCTAssertEqual(a.st_mtim.tv_sec, 1_600_000_000)
        var value = [UInt8](repeating: 0, count: 16)
        XCTAssertEqual(lifeboat_lgetxattr(temp.sub("out/data/big.bin"), "user.origin", &value, 16), 4)
        let fd = open(temp.sub("out/sparse.img"), O_RDONLY)
        var marker = [UInt8](repeating: 0, count: 19)
        XCTAssertEqual(pread(fd, &marker, 19, (off_t(4) << 30) + 12345), 19)
        close(fd)
        XCTAssertEqual(String(decoding: marker, as: UTF8.self), "past four gibibytes")
        if geteuid() == 0 {
            XCTAssertEqual(stat(temp.sub("out/empty"), &a), 0)
            XCTAssertEqual(a.st_uid, 1234)
            XCTAssertEqual(a.st_gid, 5678)
        }
        // A subtree restore.
        let sub = try repository.restore(snapshot: record, subpath: "data", target: temp.sub("sub"))
        XCTAssertEqual(sub.files, 2)
        XCTAssertEqual(files(below: temp.sub("sub")), ["big.bin", "with space and\nnewline ü.txt"])
        XCTAssertEqual(try repository.check(readData: true).errors, [])
    }

    /// A missing repository is named as missing (exit code of noRepository); one that cannot
    /// be reached (a disconnected volume answers ENOTCONN, here ENOTDIR) is not called missing.
    func testAMissingAndAnUnreachableRepositoryAreToldApart() throws {
        let temp = TempDirectory()
        XCTAssertThrowsError(try Repository.open(at: temp.sub("nothing"))) { error in
            XCTAssertEqual((error as? LifeboatError)?.kind, .noRepository)
            XCTAssertTrue("\(error)".contains("does not exist"), "\(error)")
        }
        try Data("a file".utf8).write(to: URL(fileURLWithPath: temp.sub("file")))
        XCTAssertThrowsError(try Repository.open(at: temp.sub("file") + "/repo")) { error in
            XCTAssertEqual((error as? LifeboatError)?.kind, .operationFailed)
            XCTAssertTrue("\(error)".contains("cannot reach repository \(temp.sub("file"))/repo: "), "\(error)")
            XCTAssertFalse("\(error)".contains("does not exist"), "\(error)")
        }
    }

    func testSecondBackupStoresNothingAndReadsOnlyChangedFiles() throws {
        let temp = TempDirectory()
        try writeFile(temp.sub("src/a"), randomBytes(2 << 20, seed: 1))
        try writeFile(temp.sub("src/b"), randomBytes(2 << 20, seed: 2))
        let repository = try Repository.initialize(at: temp.sub("repo"))
        let first = try repository.backup(source: temp.sub("src"), options: BackupOptions(host: "h"))
        XCTAssertEqual(first.snapshot.summary.bytesRead, 4 << 20)
        XCTAssertGreaterThanOrEqual(first.snapshot.summary.newBytes, 4 << 20)
        let forced = try repository.backup(source: temp.sub("src"), options: BackupOptions(host: "h", parent: .none))
        XCTAssertEqual(forced.snapshot.summary.bytesRead, 4 << 20)
        XCTAssertEqual(forced.snapshot.summary.newBlobs, 0, "same data is stored once")
        try writeFile(temp.sub("src/b"), randomBytes(2 << 20, seed: 3))
        let third = try repository.backup(source: temp.sub("src"), options: BackupOptions(host: "h"))
        XCTAssertEqual(third.snapshot.summary.bytesRead, 2 << 20, "only the changed file is read")
        XCTAssertEqual(third.snapshot.summary.filesUnchanged, 1)
        XCTAssertEqual(third.snapshot.parent, forced.id.hex)
        let changes = try SnapshotBrowser(repository: repository).diff(
            try repository.resolveSnapshot(first.id.hex), try repository.resolveSnapshot(third.id.hex))
        XCTAssertEqual(changes.map(\.path), ["/b"])
        XCTAssertEqual(changes.map(\.kind), [.modified])
    }

    func testFlippedByteIsDetectedAndNeverRestored() throws {
        let temp = TempDirectory()
        try writeFile(temp.sub("src/good"), textBytes(100_000))
        try writeFile(temp.sub("src/bad"), randomBytes(1 << 20, seed: 9))
        let repository = try Repository.initialize(at: temp.sub("repo"))
        let result = try repository.backup(source: temp.sub("src"), options: BackupOptions(host: "h"))
        let index = try repository.loadIndex()
        let record = try repository.resolveSnapshot("latest")
        let nodes = try TreeFormat.decode(
            try BlobReader(repository: repository, index: index).read(record.snapshot.treeID),
            id: record.snapshot.treeID)
        guard case .blob(let badBlob, _) = nodes.first(where: { $0.nameString == "bad" })!.content[0] else {
            return XCTFail("expected a blob")
        }
        let location = try XCTUnwrap(index.lookup(badBlob))
        let packPath = repository.paths.packPath(index.packs[Int(location.pack)])
        var bytes = try Posix.readFile(packPath)
        bytes[Int(location.offset) + 100] ^= 0x40
        chmod(packPath, 0o644)
        try writeFile(packPath, bytes)
        let report = try repository.check(readData: true)
        XCTAssertEqual(report.errors.count, 1)
        XCTAssertTrue(report.errors[0].contains(badBlob.hex), report.errors[0])
        let restored = try repository.restore(
            snapshot: try repository.resolveSnapshot(result.id.hex), target: temp.sub("out"))
        XCTAssertEqual(restored.failures.map(\.path), [temp.sub("out/bad")])
        XCTAssertEqual(restored.failures.first?.error.kind, .integrity)
        XCTAssertEqual(files(below: temp.sub("out")), ["good"], "nothing unverified is written, no temp file left")
    }

    func testRestoreThroughManyPacksKeepsFewDescriptorsOpen() throws {
        let temp = TempDirectory()
        var config = RepositoryConfig.makeNew()
        config.packSize = 1 << 20  // the smallest allowed: many packs from little data
        let repository = try Repository.initialize(at: temp.sub("repo"), config: config)
        for i in 0..<160 { try writeFile(temp.sub("src/f\(i)"), randomBytes(1 << 20, seed: UInt64(i + 1))) }
        _ = try repository.backup(source: temp.sub("src"), options: BackupOptions(host: "h"))
        XCTAssertGreaterThan(
            try repository.listPacks().count, BlobReader.maxOpenPacks, "the test needs more packs than the cache holds")
        let reader = BlobReader(repository: repository, index: try repository.loadIndex())
        let ids = try TreeFormat.decode(
            try reader.read(try repository.resolveSnapshot("latest").snapshot.treeID),
            id: try repository.resolveSnapshot("latest").snapshot.treeID
        ).flatMap { node in
            node.content.compactMap { piece -> ObjectID? in if case .blob(let id, _) = piece { id } else { nil } }
        }
        func openDescriptors() throws -> Int {
            try FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count
        }
        let baseline = try openDescriptors()
        var peak = baseline
        for id in ids {
            _ = try reader.read(id)
            peak = max(peak, try openDescriptors())
        }
        XCTAssertLessThanOrEqual(peak - baseline, BlobReader.maxOpenPacks + 2, "open pack descriptors stay bounded")
        let restored = try repository.restore(
            snapshot: try repository.resolveSnapshot("latest"), target: temp.sub("out"))
        XCTAssertTrue(restored.failures.isEmpty)
        XCTAssertEqual(try TreeDigest.compute(temp.sub("src")).digest, try TreeDigest.compute(temp.sub("out")).digest)
    }

    func testDamagedIndexAndSnapshotAreNamed() throws {
        let temp = TempDirectory()
        try writeFile(temp.sub("src/f"), textBytes(10_000))
        let repository = try Repository.initialize(at: temp.sub("repo"))
        let result = try repository.backup(source: temp.sub("src"), options: BackupOptions(host: "h"))
        let indexID = try XCTUnwrap(try repository.listObjects(in: repository.paths.indexDir).first)
        for path in [repository.paths.indexPath(indexID), repository.paths.snapshotPath(result.id)] {
            var bytes = try Posix.readFile(path)
            bytes[bytes.count / 2] ^= 1
            chmod(path, 0o644)
            try writeFile(path, bytes)
        }
        let report = try repository.check(readData: false)
        XCTAssertTrue(report.errors.contains { $0.contains(indexID.hex) }, "\(report.errors)")
        XCTAssertTrue(report.errors.contains { $0.contains(result.id.hex) }, "\(report.errors)")
        XCTAssertThrowsError(try repository.prune()) { error in
            XCTAssertEqual((error as? LifeboatError)?.kind, .integrity)
        }
    }

    func testFailedFsyncOrRenameAbortsWithoutCommitting() throws {
        for failure in [FailingSyscalls.Failure.fsync, .rename, .write] {
            let temp = TempDirectory()
            try writeFile(temp.sub("src/f"), randomBytes(1 << 20, seed: 5))
            try Repository.initialize(at: temp.sub("repo"))
            let failing = try Repository.open(at: temp.sub("repo"), syscalls: FailingSyscalls(failure: failure))
            XCTAssertThrowsError(try failing.backup(source: temp.sub("src"), options: BackupOptions(host: "h"))) {
                error in
                XCTAssertEqual((error as? LifeboatError)?.kind, .operationFailed, "\(failure): \(error)")
            }
            let repository = try Repository.open(at: temp.sub("repo"))
            XCTAssertEqual(try repository.listSnapshots().count, 0, "\(failure)")
            XCTAssertEqual(try repository.check(readData: true).errors, [], "\(failure)")
            XCTAssertEqual(try repository.listLocks().count, 0, "\(failure): lock released")
            _ = try repository.backup(source: temp.sub("src"), options: BackupOptions(host: "h"))
        }
    }

    func testExclusiveLockExcludesAndStaleLockIsReportedNotDeleted() throws {
        let temp = TempDirectory()
        let repository = try Repository.initialize(at: temp.sub("repo"))
        let shared = try RepositoryLock.acquire(repository, operation: "backup", exclusive: false)
        XCTAssertThrowsError(try repository.prune()) { error in
            XCTAssertEqual((error as? LifeboatError)?.kind, .locked)
            XCTAssertTrue("\(error)".contains("backup"), "\(error)")
        }
        try shared.release()
        // A lock left by a process that no longer exists on this host is stale.
        let info = LockInfo(
            host: currentHostName(), pid: 999_999, operation: "prune", exclusive: true, time: .now(), epoch: 0,
            leaseSeconds: 120)
        let staleID = ObjectID.random()
        try writeFile(repository.paths.lockPath(staleID), Array(try JSONEncoder().encode(info)))
        let warnings = WarningLog()
        _ = try repository.prune(warn: { warnings.add($0) })
        XCTAssertTrue(warnings.lines.contains { $0.contains("stale") }, "\(warnings.lines)")
        XCTAssertTrue(Posix.exists(repository.paths.lockPath(staleID)), "stale locks are reported, not deleted")
    }

    func testForgetAndPruneKeepWhatIsKept() throws {
        let temp = TempDirectory()
        let repository = try Repository.initialize(at: temp.sub("repo"))
        var ids: [ObjectID] = []
        for round in 0..<4 {
            try writeFile(temp.sub("src/shared"), textBytes(200_000))
            try writeFile(temp.sub("src/round"), randomBytes(1 << 20, seed: UInt64(round + 100)))
            ids.append(try repository.backup(source: temp.sub("src"), options: BackupOptions(host: "h")).id)
        }
        let before = try repository.listPacks().values.reduce(0, +)
        let (decisions, report) = try repository.forget(policy: RetentionPolicy(last: 2), dryRun: false, prune: true)
        XCTAssertEqual(Set(decisions.filter(\.keep).map(\.record.id)), Set(ids.suffix(2)))
        XCTAssertEqual(try repository.listSnapshots().map(\.id), Array(ids.suffix(2)))
        XCTAssertNotNil(report)
        XCTAssertLessThan(try repository.listPacks().values.reduce(0, +), before)
        XCTAssertEqual(try repository.check(readData: true).errors, [])
        let restored = try repository.restore(
            snapshot: try repository.resolveSnapshot(ids[2].hex), target: temp.sub("out"))
        XCTAssertEqual(try Posix.readFile(temp.sub("out/round")), randomBytes(1 << 20, seed: 102))
        XCTAssertTrue(restored.failures.isEmpty)
        XCTAssertThrowsError(try repository.forget(policy: RetentionPolicy(), dryRun: true, prune: false))
    }

    func testBadRepositoriesAndReferencesGetTheirOwnErrors() throws {
        let temp = TempDirectory()
        func kind(_ body: () throws -> Void) -> FailureKind? {
            do { try body() } catch let error as LifeboatError { return error.kind } catch { return nil }
            return nil
        }
        XCTAssertEqual(kind { _ = try Repository.open(at: temp.sub("missing")) }, .noRepository)
        try writeFile(temp.sub("plain/file"), [1])
        XCTAssertEqual(kind { _ = try Repository.open(at: temp.sub("plain")) }, .noRepository)
        XCTAssertEqual(kind { try Repository.initialize(at: temp.sub("plain")) }, .badInput)
        var config = RepositoryConfig.makeNew()
        config.version = 99
        try Repository.initialize(at: temp.sub("future"), config: config)
        XCTAssertEqual(kind { _ = try Repository.open(at: temp.sub("future")) }, .unsupportedFormat)
        let repository = try Repository.initialize(at: temp.sub("repo"))
        XCTAssertEqual(kind { _ = try repository.resolveSnapshot("abcd") }, .badInput)
        XCTAssertEqual(kind { _ = try repository.resolveSnapshot("ab") }, .badInput)
        XCTAssertEqual(kind { _ = try repository.resolveSnapshot("latest") }, .badInput)
        try writeFile(temp.sub("src/f"), [1, 2, 3])
        let id = try repository.backup(source: temp.sub("src"), options: BackupOptions(host: "h")).id
        try writeFile(temp.sub("busy/x"), [1])
        XCTAssertEqual(
            kind {
                _ = try repository.restore(snapshot: try repository.resolveSnapshot(id.hex), target: temp.sub("busy"))
            }, .badInput)
        XCTAssertEqual(
            kind { _ = try repository.backup(source: temp.sub("nope"), options: BackupOptions(host: "h")) }, .badInput)
    }
}

/// Collects warnings from any thread.
final class WarningLog: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [String] = []

    func add(_ line: String) {
        lock.lock()
        stored.append(line)
        lock.unlock()
    }

    var lines: [String] {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }
}
