extension Mutation {
    /// The record's fields as text, for operators (`lifeboat journal`): file ids in hex, names
    /// as UTF-8 (invalid bytes replaced), a write's data as its length.
    public var fields: [(key: String, value: String)] {
        func id(_ value: FileID) -> String { String(value, radix: 16) }
        func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
        func time(_ value: FileTime) -> String { "\(value.seconds).\(String(format9(value.nanoseconds)))" }
        switch self {
        case .create(let parent, let name, let file, let mode, let uid, let gid, let rdev, let t):
            return [
                ("parent", id(parent)), ("name", text(name)), ("file", id(file)), ("mode", String(mode, radix: 8)),
                ("uid", "\(uid)"), ("gid", "\(gid)"), ("rdev", "\(rdev)"), ("time", time(t)),
            ]
        case .mkdir(let parent, let name, let file, let mode, let uid, let gid, let t):
            return [
                ("parent", id(parent)), ("name", text(name)), ("file", id(file)), ("mode", String(mode, radix: 8)),
                ("uid", "\(uid)"), ("gid", "\(gid)"), ("time", time(t)),
            ]
        case .symlink(let parent, let name, let file, let target, let uid, let gid, let t):
            return [
                ("parent", id(parent)), ("name", text(name)), ("file", id(file)), ("target", text(target)),
                ("uid", "\(uid)"), ("gid", "\(gid)"), ("time", time(t)),
            ]
        case .link(let file, let parent, let name, let t):
            return [("file", id(file)), ("parent", id(parent)), ("name", text(name)), ("time", time(t))]
        case .unlink(let parent, let name, let file, let t), .rmdir(let parent, let name, let file, let t):
            return [("parent", id(parent)), ("name", text(name)), ("file", id(file)), ("time", time(t))]
        case .rename(let parent, let name, let newParent, let newName, let flags, let file, let t):
            return [
                ("parent", id(parent)), ("name", text(name)), ("new_parent", id(newParent)),
                ("new_name", text(newName)), ("flags", "\(flags)"), ("file", id(file)), ("time", time(t)),
            ]
        case .write(let file, let offset, let data, let t):
            return [("file", id(file)), ("offset", "\(offset)"), ("length", "\(data.count)"), ("time", time(t))]
        case .setattr(let file, let change, let t):
            var fields: [(key: String, value: String)] = [("file", id(file))]
            if let mode = change.mode { fields.append(("mode", String(mode, radix: 8))) }
            if let uid = change.uid { fields.append(("uid", "\(uid)")) }
            if let gid = change.gid { fields.append(("gid", "\(gid)")) }
            if let size = change.size { fields.append(("size", "\(size)")) }
            if let atime = change.atime { fields.append(("atime", time(atime))) }
            if let mtime = change.mtime { fields.append(("mtime", time(mtime))) }
            fields.append(("time", time(t)))
            return fields
        case .fallocate(let file, let mode, let offset, let length, let t):
            return [
                ("file", id(file)), ("mode", "\(mode)"), ("offset", "\(offset)"), ("length", "\(length)"),
                ("time", time(t)),
            ]
        case .setxattr(let file, let name, let value, let flags):
            return [("file", id(file)), ("name", text(name)), ("length", "\(value.count)"), ("flags", "\(flags)")]
        case .removexattr(let file, let name):
            return [("file", id(file)), ("name", text(name))]
        case .assignID(let parent, let name, let file):
            return [("parent", id(parent)), ("name", text(name)), ("file", id(file))]
        }
    }
}

/// Nanoseconds as nine digits.
private func format9(_ value: UInt32) -> String {
    let digits = String(value)
    return String(repeating: "0", count: max(0, 9 - digits.count)) + digits
}

extension Mutation.Kind {
    /// The name operators see: `create`, `write`, `assign_id`, ...
    public var name: String {
        switch self {
        case .assignID: "assign_id"
        default: "\(self)"
        }
    }
}
