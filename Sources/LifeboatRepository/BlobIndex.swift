import Glibc
import LifeboatCore

/// Where a blob is: which pack (by number in `BlobIndex.packs`) and where inside it.
public struct BlobLocation: Sendable, Equatable {
    public var pack: UInt32
    public var offset: UInt32
    public var length: UInt32
    public var rawLength: UInt32
    public var type: BlobType
    public var compressed: Bool
}

/// The in-memory index from blob id to location: an open-addressing hash table in one flat
/// allocation, 48 bytes a slot (id 32, pack 4, offset 4, length+flags 4, raw length 4), grown
/// by half when 7/8 full — 55 to 82 bytes a blob, against well over 100 for a Dictionary.
///
/// Thread safety: inserts must not run concurrently with anything else; concurrent lookups
/// with no insert running are safe (restore and check read it from many threads).
public final class BlobIndex: @unchecked Sendable {
    private static let slotSize = 48
    private static let emptyPack = UInt32.max
    private static let flagTree: UInt32 = 1 << 31
    private static let flagCompressed: UInt32 = 1 << 30
    private static let lengthMask: UInt32 = (1 << 30) - 1

    private var storage: UnsafeMutableRawPointer
    private var capacity: Int
    public private(set) var count = 0
    /// Pack ids by number; a location's `pack` indexes this.
    public private(set) var packs: [ObjectID] = []
    private var packNumbers: [ObjectID: UInt32] = [:]

    public init(expectedBlobs: Int = 1024) {
        var capacity = 1024
        while capacity * 7 / 8 < expectedBlobs { capacity += capacity / 2 }
        self.capacity = capacity
        storage = BlobIndex.allocate(capacity)
    }

    deinit { storage.deallocate() }

    /// Bytes of memory the table holds, for the memory bound test and `check` reports.
    public var memoryBytes: Int { capacity * BlobIndex.slotSize }

    private static func allocate(_ capacity: Int) -> UnsafeMutableRawPointer {
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: capacity * slotSize, alignment: 16)
        for slot in 0..<capacity {
            pointer.storeBytes(of: emptyPack, toByteOffset: slot * slotSize + 32, as: UInt32.self)
        }
        return pointer
    }

    /// The number for a pack id, registering it on first use.
    public func packNumber(_ id: ObjectID) -> UInt32 {
        if let number = packNumbers[id] { return number }
        let number = UInt32(packs.count)
        packs.append(id)
        packNumbers[id] = number
        return number
    }

    /// True if the pack has a number (some index file names it).
    public func knowsPack(_ id: ObjectID) -> Bool { packNumbers[id] != nil }

    private func slotIndex(for id: ObjectID) -> (index: Int, found: Bool) {
        var index = Int(id.w0 % UInt64(capacity))
        while true {
            let slot = storage + index * BlobIndex.slotSize
            if slot.load(fromByteOffset: 32, as: UInt32.self) == BlobIndex.emptyPack { return (index, false) }
            if ObjectID(loadingFrom: slot) == id { return (index, true) }
            index += 1
            if index == capacity { index = 0 }
        }
    }

    /// The location of `id`, if indexed.
    public func lookup(_ id: ObjectID) -> BlobLocation? {
        let (index, found) = slotIndex(for: id)
        guard found else { return nil }
        let slot = storage + index * BlobIndex.slotSize
        let packed = slot.load(fromByteOffset: 40, as: UInt32.self)
        return BlobLocation(
            pack: slot.load(fromByteOffset: 32, as: UInt32.self),
            offset: slot.load(fromByteOffset: 36, as: UInt32.self),
            length: packed & BlobIndex.lengthMask, rawLength: slot.load(fromByteOffset: 44, as: UInt32.self),
            type: packed & BlobIndex.flagTree != 0 ? .tree : .data, compressed: packed & BlobIndex.flagCompressed != 0)
    }

    public func contains(_ id: ObjectID) -> Bool { slotIndex(for: id).found }

    /// Adds `id` unless it is already indexed (the first location wins). Returns true if added.
    @discardableResult
    public func insert(_ id: ObjectID, _ location: BlobLocation) -> Bool {
        if (count + 1) * 8 > capacity * 7 { grow() }
        let (index, found) = slotIndex(for: id)
        if found { return false }
        let slot = storage + index * BlobIndex.slotSize
        id.store(to: slot)
        slot.storeBytes(of: location.pack, toByteOffset: 32, as: UInt32.self)
        slot.storeBytes(of: location.offset, toByteOffset: 36, as: UInt32.self)
        var packed = location.length & BlobIndex.lengthMask
        if location.type == .tree { packed |= BlobIndex.flagTree }
        if location.compressed { packed |= BlobIndex.flagCompressed }
        slot.storeBytes(of: packed, toByteOffset: 40, as: UInt32.self)
        slot.storeBytes(of: location.rawLength, toByteOffset: 44, as: UInt32.self)
        count += 1
        return true
    }

    /// Adds every entry of a pack.
    public func insert(pack: ObjectID, entries: [PackEntry]) {
        let number = packNumber(pack)
        for entry in entries {
            insert(
                entry.id,
                BlobLocation(
                    pack: number, offset: entry.offset, length: entry.length, rawLength: entry.rawLength,
                    type: entry.type, compressed: entry.compressed))
        }
    }

    private func grow() {
        let old = storage
        let oldCapacity = capacity
        capacity += capacity / 2
        storage = BlobIndex.allocate(capacity)
        count = 0
        for index in 0..<oldCapacity {
            let slot = old + index * BlobIndex.slotSize
            guard slot.load(fromByteOffset: 32, as: UInt32.self) != BlobIndex.emptyPack else { continue }
            let (target, _) = slotIndex(for: ObjectID(loadingFrom: slot))
            (storage + target * BlobIndex.slotSize).copyMemory(from: slot, byteCount: BlobIndex.slotSize)
            count += 1
        }
        old.deallocate()
    }
}

/// Index files: `LBIDX001`, pack count u32, then per pack its id, entry count u32 and entries.
/// Named by their SHA-256, so any damaged byte is detected when they are loaded.
enum IndexFormat {
    static let magic = Array("LBIDX001".utf8)

    static func encode(_ packs: [(id: ObjectID, entries: [PackEntry])]) -> [UInt8] {
        var writer = ByteWriter()
        writer.raw(magic)
        writer.u32(UInt32(packs.count))
        for pack in packs {
            writer.id(pack.id)
            writer.u32(UInt32(pack.entries.count))
            for entry in pack.entries { entry.encode(into: &writer) }
        }
        return writer.bytes
    }

    static func decode(_ bytes: [UInt8], name: String) throws -> [(id: ObjectID, entries: [PackEntry])] {
        var reader = ByteReader(bytes, context: "index file \(name)")
        guard try reader.raw(magic.count) == magic else {
            throw LifeboatError(.integrity, "index file \(name) has an unknown format marker")
        }
        let packCount = Int(try reader.u32())
        var packs: [(id: ObjectID, entries: [PackEntry])] = []
        for _ in 0..<packCount {
            let id = try reader.id()
            let count = Int(try reader.u32())
            guard count * PackEntry.encodedSize <= reader.remaining else {
                throw LifeboatError(.integrity, "index file \(name) is truncated")
            }
            var entries: [PackEntry] = []
            entries.reserveCapacity(count)
            for _ in 0..<count { entries.append(try PackEntry.decode(from: &reader)) }
            packs.append((id, entries))
        }
        guard reader.remaining == 0 else { throw LifeboatError(.integrity, "index file \(name) has trailing bytes") }
        return packs
    }
}

extension Repository {
    /// One loaded index file.
    struct IndexFile {
        var id: ObjectID
        var packs: [(id: ObjectID, entries: [PackEntry])]
    }

    /// Reads and verifies every index file. Any unreadable or damaged file throws: an
    /// index is never silently taken as smaller than it is.
    func loadIndexFiles() throws -> [IndexFile] {
        try listObjects(in: paths.indexDir).map { id in
            let bytes = try readVerified(paths.indexPath(id), id: id, kind: "index file")
            return IndexFile(id: id, packs: try IndexFormat.decode(bytes, name: id.hex))
        }
    }

    /// The whole index in memory.
    public func loadIndex() throws -> BlobIndex {
        let files = try loadIndexFiles()
        let total = files.reduce(0) { sum, file in sum + file.packs.reduce(0) { $0 + $1.entries.count } }
        let index = BlobIndex(expectedBlobs: total)
        for file in files {
            for pack in file.packs { index.insert(pack: pack.id, entries: pack.entries) }
        }
        return index
    }

    /// Writes an index file for `packs` (crash-safe), returning its id.
    @discardableResult
    func writeIndex(_ packs: [(id: ObjectID, entries: [PackEntry])]) throws -> ObjectID {
        try writeContentAddressed(IndexFormat.encode(packs), directory: paths.indexDir, crashPrefix: "index")
    }
}
