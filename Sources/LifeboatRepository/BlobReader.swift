import Glibc
import LifeboatCore
import Synchronization

/// Reads blobs back from packs and verifies each one before handing it out.
///
/// Safe to use from many threads: pack file descriptors are shared through a small cache,
/// and every blob is decompressed and hashed by the calling thread.
final class BlobReader: Sendable {
    let repository: Repository
    let index: BlobIndex
    private let openPacks = Mutex<[UInt32: Int32]>([:])

    init(repository: Repository, index: BlobIndex) {
        self.repository = repository
        self.index = index
    }

    deinit {
        openPacks.withLock { packs in for fd in packs.values { close(fd) } }
    }

    private func descriptor(for pack: UInt32) throws -> Int32 {
        if let fd = openPacks.withLock({ $0[pack] }) { return fd }
        let path = repository.paths.packPath(index.packs[Int(pack)])
        let fd = try Posix.open(path, O_RDONLY, action: "opening pack")
        return openPacks.withLock { packs in
            if let existing = packs[pack] {
                close(fd)
                return existing
            }
            packs[pack] = fd
            return fd
        }
    }

    /// Closes every cached pack descriptor (call between phases that touch many packs).
    func closePacks() {
        openPacks.withLock { packs in
            for fd in packs.values { close(fd) }
            packs.removeAll()
        }
    }

    /// Reads blob `id` and verifies its SHA-256; throws naming the blob and pack otherwise.
    func read(_ id: ObjectID) throws -> [UInt8] {
        guard let location = index.lookup(id) else {
            throw LifeboatError(
                .integrity, "blob \(id.hex) is not in the index",
                hint: "run `lifeboat check`; the repository is missing data")
        }
        return try read(id, at: location)
    }

    func read(_ id: ObjectID, at location: BlobLocation) throws -> [UInt8] {
        let fd = try descriptor(for: location.pack)
        let packName = index.packs[Int(location.pack)].hex
        var got = 0
        let stored = [UInt8](unsafeUninitializedCapacity: Int(location.length)) { buffer, initialized in
            got = Posix.pread(fd, UnsafeMutableRawBufferPointer(buffer), offset: UInt64(location.offset))
            initialized = max(got, 0)
        }
        if got < 0 { throw ioError(Int32(-got), "reading", "pack \(packName)") }
        guard got == Int(location.length) else {
            throw LifeboatError(.integrity, "pack \(packName) is truncated: blob \(id.hex) ends past its end")
        }
        return try BlobReader.decode(stored, id: id, location: location, zstd: repository.zstd, packName: packName)
    }

    /// Decompresses (when needed) and verifies a stored blob.
    static func decode(
        _ stored: [UInt8], id: ObjectID, location: BlobLocation, zstd: Zstd, packName: String
    ) throws
        -> [UInt8]
    {
        var plain = stored
        if location.compressed {
            do {
                plain = try [UInt8](unsafeUninitializedCapacity: Int(location.rawLength)) { buffer, initialized in
                    try stored.withUnsafeBytes { try zstd.decompress($0, into: UnsafeMutableRawBufferPointer(buffer)) }
                    initialized = buffer.count
                }
            } catch let error as LifeboatError {
                throw LifeboatError(.integrity, "blob \(id.hex) in pack \(packName) is damaged: \(error.message)")
            }
        } else if stored.count != Int(location.rawLength) {
            throw LifeboatError(.integrity, "blob \(id.hex) in pack \(packName) has the wrong length")
        }
        guard ObjectID.hash(plain) == id else {
            throw LifeboatError(
                .integrity, "blob \(id.hex) in pack \(packName) is damaged: checksum mismatch",
                hint: "run `lifeboat check --read-data` to find all damage")
        }
        return plain
    }
}
