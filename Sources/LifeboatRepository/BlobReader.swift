import Glibc
import LifeboatCore
import LifeboatSystem
import Synchronization

/// Reads blobs back from packs and verifies each one before handing it out.
///
/// Safe to use from many threads: pack file descriptors are shared through a cache of at most
/// `maxOpenPacks` (so a restore of a repository with thousands of packs never runs out of
/// descriptors); a descriptor is closed only when no read is using it. Every blob is
/// decompressed and hashed by the calling thread.
final class BlobReader: Sendable {
    let repository: Repository
    let index: BlobIndex
    static let maxOpenPacks = 64
    private let openPacks = Mutex(PackCache())

    /// Open pack descriptors with how many reads use each and when each was last used.
    private struct PackCache {
        var entries: [UInt32: (fd: Int32, users: Int, lastUse: UInt64)] = [:]
        var clock: UInt64 = 0

        /// Claims the cached descriptor of `pack`, if any.
        mutating func claim(_ pack: UInt32) -> Int32? {
            guard let entry = entries[pack] else { return nil }
            clock += 1
            entries[pack] = (entry.fd, entry.users + 1, clock)
            return entry.fd
        }

        /// Closes the least recently used idle descriptors beyond the limit.
        mutating func trim() {
            while entries.count > BlobReader.maxOpenPacks {
                guard
                    let victim = entries.filter({ $0.value.users == 0 }).min(by: { $0.value.lastUse < $1.value.lastUse }
                    )
                else { return }
                close(victim.value.fd)
                entries[victim.key] = nil
            }
        }
    }

    init(repository: Repository, index: BlobIndex) {
        self.repository = repository
        self.index = index
    }

    deinit {
        openPacks.withLock { cache in for entry in cache.entries.values { close(entry.fd) } }
    }

    /// A descriptor of `pack`, claimed until `release(pack)`.
    private func claim(_ pack: UInt32) throws -> Int32 {
        if let fd = openPacks.withLock({ $0.claim(pack) }) { return fd }
        let path = repository.paths.packPath(index.packs[Int(pack)])
        let fd = try Posix.open(path, O_RDONLY, action: "opening pack")
        return openPacks.withLock { cache in
            if let existing = cache.claim(pack) {
                close(fd)
                return existing
            }
            cache.clock += 1
            cache.entries[pack] = (fd, 1, cache.clock)
            cache.trim()
            return fd
        }
    }

    private func release(_ pack: UInt32) {
        openPacks.withLock { cache in
            guard let entry = cache.entries[pack] else { return }
            cache.entries[pack] = (entry.fd, entry.users - 1, entry.lastUse)
            cache.trim()
        }
    }

    /// Closes every idle cached pack descriptor.
    func closePacks() {
        openPacks.withLock { cache in
            for (pack, entry) in cache.entries where entry.users == 0 {
                close(entry.fd)
                cache.entries[pack] = nil
            }
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
        let fd = try claim(location.pack)
        defer { release(location.pack) }
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
