import LifeboatCore
import LifeboatSystem

/// One entry of a snapshot, with its path from the snapshot's root.
public struct ListedEntry: Sendable {
    public var path: String
    public var node: Node
}

/// A difference between two snapshots.
public struct TreeChange: Sendable {
    public enum Kind: String, Sendable {
        case added = "+"
        case removed = "-"
        case modified = "M"
    }

    public var kind: Kind
    public var path: String
}

/// Reads snapshot trees for `ls` and `diff`; loads the index once.
public final class SnapshotBrowser {
    let reader: BlobReader
    /// Held while browsing, so a prune cannot delete what is being read.
    private let lock: RepositoryLock

    public init(repository: Repository) throws {
        lock = try RepositoryLock.acquire(repository, operation: "browse", exclusive: false)
        reader = BlobReader(repository: repository, index: try repository.loadIndex())
    }

    deinit { try? lock.release() }

    func nodes(_ tree: ObjectID) throws -> [Node] {
        try TreeFormat.decode(try reader.read(tree), id: tree)
    }

    /// Every entry below `subpath` (depth first, sorted by name), calling `body` for each.
    public func list(_ snapshot: SnapshotRecord, subpath: String?, _ body: (ListedEntry) throws -> Void) throws {
        var tree = snapshot.snapshot.treeID
        var prefix = "/"
        for component in (subpath ?? "").split(separator: "/") {
            guard let node = try nodes(tree).first(where: { $0.name == Array(component.utf8) }) else {
                throw LifeboatError(
                    .badInput, "snapshot \(snapshot.id.short) has no \(subpath!)",
                    hint: "list the snapshot without a path first")
            }
            guard let subtree = node.subtree else {
                try body(ListedEntry(path: prefix + node.nameString, node: node))
                return
            }
            tree = subtree
            prefix += node.nameString + "/"
        }
        try walk(tree, prefix: prefix, body)
    }

    private func walk(_ tree: ObjectID, prefix: String, _ body: (ListedEntry) throws -> Void) throws {
        for node in try nodes(tree) {
            try body(ListedEntry(path: prefix + node.nameString, node: node))
            if let subtree = node.subtree { try walk(subtree, prefix: prefix + node.nameString + "/", body) }
        }
    }

    /// The changes from `old` to `new`; identical subtrees are skipped without reading them.
    public func diff(_ old: SnapshotRecord, _ new: SnapshotRecord) throws -> [TreeChange] {
        var changes: [TreeChange] = []
        try diff(old.snapshot.treeID, new.snapshot.treeID, prefix: "/", into: &changes)
        return changes
    }

    private func diff(_ old: ObjectID?, _ new: ObjectID?, prefix: String, into changes: inout [TreeChange]) throws {
        if old == new { return }
        let oldNodes = try old.map { try nodes($0) } ?? []
        let newNodes = try new.map { try nodes($0) } ?? []
        let oldByName = Dictionary(oldNodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let newByName = Dictionary(newNodes.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let names = Set(oldByName.keys).union(newByName.keys).sorted { $0.lexicographicallyPrecedes($1) }
        for name in names {
            let before = oldByName[name]
            let after = newByName[name]
            let path = prefix + String(decoding: name, as: UTF8.self)
            switch (before, after) {
            case (nil, let node?):
                changes.append(TreeChange(kind: .added, path: path))
                if let subtree = node.subtree { try diff(nil, subtree, prefix: path + "/", into: &changes) }
            case (let node?, nil):
                changes.append(TreeChange(kind: .removed, path: path))
                if let subtree = node.subtree { try diff(subtree, nil, prefix: path + "/", into: &changes) }
            case (let a?, let b?):
                if a.kind != b.kind {
                    changes.append(TreeChange(kind: .removed, path: path))
                    changes.append(TreeChange(kind: .added, path: path))
                    if let subtree = a.subtree { try diff(subtree, nil, prefix: path + "/", into: &changes) }
                    if let subtree = b.subtree { try diff(nil, subtree, prefix: path + "/", into: &changes) }
                } else {
                    var same = a
                    same.subtree = b.subtree
                    if !same.sameRestoredState(as: b) { changes.append(TreeChange(kind: .modified, path: path)) }
                    if a.subtree != b.subtree { try diff(a.subtree, b.subtree, prefix: path + "/", into: &changes) }
                }
            case (nil, nil):
                break
            }
        }
    }
}
