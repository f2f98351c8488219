import Foundation
public import LifeboatCore
import LifeboatSystem

/// A snapshot manifest: the single file whose appearance commits a backup.
///
/// Stored as JSON named by its SHA-256, so it is readable by people and any changed byte is
/// detected. `tree` is the root directory's tree blob; `root` is that directory's own metadata.
public struct Snapshot: Codable, Sendable {
    public static let formatVersion = 1

    public var version: Int
    public var time: Timestamp
    public var host: String
    public var workload: String
    public var tags: [String]
    public var paths: [String]
    public var parent: String?
    public var tree: String
    public var root: RootMetadata
    /// The journal position this snapshot is exact at, when taken by an agent.
    public var position: Position?
    /// The epoch of the primary that wrote it (0 for offline backups).
    public var epoch: UInt64
    public var summary: Summary
    public var program: String

    /// The root directory's own mode, owner and mtime.
    public struct RootMetadata: Codable, Sendable, Equatable {
        public var mode: UInt32
        public var uid: UInt32
        public var gid: UInt32
        public var mtime: Timestamp
        public var xattrs: [String: String]?

        public init(mode: UInt32, uid: UInt32, gid: UInt32, mtime: Timestamp, xattrs: [String: String]?) {
            self.mode = mode
            self.uid = uid
            self.gid = gid
            self.mtime = mtime
            self.xattrs = xattrs
        }
    }

    /// Totals of a backup.
    public struct Summary: Codable, Sendable {
        public var files: UInt64
        public var directories: UInt64
        public var otherEntries: UInt64
        public var totalBytes: UInt64
        public var bytesRead: UInt64
        public var filesUnchanged: UInt64
        public var newBlobs: UInt64
        public var newBytes: UInt64
        public var storedBytes: UInt64
        public var durationSeconds: Double
        public var unreadable: UInt64

        enum CodingKeys: String, CodingKey {
            case files, directories
            case otherEntries = "other_entries"
            case totalBytes = "total_bytes"
            case bytesRead = "bytes_read"
            case filesUnchanged = "files_unchanged"
            case newBlobs = "new_blobs"
            case newBytes = "new_bytes"
            case storedBytes = "stored_bytes"
            case durationSeconds = "duration_seconds"
            case unreadable
        }
    }

    public var treeID: ObjectID { ObjectID(hex: tree)! }
}

/// A snapshot with its id, as listed.
public struct SnapshotRecord: Sendable {
    public var id: ObjectID
    public var snapshot: Snapshot
}

extension Repository {
    /// Every snapshot, oldest first. A damaged or unreadable snapshot file throws.
    public func listSnapshots() throws -> [SnapshotRecord] {
        try listObjects(in: paths.snapshotsDir).map { id in
            SnapshotRecord(id: id, snapshot: try loadSnapshot(id))
        }.sorted { ($0.snapshot.time, $0.id) < ($1.snapshot.time, $1.id) }
    }

    /// Loads and verifies one snapshot manifest.
    public func loadSnapshot(_ id: ObjectID) throws -> Snapshot {
        let bytes = try readVerified(paths.snapshotPath(id), id: id, kind: "snapshot")
        do {
            let snapshot = try JSONDecoder().decode(Snapshot.self, from: Data(bytes))
            guard snapshot.version == Snapshot.formatVersion, ObjectID(hex: snapshot.tree) != nil else {
                throw LifeboatError(.unsupportedFormat, "snapshot \(id.hex) has format version \(snapshot.version)")
            }
            return snapshot
        } catch let error as LifeboatError {
            throw error
        } catch {
            throw LifeboatError(.integrity, "snapshot \(id.hex) is not a valid manifest: \(error)")
        }
    }

    /// Writes a snapshot manifest: the commit point of a backup.
    func writeSnapshot(_ snapshot: Snapshot) throws -> ObjectID {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let bytes = Array(try encoder.encode(snapshot))
        return try writeContentAddressed(bytes, directory: paths.snapshotsDir, crashPrefix: "snapshot")
    }

    /// Resolves `latest`, a full id or a unique prefix of at least 4 hex digits.
    /// `host`/`workload` narrow `latest`.
    public func resolveSnapshot(
        _ reference: String, host: String? = nil, workload: String? = nil
    ) throws
        -> SnapshotRecord
    {
        let all = try listSnapshots()
        if reference == "latest" {
            let matching = all.filter {
                (host == nil || $0.snapshot.host == host) && (workload == nil || $0.snapshot.workload == workload)
            }
            guard let newest = matching.last else {
                throw LifeboatError(
                    .badInput,
                    "no snapshot matches `latest`" + (host.map { " for host \($0)" } ?? "")
                        + (workload.map { " for workload \($0)" } ?? ""), hint: "list them with `lifeboat snapshots`")
            }
            return newest
        }
        let prefix = reference.lowercased()
        guard Hex.isHex(prefix), prefix.count >= 4, prefix.count <= 64 else {
            throw LifeboatError(
                .badInput, "`\(reference)` is not a snapshot id",
                hint: "give `latest`, a full id, or a prefix of at least 4 hex digits")
        }
        let matches = all.filter { $0.id.hex.hasPrefix(prefix) }
        guard !matches.isEmpty else {
            throw LifeboatError(
                .badInput, "no snapshot with id \(reference) in \(path)", hint: "list them with `lifeboat snapshots`")
        }
        guard matches.count == 1 else {
            throw LifeboatError(
                .badInput,
                "snapshot prefix \(reference) is ambiguous (matches \(matches.map(\.id.short).joined(separator: ", ")))",
                hint: "give more digits")
        }
        return matches[0]
    }
}
