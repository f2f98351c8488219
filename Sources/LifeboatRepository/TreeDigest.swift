import CLifeboatPosix
import Glibc
import LifeboatCore

/// A deterministic SHA-256 over a directory tree: names, types, contents, permission bits,
/// owners, mtimes, symlink targets, device numbers, hard-link groups and xattrs, plus the
/// root directory's own metadata. Two trees with equal digests restore to the same state.
///
/// Not included: atime, ctime, inode numbers, and directory sizes, which no restore can keep;
/// nor Lifeboat's own `trusted.lifeboat.*` xattrs (file ids), which the service never sees.
public enum TreeDigest {
    public struct Result: Sendable {
        public var digest: ObjectID
        public var entries: UInt64
        public var bytes: UInt64
    }

    public static func compute(_ root: String) throws -> Result {
        var hasher = StreamHasher()
        var entries: UInt64 = 0
        var bytes: UInt64 = 0
        var linkGroups: [Key: UInt64] = [:]
        let rootPath = FSPath(root)
        guard case .success(let st) = FileMetadata.lstat(rootPath), FileMetadata.kind(of: st) == .directory else {
            throw LifeboatError(.badInput, "\(root) is not a directory", hint: "give the directory to digest")
        }
        func entry(_ relative: [UInt8], _ path: FSPath, _ st: stat, _ kind: NodeKind) throws {
            var record = ByteWriter()
            record.data(relative)
            record.u8(kind.rawValue)
            record.varint(UInt64(st.st_mode & 0o7777))
            record.varint(UInt64(st.st_uid))
            record.varint(UInt64(st.st_gid))
            record.i64(Int64(st.st_mtim.tv_sec))
            record.u32(UInt32(st.st_mtim.tv_nsec))
            let xattrs = try FileMetadata.xattrs(path).filter { !ReservedXattr.isReserved($0.name) }
            record.varint(UInt64(xattrs.count))
            for xattr in xattrs {
                record.data(xattr.name)
                record.data(xattr.value)
            }
            switch kind {
            case .file:
                record.varint(UInt64(st.st_size))
                if st.st_nlink > 1 {
                    let key = Key(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
                    let group = linkGroups[key] ?? entries
                    linkGroups[key] = group
                    record.varint(group + 1)
                } else {
                    record.varint(0)
                }
                record.id(try contentHash(path))
                bytes += UInt64(st.st_size)
            case .symlink:
                record.data(try FileMetadata.readlink(path, size: Int(st.st_size)))
            case .characterDevice, .blockDevice:
                record.varint(UInt64(st.st_rdev))
            default:
                break
            }
            hasher.update(record.bytes)
            entries += 1
        }
        func walk(_ path: FSPath, relative: [UInt8]) throws {
            let names = try Posix.listDirectory(path.string).sorted { $0.lexicographicallyPrecedes($1) }
            for name in names {
                let child = path.appending(name)
                let childRelative = relative.isEmpty ? name : relative + [UInt8(ascii: "/")] + name
                let st: stat
                switch FileMetadata.lstat(child) {
                case .success(let value): st = value
                case .failure(let error): throw error
                }
                guard let kind = FileMetadata.kind(of: st) else { continue }
                try entry(childRelative, child, st, kind)
                if kind == .directory { try walk(child, relative: childRelative) }
            }
        }
        try entry([], rootPath, st, .directory)
        try walk(rootPath, relative: [])
        return Result(digest: hasher.finalize(), entries: entries, bytes: bytes)
    }

    private struct Key: Hashable {
        let device: UInt64
        let inode: UInt64
    }

    /// Bytes per block of the content hash.
    static let blockSize = 64 << 10

    /// A hash of a file's logical contents that costs nothing for holes: the SHA-256 over the
    /// file's 64 KiB blocks, each given as its SHA-256, or as 32 zero bytes when it is all
    /// zeros (hole or written zeros alike, so sparse and dense copies hash the same).
    private static func contentHash(_ path: FSPath) throws -> ObjectID {
        let fd = path.withCString { open($0, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) }
        if fd < 0 { throw ioError(errno, "opening", path.string) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ioError(errno, "reading metadata of", path.string) }
        let size = UInt64(st.st_size)
        var outer = StreamHasher()
        let zeroBlock = [UInt8](repeating: 0, count: 32)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: 64)
        defer { buffer.deallocate() }
        var offset: UInt64 = 0
        while offset < size {
            // Skip holes without reading them: a hole is all zeros.
            if UInt64(st.st_blocks) * 512 < size {
                let data = lseek(fd, off_t(offset), lifeboat_seek_data())
                let nextData = data < 0 ? size : UInt64(data)
                while offset + UInt64(blockSize) <= nextData {
                    outer.update(zeroBlock)
                    offset += UInt64(blockSize)
                }
                if offset >= size { break }
            }
            let want = Int(min(UInt64(blockSize), size - offset))
            let got = Posix.pread(fd, UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]), offset: offset)
            if got < 0 { throw ioError(Int32(-got), "reading", path.string) }
            if got == 0 { break }
            let block = UnsafeRawBufferPointer(rebasing: buffer[0..<got])
            if block.allSatisfy({ $0 == 0 }) && got == blockSize {
                outer.update(zeroBlock)
            } else {
                outer.update(ObjectID.hash(block).bytes)
            }
            offset += UInt64(got)
        }
        return outer.finalize()
    }
}
