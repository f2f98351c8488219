import LifeboatCore
import LifeboatSystem
import XCTest

@testable import LifeboatRepository

final class ComponentTests: XCTestCase {
    let chunker = Chunker(minSize: 16 << 10, averageSize: 64 << 10, maxSize: 256 << 10, seed: 7)

    private func cuts(_ data: [UInt8]) -> [Int] {
        var result: [Int] = []
        var start = 0
        data.withUnsafeBytes { raw in
            while start < raw.count {
                let length = chunker.nextCut(UnsafeRawBufferPointer(rebasing: raw[start...])) ?? (raw.count - start)
                result.append(length)
                start += length
            }
        }
        return result
    }

    func testChunkerIsDeterministicAndWithinBounds() {
        let data = randomBytes(8 << 20, seed: 1)
        let sizes = cuts(data)
        XCTAssertEqual(sizes, cuts(data))
        XCTAssertEqual(sizes.reduce(0, +), data.count)
        for size in sizes.dropLast() {
            XCTAssertGreaterThan(size, 16 << 10)
            XCTAssertLessThanOrEqual(size, 256 << 10)
        }
        let average = data.count / sizes.count
        XCTAssertTrue((32 << 10)...(128 << 10) ~= average, "average chunk \(average)")
    }

    func testInsertionOnlyMovesNearbyBoundaries() {
        let data = randomBytes(4 << 20, seed: 2)
        var shifted = data
        shifted.insert(contentsOf: [1, 2, 3, 4, 5], at: 100_000)
        func ids(_ bytes: [UInt8]) -> Set<ObjectID> {
            var start = 0
            var result = Set<ObjectID>()
            for length in cuts(bytes) {
                result.insert(ObjectID.hash(Array(bytes[start..<(start + length)])))
                start += length
            }
            return result
        }
        let before = ids(data)
        let after = ids(shifted)
        XCTAssertGreaterThanOrEqual(before.intersection(after).count, before.count - 3)
    }

    func testZstdRoundTripAndDamageDetected() throws {
        let zstd = Zstd(level: 3)
        let plain = textBytes(300_000)
        let compressed = try XCTUnwrap(plain.withUnsafeBytes { zstd.compress($0) })
        XCTAssertLessThan(compressed.count, plain.count / 10)
        var out = [UInt8](repeating: 0, count: plain.count)
        try compressed.withUnsafeBytes { source in
            try out.withUnsafeMutableBytes { try zstd.decompress(source, into: $0) }
        }
        XCTAssertEqual(out, plain)
        XCTAssertNil(
            randomBytes(100_000, seed: 3).withUnsafeBytes { zstd.compress($0) }, "incompressible data is stored raw")
        var damaged = compressed
        damaged[damaged.count / 2] ^= 0xff
        damaged.removeLast(7)
        XCTAssertThrowsError(
            try damaged.withUnsafeBytes { source in
                try out.withUnsafeMutableBytes { try zstd.decompress(source, into: $0) }
            })
    }

    func testBlobIndexFindsEveryEntryAndStaysCompact() {
        let index = BlobIndex()
        let count = 200_000
        let pack = index.packNumber(ObjectID.random())
        var ids: [ObjectID] = []
        for i in 0..<count {
            let id = ObjectID.hash(withUnsafeBytes(of: UInt64(i)) { Array($0) })
            ids.append(id)
            XCTAssertTrue(
                index.insert(
                    id,
                    BlobLocation(
                        pack: pack, offset: UInt32(i), length: 7, rawLength: 9, type: .data, compressed: i % 2 == 0)))
        }
        XCTAssertEqual(index.count, count)
        for (i, id) in ids.enumerated() {
            let location = index.lookup(id)
            XCTAssertEqual(location?.offset, UInt32(i))
            XCTAssertEqual(location?.compressed, i % 2 == 0)
        }
        XCTAssertNil(index.lookup(ObjectID.random()))
        XCTAssertFalse(
            index.insert(
                ids[0], BlobLocation(pack: pack, offset: 1, length: 1, rawLength: 1, type: .tree, compressed: false)))
        // The index must cost tens of bytes per blob, not hundreds.
        XCTAssertLessThanOrEqual(index.memoryBytes / count, 100, "bytes per blob: \(index.memoryBytes / count)")
    }

    func testTreeRoundTripAndTruncationDetected() throws {
        let node = Node(
            kind: .file, name: Array("a name\nwith ü".utf8), mode: 0o4755, uid: 1, gid: 2,
            mtime: Timestamp(seconds: 100, nanoseconds: 5), ctime: Timestamp(seconds: 101, nanoseconds: 6), device: 3,
            inode: 4, links: 2, size: 5 << 30 + 10, rdev: 0, xattrs: [(Array("user.k".utf8), [0, 1, 2])],
            linkTarget: [],
            subtree: nil, content: [.hole(length: 5 << 30), .blob(ObjectID.random(), length: 10)])
        let bytes = TreeFormat.encode([node])
        let id = ObjectID.hash(bytes)
        XCTAssertEqual(try TreeFormat.decode(bytes, id: id), [node])
        XCTAssertThrowsError(try TreeFormat.decode(Array(bytes.dropLast(3)), id: id))
    }

    func testPackTrailerDetectsFlippedByte() throws {
        let temp = TempDirectory()
        let repository = try Repository.initialize(at: temp.sub("repo"))
        let writer = try PackWriter(repository: repository.paths, io: FileIO())
        let blob = textBytes(1000)
        try blob.withUnsafeBytes {
            try writer.append(id: ObjectID.hash(blob), type: .data, compressed: false, bytes: $0, rawLength: 1000)
        }
        let (id, entries) = try writer.finish()
        let path = repository.paths.packPath(id)
        var bytes = try Posix.readFile(path)
        let fd = open(path, O_RDONLY)
        XCTAssertEqual(try PackFormat.readTrailer(fd: fd, size: UInt64(bytes.count), name: id.hex), entries)
        close(fd)
        bytes[bytes.count - 30] ^= 1
        chmod(path, 0o644)
        try writeFile(path, bytes)
        let damaged = open(path, O_RDONLY)
        defer { close(damaged) }
        XCTAssertThrowsError(try PackFormat.readTrailer(fd: damaged, size: UInt64(bytes.count), name: id.hex))
    }

    func testAnnouncedEpochsFenceOlderSnapshots() throws {
        let temp = TempDirectory()
        let repository = try Repository.initialize(at: temp.sub("repo"))
        XCTAssertEqual(try repository.fencingEpoch(workload: "redis"), 0)
        XCTAssertNoThrow(try repository.checkEpoch(1, workload: "redis"))
        try repository.announceEpoch(3, workload: "redis")
        try repository.announceEpoch(2, workload: "redis")  // never lowered
        XCTAssertEqual(try repository.fencingEpoch(workload: "redis"), 3)
        XCTAssertNoThrow(try repository.checkEpoch(3, workload: "redis"))
        XCTAssertNoThrow(try repository.checkEpoch(0, workload: "redis"))  // offline backups
        XCTAssertNoThrow(try repository.checkEpoch(1, workload: "other"))
        XCTAssertThrowsError(try repository.checkEpoch(2, workload: "redis")) { error in
            XCTAssertTrue("\(error)".contains("epoch 3"), "\(error)")
        }
        XCTAssertEqual(try Repository.open(at: temp.sub("repo")).fencingEpoch(workload: "redis"), 3)
    }

    /// Only a missing epoch file means "none announced": an EIO or EACCES while looking must
    /// refuse the commit, never skip the fencing. (Before the fix any access() error read as 0.)
    func testUnreadableEpochRefusesTheCommitInsteadOfSkippingFencing() throws {
        let temp = TempDirectory()
        try Repository.initialize(at: temp.sub("repo"))
        try Repository.open(at: temp.sub("repo")).announceEpoch(3, workload: "redis")
        for code in [EIO, EACCES] {
            let faults = FaultyCalls([.init(.access, code, where: { $0.hasSuffix("/epochs/redis") })])
            let repository = try Repository.open(at: temp.sub("repo"), syscalls: faults)
            XCTAssertThrowsError(try repository.checkEpoch(2, workload: "redis")) { error in
                let underlying = (error as? LifeboatError)?.underlying as? SystemError
                XCTAssertEqual(underlying?.code, code, "\(error)")
            }
            XCTAssertThrowsError(try repository.checkEpoch(5, workload: "redis"), "errno \(code)")
            XCTAssertGreaterThan(faults.injected(.access), 0)
        }
        // A workload that never announced one (ENOENT) is still unfenced.
        let faults = FaultyCalls([.init(.access, EIO, where: { $0.hasSuffix("/epochs/redis") })])
        XCTAssertNoThrow(try Repository.open(at: temp.sub("repo"), syscalls: faults).checkEpoch(1, workload: "other"))
    }

    /// An EINTR from write or fsync is retried, not taken as a failure.
    func testInterruptedWritesAndFsyncsAreRetried() throws {
        let temp = TempDirectory()
        try writeFile(temp.sub("src/f"), randomBytes(100_000, seed: 9))
        try Repository.initialize(at: temp.sub("repo"))
        let faults = FaultyCalls([.init(.write, EINTR, times: 3), .init(.fsync, EINTR, times: 3)])
        let repository = try Repository.open(at: temp.sub("repo"), syscalls: faults)
        _ = try repository.backup(source: temp.sub("src"), options: BackupOptions(host: "h"))
        XCTAssertEqual(faults.injected(.write), 3)
        XCTAssertEqual(faults.injected(.fsync), 3)
        XCTAssertEqual(try repository.listSnapshots().count, 1)
        XCTAssertEqual(try repository.check(readData: true).errors, [])
    }
}
