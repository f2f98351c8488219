import Glibc
import LifeboatCore
import LifeboatSystem

/// What a blob holds.
public enum BlobType: UInt8, Sendable {
    case data = 0
    case tree = 1
}

/// Where one blob lives inside a pack file and how to read it back.
public struct PackEntry: Sendable, Equatable {
    public var id: ObjectID
    public var type: BlobType
    public var compressed: Bool
    public var offset: UInt32
    public var length: UInt32
    public var rawLength: UInt32

    /// Bytes of one entry in pack trailers and index files.
    static let encodedSize = 1 + 32 + 4 + 4 + 4

    func encode(into writer: inout ByteWriter) {
        writer.u8(type.rawValue | (compressed ? 0x80 : 0))
        writer.id(id)
        writer.u32(offset)
        writer.u32(length)
        writer.u32(rawLength)
    }

    static func decode(from reader: inout ByteReader) throws -> PackEntry {
        let flags = try reader.u8()
        guard let type = BlobType(rawValue: flags & 0x7f) else {
            throw LifeboatError(.integrity, "\(reader.context) has an unknown blob type \(flags & 0x7f)")
        }
        return PackEntry(
            id: try reader.id(), type: type, compressed: flags & 0x80 != 0, offset: try reader.u32(),
            length: try reader.u32(), rawLength: try reader.u32())
    }
}

/// The layout of pack files (see Docs/repository-format.md):
/// `LBPACK01`, the blobs back to back, then the trailer
/// `count u32, entries, sha256(count+entries), trailerLength u32, LBPKEND1`.
enum PackFormat {
    static let headerMagic = Array("LBPACK01".utf8)
    static let footerMagic = Array("LBPKEND1".utf8)
    /// trailer length u32 + end magic.
    static let footerSize = 4 + 8

    /// Encodes the trailer for `entries`.
    static func trailer(_ entries: [PackEntry]) -> [UInt8] {
        var body = ByteWriter()
        body.u32(UInt32(entries.count))
        for entry in entries { entry.encode(into: &body) }
        var out = ByteWriter()
        out.raw(body.bytes)
        out.id(ObjectID.hash(body.bytes))
        out.u32(UInt32(out.bytes.count))
        out.raw(footerMagic)
        return out.bytes
    }

    /// Reads and verifies the trailer of the pack open at `fd`, `size` bytes long.
    static func readTrailer(fd: Int32, size: UInt64, name: String) throws -> [PackEntry] {
        let context = "pack \(name)"
        guard size >= UInt64(headerMagic.count + footerSize + 4 + 32) else {
            throw LifeboatError(.integrity, "\(context) is too short (\(size) bytes) to be a pack")
        }
        var footer = [UInt8](repeating: 0, count: footerSize)
        let got = footer.withUnsafeMutableBytes { Posix.pread(fd, $0, offset: size - UInt64(footerSize)) }
        if got < 0 { throw ioError(Int32(-got), "reading", context) }
        guard got == footerSize, Array(footer[4...]) == footerMagic else {
            throw LifeboatError(.integrity, "\(context) has a damaged end marker")
        }
        var footerReader = ByteReader(footer, context: context)
        let trailerLength = UInt64(try footerReader.u32())
        guard trailerLength >= 36, trailerLength + UInt64(footerSize + headerMagic.count) <= size else {
            throw LifeboatError(.integrity, "\(context) has a damaged trailer length")
        }
        var trailer = [UInt8](repeating: 0, count: Int(trailerLength))
        let start = size - UInt64(footerSize) - trailerLength
        let read = trailer.withUnsafeMutableBytes { Posix.pread(fd, $0, offset: start) }
        guard read == trailer.count else { throw LifeboatError(.integrity, "\(context): could not read its trailer") }
        let body = Array(trailer[0..<(trailer.count - 32)])
        let stored = ObjectID(bytes: Array(trailer[(trailer.count - 32)...]))!
        guard ObjectID.hash(body) == stored else {
            throw LifeboatError(.integrity, "\(context) has a damaged trailer (checksum mismatch)")
        }
        var reader = ByteReader(body, context: context)
        let count = Int(try reader.u32())
        guard count * PackEntry.encodedSize == reader.remaining else {
            throw LifeboatError(.integrity, "\(context) trailer length does not match its entry count")
        }
        var entries: [PackEntry] = []
        entries.reserveCapacity(count)
        for _ in 0..<count {
            let entry = try PackEntry.decode(from: &reader)
            guard UInt64(entry.offset) + UInt64(entry.length) <= start, entry.offset >= UInt32(headerMagic.count) else {
                throw LifeboatError(.integrity, "\(context) trailer points outside the pack")
            }
            entries.append(entry)
        }
        return entries
    }
}

/// Writes one pack file: a temp file in `data/` that becomes `data/XX/<id>` on `finish`.
///
/// Not thread-safe; one writer per pack. Blobs go straight to the file, so memory stays
/// flat whatever the pack size.
final class PackWriter {
    private let repository: RepositoryPaths
    private let io: FileIO
    let id = ObjectID.random()
    private let tempPath: String
    private var fd: Int32
    private(set) var entries: [PackEntry] = []
    private(set) var size: UInt64 = 0

    init(repository: RepositoryPaths, io: FileIO) throws {
        self.repository = repository
        self.io = io
        tempPath = repository.temp(in: repository.dataDir)
        fd = try Posix.open(tempPath, O_WRONLY | O_CREAT | O_EXCL, mode: 0o444, action: "creating")
        do {
            try write(PackFormat.headerMagic)
        } catch {
            abandon()
            throw error
        }
    }

    private func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    private func write(_ buffer: UnsafeRawBufferPointer) throws {
        do {
            try io.writeAll(fd, buffer, path: tempPath)
        } catch {
            throw LifeboatError(error, action: "writing pack")
        }
        size += UInt64(buffer.count)
    }

    /// Appends one blob (already compressed when `compressed`).
    func append(id: ObjectID, type: BlobType, compressed: Bool, bytes: UnsafeRawBufferPointer, rawLength: Int) throws {
        let offset = size
        try write(bytes)
        entries.append(
            PackEntry(
                id: id, type: type, compressed: compressed, offset: UInt32(offset),
                length: UInt32(bytes.count), rawLength: UInt32(rawLength)))
    }

    /// Writes the trailer, fsyncs, renames into place and fsyncs the directory.
    /// After it returns the pack is durable; any failure leaves only a temp file.
    func finish() throws -> (id: ObjectID, entries: [PackEntry]) {
        do {
            try write(PackFormat.trailer(entries))
            do {
                try io.fsync(fd, path: tempPath)
            } catch {
                throw LifeboatError(error, action: "syncing pack")
            }
            close(fd)
            fd = -1
            CrashPoints.reached("pack.before-rename")
            let finalPath = repository.packPath(id)
            do {
                try io.rename(tempPath, finalPath)
            } catch {
                throw LifeboatError(error, action: "renaming pack to")
            }
            try Posix.fsyncDirectory(repository.packDirectory(id), io: io)
            CrashPoints.reached("pack.after-rename")
            return (id, entries)
        } catch {
            abandon()
            throw error
        }
    }

    /// Removes the temp file after a failure.
    func abandon() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        unlink(tempPath)
    }
}
