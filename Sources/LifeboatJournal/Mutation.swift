public import LifeboatCore

/// A file's identity across hosts: chosen at random when the file is first seen, kept in the
/// backing file's `trusted.lifeboat.fid` xattr, and carried by snapshots. The root of a data
/// dir is always `FileID.root`.
public typealias FileID = UInt64

extension FileID {
    public static let root: FileID = 1
    /// The xattr that holds a backing file's id (8 bytes, little-endian).
    public static let xattrName = ReservedXattr.fileID
    /// Xattrs under this prefix are Lifeboat's own bookkeeping: hidden from the service and
    /// left out of digests.
    public static let reservedXattrPrefix = ReservedXattr.prefix
}

/// A time with nanoseconds, as it is set on a file (`st_mtim`).
public struct FileTime: Sendable, Hashable {
    public var seconds: Int64
    public var nanoseconds: UInt32

    public init(seconds: Int64, nanoseconds: UInt32) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }
}

/// Attributes a `setattr` changed; nil means unchanged.
public struct AttributeChange: Sendable, Hashable {
    public var mode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?
    public var size: UInt64?
    public var atime: FileTime?
    public var mtime: FileTime?

    public init(
        mode: UInt32? = nil, uid: UInt32? = nil, gid: UInt32? = nil, size: UInt64? = nil, atime: FileTime? = nil,
        mtime: FileTime? = nil
    ) {
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.atime = atime
        self.mtime = mtime
    }
}

/// One mutation of a captured data dir, as the journal keeps it (Docs/capture.md).
///
/// Files are named by `FileID`, directories entries by (parent id, name). `time` is the
/// modification time the operation gave the changed inodes (the file for data changes, the
/// parent directories for namespace changes, the new entry for creations), so a replay
/// reproduces mtimes exactly.
public enum Mutation: Sendable, Hashable {
    /// A regular file, FIFO, socket or device node created in `parent`.
    case create(
        parent: FileID, name: [UInt8], file: FileID, mode: UInt32, uid: UInt32, gid: UInt32, rdev: UInt64,
        time: FileTime)
    case mkdir(parent: FileID, name: [UInt8], file: FileID, mode: UInt32, uid: UInt32, gid: UInt32, time: FileTime)
    case symlink(parent: FileID, name: [UInt8], file: FileID, target: [UInt8], uid: UInt32, gid: UInt32, time: FileTime)
    case link(file: FileID, parent: FileID, name: [UInt8], time: FileTime)
    case unlink(parent: FileID, name: [UInt8], file: FileID, time: FileTime)
    case rmdir(parent: FileID, name: [UInt8], file: FileID, time: FileTime)
    /// `flags` are renameat2's (RENAME_NOREPLACE = 1, RENAME_EXCHANGE = 2).
    case rename(
        parent: FileID, name: [UInt8], newParent: FileID, newName: [UInt8], flags: UInt32, file: FileID, time: FileTime)
    case write(file: FileID, offset: UInt64, data: [UInt8], time: FileTime)
    /// `time` is the ctime-changing moment; a size change also sets mtime to it unless the
    /// change names an mtime of its own.
    case setattr(file: FileID, change: AttributeChange, time: FileTime)
    case fallocate(file: FileID, mode: UInt32, offset: UInt64, length: UInt64, time: FileTime)
    case setxattr(file: FileID, name: [UInt8], value: [UInt8], flags: UInt32)
    case removexattr(file: FileID, name: [UInt8])
    /// A file that existed before capture got its id.
    case assignID(parent: FileID, name: [UInt8], file: FileID)

    /// The record kind byte of each case.
    public enum Kind: UInt8, Sendable, CaseIterable {
        case create = 1, mkdir, symlink, link, unlink, rmdir, rename, write, setattr, fallocate, setxattr,
            removexattr, assignID
    }

    public var kind: Kind {
        switch self {
        case .create: .create
        case .mkdir: .mkdir
        case .symlink: .symlink
        case .link: .link
        case .unlink: .unlink
        case .rmdir: .rmdir
        case .rename: .rename
        case .write: .write
        case .setattr: .setattr
        case .fallocate: .fallocate
        case .setxattr: .setxattr
        case .removexattr: .removexattr
        case .assignID: .assignID
        }
    }

    /// Byte size of a write record's header (file, offset, time) before its data.
    public static let writeHeaderSize = 8 + 8 + 12

    /// The header of a write record; the data follows it directly in the payload.
    public static func writeHeader(file: FileID, offset: UInt64, time: FileTime) -> ByteWriter {
        var writer = ByteWriter()
        writer.u64(file)
        writer.u64(offset)
        writer.time(time)
        return writer
    }

    /// The record payload.
    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        switch self {
        case .create(let parent, let name, let file, let mode, let uid, let gid, let rdev, let time):
            w.u64(parent)
            w.data(name)
            w.u64(file)
            w.u32(mode)
            w.u32(uid)
            w.u32(gid)
            w.u64(rdev)
            w.time(time)
        case .mkdir(let parent, let name, let file, let mode, let uid, let gid, let time):
            w.u64(parent)
            w.data(name)
            w.u64(file)
            w.u32(mode)
            w.u32(uid)
            w.u32(gid)
            w.time(time)
        case .symlink(let parent, let name, let file, let target, let uid, let gid, let time):
            w.u64(parent)
            w.data(name)
            w.u64(file)
            w.data(target)
            w.u32(uid)
            w.u32(gid)
            w.time(time)
        case .link(let file, let parent, let name, let time):
            w.u64(file)
            w.u64(parent)
            w.data(name)
            w.time(time)
        case .unlink(let parent, let name, let file, let time), .rmdir(let parent, let name, let file, let time):
            w.u64(parent)
            w.data(name)
            w.u64(file)
            w.time(time)
        case .rename(let parent, let name, let newParent, let newName, let flags, let file, let time):
            w.u64(parent)
            w.data(name)
            w.u64(newParent)
            w.data(newName)
            w.u32(flags)
            w.u64(file)
            w.time(time)
        case .write(let file, let offset, let data, let time):
            w = Mutation.writeHeader(file: file, offset: offset, time: time)
            w.raw(data)
        case .setattr(let file, let change, let time):
            w.u64(file)
            var present: UInt8 = 0
            if change.mode != nil { present |= 1 }
            if change.uid != nil { present |= 2 }
            if change.gid != nil { present |= 4 }
            if change.size != nil { present |= 8 }
            if change.atime != nil { present |= 16 }
            if change.mtime != nil { present |= 32 }
            w.u8(present)
            if let mode = change.mode { w.u32(mode) }
            if let uid = change.uid { w.u32(uid) }
            if let gid = change.gid { w.u32(gid) }
            if let size = change.size { w.u64(size) }
            if let atime = change.atime { w.time(atime) }
            if let mtime = change.mtime { w.time(mtime) }
            w.time(time)
        case .fallocate(let file, let mode, let offset, let length, let time):
            w.u64(file)
            w.u32(mode)
            w.u64(offset)
            w.u64(length)
            w.time(time)
        case .setxattr(let file, let name, let value, let flags):
            w.u64(file)
            w.data(name)
            w.data(value)
            w.u32(flags)
        case .removexattr(let file, let name):
            w.u64(file)
            w.data(name)
        case .assignID(let parent, let name, let file):
            w.u64(parent)
            w.data(name)
            w.u64(file)
        }
        return w.bytes
    }

    /// Decodes a record; throws an integrity error naming the position for a malformed one.
    public init(record: JournalRecord) throws {
        guard let kind = Kind(rawValue: record.kind) else {
            throw LifeboatError(
                .integrity, "journal record \(record.position) has unknown kind \(record.kind)",
                hint: "this journal was written by a newer Lifeboat")
        }
        var r = ByteReader(record.payload, context: "journal record \(record.position)")
        switch kind {
        case .create:
            self = .create(
                parent: try r.u64(), name: try r.data(), file: try r.u64(), mode: try r.u32(), uid: try r.u32(),
                gid: try r.u32(), rdev: try r.u64(), time: try r.time())
        case .mkdir:
            self = .mkdir(
                parent: try r.u64(), name: try r.data(), file: try r.u64(), mode: try r.u32(), uid: try r.u32(),
                gid: try r.u32(), time: try r.time())
        case .symlink:
            self = .symlink(
                parent: try r.u64(), name: try r.data(), file: try r.u64(), target: try r.data(), uid: try r.u32(),
                gid: try r.u32(), time: try r.time())
        case .link:
            self = .link(file: try r.u64(), parent: try r.u64(), name: try r.data(), time: try r.time())
        case .unlink:
            self = .unlink(parent: try r.u64(), name: try r.data(), file: try r.u64(), time: try r.time())
        case .rmdir:
            self = .rmdir(parent: try r.u64(), name: try r.data(), file: try r.u64(), time: try r.time())
        case .rename:
            self = .rename(
                parent: try r.u64(), name: try r.data(), newParent: try r.u64(), newName: try r.data(),
                flags: try r.u32(), file: try r.u64(), time: try r.time())
        case .write:
            let file = try r.u64()
            let offset = try r.u64()
            let time = try r.time()
            self = .write(file: file, offset: offset, data: try r.raw(r.remaining), time: time)
        case .setattr:
            let file = try r.u64()
            let present = try r.u8()
            var change = AttributeChange()
            if present & 1 != 0 { change.mode = try r.u32() }
            if present & 2 != 0 { change.uid = try r.u32() }
            if present & 4 != 0 { change.gid = try r.u32() }
            if present & 8 != 0 { change.size = try r.u64() }
            if present & 16 != 0 { change.atime = try r.time() }
            if present & 32 != 0 { change.mtime = try r.time() }
            self = .setattr(file: file, change: change, time: try r.time())
        case .fallocate:
            self = .fallocate(
                file: try r.u64(), mode: try r.u32(), offset: try r.u64(), length: try r.u64(), time: try r.time())
        case .setxattr:
            self = .setxattr(file: try r.u64(), name: try r.data(), value: try r.data(), flags: try r.u32())
        case .removexattr:
            self = .removexattr(file: try r.u64(), name: try r.data())
        case .assignID:
            self = .assignID(parent: try r.u64(), name: try r.data(), file: try r.u64())
        }
        guard r.remaining == 0 else {
            throw LifeboatError(.integrity, "journal record \(record.position) has \(r.remaining) trailing bytes")
        }
    }
}

extension ByteWriter {
    mutating func time(_ value: FileTime) {
        i64(value.seconds)
        u32(value.nanoseconds)
    }
}

extension ByteReader {
    mutating func time() throws -> FileTime {
        FileTime(seconds: try i64(), nanoseconds: try u32())
    }
}
