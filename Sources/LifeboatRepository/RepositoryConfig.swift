import Foundation
import LifeboatCore
import LifeboatSystem

/// The repository's `config` file: format version, id, and the parameters every writer must share.
///
/// Stored as one line of JSON followed by a line `sha256:<hex>` of that JSON, so a damaged
/// config is detected instead of silently changing how data is cut.
public struct RepositoryConfig: Codable, Sendable, Equatable {
    /// The format version this code reads and writes.
    public static let currentVersion = 1

    public struct ChunkerParameters: Codable, Sendable, Equatable {
        public var min: Int
        public var average: Int
        public var max: Int
        public var seed: UInt64
    }

    public var version: Int
    public var id: String
    public var created: String
    public var chunker: ChunkerParameters
    /// zstd level for new data.
    public var compression: Int
    /// Target size of data pack files in bytes.
    public var packSize: Int

    enum CodingKeys: String, CodingKey {
        case version, id, created, chunker, compression
        case packSize = "pack_size"
    }

    /// A new config with fresh random id and chunker seed.
    public static func makeNew() -> RepositoryConfig {
        var generator = SystemRandomNumberGenerator()
        return RepositoryConfig(
            version: currentVersion,
            id: ObjectID.random().hex,
            created: Timestamp.now().iso8601,
            chunker: ChunkerParameters(min: 64 << 10, average: 256 << 10, max: 1 << 20, seed: generator.next()),
            compression: 3,
            packSize: 32 << 20)
    }

    func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = Array(try encoder.encode(self))
        return json + Array("\nsha256:\(ObjectID.hash(json).hex)\n".utf8)
    }

    static func decode(_ bytes: [UInt8], path: String) throws -> RepositoryConfig {
        let lines = bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: true)
        guard lines.count == 2, let digest = String(bytes: lines[1], encoding: .utf8), digest.hasPrefix("sha256:")
        else {
            throw LifeboatError(
                .integrity, "\(path) is damaged: expected a JSON line and a sha256 line",
                hint: "restore it from a copy of the repository")
        }
        let json = Array(lines[0])
        guard ObjectID.hash(json).hex == digest.dropFirst(7) else {
            throw LifeboatError(
                .integrity, "\(path) is damaged: its checksum does not match",
                hint: "restore it from a copy of the repository")
        }
        struct VersionOnly: Decodable { var version: Int }
        guard let version = try? JSONDecoder().decode(VersionOnly.self, from: Data(json)).version else {
            throw LifeboatError(.noRepository, "\(path) is not a Lifeboat repository config")
        }
        guard version == currentVersion else {
            throw LifeboatError(
                .unsupportedFormat,
                "repository format version \(version) is not supported by this lifeboat (it reads version \(currentVersion))",
                hint: "use a lifeboat release that supports format \(version)")
        }
        do {
            let config = try JSONDecoder().decode(RepositoryConfig.self, from: Data(json))
            try config.validate(path: path)
            return config
        } catch let error as LifeboatError {
            throw error
        } catch {
            throw LifeboatError(.integrity, "\(path) is not a valid repository config: \(error)")
        }
    }

    func validate(path: String) throws {
        let c = chunker
        guard c.min >= 64, c.min < c.average, c.average < c.max, c.average & (c.average - 1) == 0, c.max <= 16 << 20,
            (1...22).contains(compression) || (-7...(-1)).contains(compression), packSize >= 1 << 20,
            packSize <= 256 << 20
        else {
            throw LifeboatError(.integrity, "\(path) has out-of-range chunker, compression or pack size settings")
        }
    }
}
