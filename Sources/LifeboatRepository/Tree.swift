public import LifeboatCore
import LifeboatSystem

/// The kind of a filesystem entry in a tree.
public enum NodeKind: UInt8, Sendable {
    case file = 1
    case directory, symlink, fifo, characterDevice, blockDevice, socket

    /// One letter for listings: `-`, `d`, `l`, `p`, `c`, `b`, `s`.
    public var letter: String {
        switch self {
        case .file: "-"
        case .directory: "d"
        case .symlink: "l"
        case .fifo: "p"
        case .characterDevice: "c"
        case .blockDevice: "b"
        case .socket: "s"
        }
    }
}

/// One piece of a file's contents: a stored blob, or a hole that reads as zeros.
public enum ContentPiece: Sendable, Equatable {
    case blob(ObjectID, length: UInt32)
    case hole(length: UInt64)

    public var length: UInt64 {
        switch self {
        case .blob(_, let length): UInt64(length)
        case .hole(let length): length
        }
    }
}

/// One entry of a directory: its metadata, and its contents, target or subtree.
public struct Node: Sendable, Equatable {
    public var kind: NodeKind
    public var name: [UInt8]
    /// Permission bits including setuid, setgid and sticky (no file type bits).
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var mtime: Timestamp
    /// The source's ctime, device and inode: used only to detect unchanged files next time.
    public var ctime: Timestamp
    public var device: UInt64
    public var inode: UInt64
    public var links: UInt32
    public var size: UInt64
    public var rdev: UInt64
    public var xattrs: [(name: [UInt8], value: [UInt8])]
    public var linkTarget: [UInt8]
    public var subtree: ObjectID?
    public var content: [ContentPiece]

    public var nameString: String { String(decoding: name, as: UTF8.self) }

    public static func == (lhs: Node, rhs: Node) -> Bool {
        lhs.kind == rhs.kind && lhs.name == rhs.name && lhs.mode == rhs.mode && lhs.uid == rhs.uid
            && lhs.gid == rhs.gid && lhs.mtime == rhs.mtime && lhs.ctime == rhs.ctime && lhs.device == rhs.device
            && lhs.inode == rhs.inode && lhs.links == rhs.links && lhs.size == rhs.size && lhs.rdev == rhs.rdev
            && lhs.xattrs.map(\.name) == rhs.xattrs.map(\.name) && lhs.xattrs.map(\.value) == rhs.xattrs.map(\.value)
            && lhs.linkTarget == rhs.linkTarget && lhs.subtree == rhs.subtree && lhs.content == rhs.content
    }

    /// True when what a restore would produce is the same (ignores source-only fields).
    public func sameRestoredState(as other: Node) -> Bool {
        kind == other.kind && mode == other.mode && uid == other.uid && gid == other.gid && mtime == other.mtime
            && size == other.size && rdev == other.rdev && xattrs.map(\.name) == other.xattrs.map(\.name)
            && xattrs.map(\.value) == other.xattrs.map(\.value) && linkTarget == other.linkTarget
            && subtree == other.subtree && content == other.content
    }
}

/// The binary encoding of tree blobs: a format byte, a node count, then the nodes sorted by
/// name. Described in Docs/repository-format.md.
enum TreeFormat {
    static let version: UInt8 = 1

    static func encode(_ nodes: [Node]) -> [UInt8] {
        var writer = ByteWriter()
        writer.u8(version)
        writer.varint(UInt64(nodes.count))
        for node in nodes.sorted(by: { $0.name.lexicographicallyPrecedes($1.name) }) {
            writer.u8(node.kind.rawValue)
            writer.data(node.name)
            writer.varint(UInt64(node.mode))
            writer.varint(UInt64(node.uid))
            writer.varint(UInt64(node.gid))
            writer.i64(node.mtime.seconds)
            writer.u32(UInt32(bitPattern: node.mtime.nanoseconds))
            writer.i64(node.ctime.seconds)
            writer.u32(UInt32(bitPattern: node.ctime.nanoseconds))
            writer.varint(node.device)
            writer.varint(node.inode)
            writer.varint(UInt64(node.links))
            writer.varint(node.size)
            writer.varint(node.rdev)
            writer.varint(UInt64(node.xattrs.count))
            for xattr in node.xattrs {
                writer.data(xattr.name)
                writer.data(xattr.value)
            }
            switch node.kind {
            case .symlink:
                writer.data(node.linkTarget)
            case .directory:
                writer.id(node.subtree!)
            case .file:
                writer.varint(UInt64(node.content.count))
                for piece in node.content {
                    switch piece {
                    case .blob(let id, let length):
                        writer.u8(0)
                        writer.id(id)
                        writer.varint(UInt64(length))
                    case .hole(let length):
                        writer.u8(1)
                        writer.varint(length)
                    }
                }
            default:
                break
            }
        }
        return writer.bytes
    }

    static func decode(_ bytes: [UInt8], id: ObjectID) throws -> [Node] {
        var reader = ByteReader(bytes, context: "tree \(id.hex)")
        guard try reader.u8() == version else {
            throw LifeboatError(.integrity, "tree \(id.hex) has an unknown tree format")
        }
        let count = try reader.varint()
        guard count <= UInt64(reader.remaining) else { throw LifeboatError(.integrity, "tree \(id.hex) is truncated") }
        var nodes: [Node] = []
        nodes.reserveCapacity(Int(count))
        for _ in 0..<count {
            guard let kind = NodeKind(rawValue: try reader.u8()) else {
                throw LifeboatError(.integrity, "tree \(id.hex) has an unknown node kind")
            }
            var node = Node(
                kind: kind, name: try reader.data(), mode: UInt32(truncatingIfNeeded: try reader.varint()),
                uid: UInt32(truncatingIfNeeded: try reader.varint()),
                gid: UInt32(truncatingIfNeeded: try reader.varint()),
                mtime: Timestamp(seconds: try reader.i64(), nanoseconds: Int32(bitPattern: try reader.u32())),
                ctime: Timestamp(seconds: try reader.i64(), nanoseconds: Int32(bitPattern: try reader.u32())),
                device: try reader.varint(), inode: try reader.varint(),
                links: UInt32(truncatingIfNeeded: try reader.varint()), size: try reader.varint(),
                rdev: try reader.varint(), xattrs: [], linkTarget: [], subtree: nil, content: [])
            let xattrCount = try reader.varint()
            for _ in 0..<xattrCount { node.xattrs.append((try reader.data(), try reader.data())) }
            switch kind {
            case .symlink:
                node.linkTarget = try reader.data()
            case .directory:
                node.subtree = try reader.id()
            case .file:
                let pieces = try reader.varint()
                guard pieces <= UInt64(reader.remaining) else {
                    throw LifeboatError(.integrity, "tree \(id.hex) is truncated")
                }
                node.content.reserveCapacity(Int(pieces))
                for _ in 0..<pieces {
                    switch try reader.u8() {
                    case 0:
                        node.content.append(
                            .blob(try reader.id(), length: UInt32(truncatingIfNeeded: try reader.varint())))
                    case 1: node.content.append(.hole(length: try reader.varint()))
                    default: throw LifeboatError(.integrity, "tree \(id.hex) has an unknown content piece")
                    }
                }
                guard node.content.reduce(0, { $0 + $1.length }) == node.size else {
                    throw LifeboatError(
                        .integrity, "tree \(id.hex): file \(node.nameString) pieces do not add up to its size")
                }
            default:
                break
            }
            nodes.append(node)
        }
        guard reader.remaining == 0 else { throw LifeboatError(.integrity, "tree \(id.hex) has trailing bytes") }
        return nodes
    }
}

extension Node {
    /// A node with metadata only; contents or a subtree are filled in when it is stored.
    public init(
        kind: NodeKind, name: [UInt8], mode: UInt32, uid: UInt32, gid: UInt32, mtime: Timestamp, ctime: Timestamp,
        device: UInt64, inode: UInt64, links: UInt32, size: UInt64, rdev: UInt64,
        xattrs: [(name: [UInt8], value: [UInt8])], linkTarget: [UInt8]
    ) {
        self.init(
            kind: kind, name: name, mode: mode, uid: uid, gid: gid, mtime: mtime, ctime: ctime, device: device,
            inode: inode, links: links, size: size, rdev: rdev, xattrs: xattrs, linkTarget: linkTarget, subtree: nil,
            content: [])
    }
}

extension NodeKind {
    /// The kind of a `st_mode`'s file type bits, or nil for an unknown type.
    public init?(mode: UInt32) {
        switch mode & 0o170000 {
        case 0o100000: self = .file
        case 0o040000: self = .directory
        case 0o120000: self = .symlink
        case 0o010000: self = .fifo
        case 0o020000: self = .characterDevice
        case 0o060000: self = .blockDevice
        case 0o140000: self = .socket
        default: return nil
        }
    }
}
