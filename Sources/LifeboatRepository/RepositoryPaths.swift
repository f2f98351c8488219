import LifeboatSystem

/// Where each kind of object lives inside a repository directory.
///
/// Packs spread over 256 subdirectories by the first byte of their id, so no directory
/// on a distributed filesystem grows past a few thousand entries.
struct RepositoryPaths: Sendable {
    let root: String

    var configPath: String { root + "/config" }
    var dataDir: String { root + "/data" }
    var indexDir: String { root + "/index" }
    var snapshotsDir: String { root + "/snapshots" }
    var locksDir: String { root + "/locks" }

    func packDirectory(_ id: ObjectID) -> String { dataDir + "/" + String(id.hex.prefix(2)) }

    func packPath(_ id: ObjectID) -> String { packDirectory(id) + "/" + id.hex }

    func indexPath(_ id: ObjectID) -> String { indexDir + "/" + id.hex }

    func snapshotPath(_ id: ObjectID) -> String { snapshotsDir + "/" + id.hex }

    func lockPath(_ id: ObjectID) -> String { locksDir + "/" + id.hex }

    /// A fresh temp file name in `directory`; prune removes leftovers of crashed writers.
    func temp(in directory: String) -> String { FileIO.tempPath(in: directory) }

    /// The prefix of temp files (the same as `writeFileAtomically`'s).
    static let tempPrefix = FileIO.tempPrefix

    /// The 256 pack subdirectory names, `00` to `ff`.
    static let packSubdirectories: [String] = (0..<256).map { value in
        let digits = Array("0123456789abcdef")
        return String([digits[value >> 4], digits[value & 15]])
    }
}
