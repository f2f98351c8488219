import Foundation
import Glibc
import LifeboatCore
public import LifeboatSystem

/// An open repository: its config, its paths, and the syscall seam it writes through.
///
/// Opening reads only the config; snapshots and the index are loaded by the operations
/// that need them, snapshots first (see the commit order in Docs/repository-format.md).
public final class Repository: Sendable {
    public let config: RepositoryConfig
    let paths: RepositoryPaths
    /// Every durable write goes through it (tests inject failures here).
    let io: FileIO
    let zstd: Zstd
    let chunker: Chunker

    public var path: String { paths.root }

    init(paths: RepositoryPaths, config: RepositoryConfig, syscalls: any SystemCalls) {
        self.paths = paths
        self.config = config
        self.io = FileIO(syscalls)
        var level = Int32(config.compression)
        if let raw = getenv("LIFEBOAT_COMPRESSION_LEVEL"), let override = Int32(String(cString: raw)) {
            level = override
        }
        zstd = Zstd(level: level)
        chunker = Chunker(
            minSize: config.chunker.min, averageSize: config.chunker.average, maxSize: config.chunker.max,
            seed: config.chunker.seed)
    }

    /// Creates a repository at `path`, which must not exist or be an empty directory.
    @discardableResult
    public static func initialize(
        at path: String, syscalls: any SystemCalls = RealSystemCalls(), config: RepositoryConfig = .makeNew()
    ) throws -> Repository {
        let paths = RepositoryPaths(root: path)
        if Posix.exists(path) {
            let names = try Posix.listDirectory(path)
            guard names.isEmpty else {
                if Posix.exists(paths.configPath) {
                    throw LifeboatError(
                        .badInput, "\(path) already holds a repository", hint: "use it as it is, or pick another path")
                }
                throw LifeboatError(.badInput, "\(path) is not empty", hint: "give a new or empty directory")
            }
        } else {
            try Posix.makeDirectory(path, mode: 0o700)
        }
        for dir in [paths.dataDir, paths.indexDir, paths.snapshotsDir, paths.locksDir] {
            try Posix.makeDirectory(dir, mode: 0o700)
        }
        for sub in RepositoryPaths.packSubdirectories {
            try Posix.makeDirectory(paths.dataDir + "/" + sub, mode: 0o700)
        }
        try Posix.fsyncDirectory(paths.dataDir, io: FileIO(syscalls))
        let repository = Repository(paths: paths, config: config, syscalls: syscalls)
        // The config is written last: a repository without one is not a repository yet.
        try repository.writeFileAtomically(
            directory: path, name: "config", bytes: try config.encoded(), crashPrefix: nil)
        return repository
    }

    /// Opens the repository at `path`, checking its format version.
    public static func open(
        at path: String, syscalls: any SystemCalls = RealSystemCalls()
    ) throws -> Repository {
        let paths = RepositoryPaths(root: path)
        var st = stat()
        guard stat(path, &st) == 0 else {
            let code = errno
            guard code == ENOENT else {
                // A volume whose mount lost its servers answers ENOTCONN or EIO: not "missing".
                throw LifeboatError(
                    .operationFailed, "cannot reach repository \(path): \(errnoText(code))",
                    hint: "check that its volume is mounted and connected")
            }
            throw LifeboatError(
                .noRepository, "repository \(path) does not exist",
                hint: "create it with `lifeboat init --repo \(path)`")
        }
        guard (st.st_mode & S_IFMT) == S_IFDIR, Posix.exists(paths.configPath) else {
            throw LifeboatError(
                .noRepository, "\(path) is not a Lifeboat repository (no config file)",
                hint: "check the path, or create one with `lifeboat init`")
        }
        let config = try RepositoryConfig.decode(try Posix.readFile(paths.configPath), path: paths.configPath)
        return Repository(paths: paths, config: config, syscalls: syscalls)
    }

    /// Writes a small file the crash-safe way (`FileIO.writeFileAtomically`: temp file in the
    /// same directory, write, fsync, rename, fsync the directory) through the repository's
    /// seam. A failure at any step leaves no partial file under the final name.
    func writeFileAtomically(directory: String, name: String, bytes: [UInt8], crashPrefix: String?) throws {
        do {
            try io.writeFileAtomically(directory: directory, name: name, bytes: bytes, crashPrefix: crashPrefix)
        } catch {
            throw ioError(error)
        }
    }

    /// Removes a file and makes the removal durable. A missing file is an error: nothing
    /// may be taken as already gone without saying so.
    func removeFile(directory: String, name: String) throws {
        let target = directory + "/" + name
        if unlink(target) != 0 { throw ioError(errno, "removing", target) }
        try Posix.fsyncDirectory(directory, io: io)
    }

    /// Names of objects (64 hex digits) in a directory; temp files and others are skipped.
    func listObjects(in directory: String) throws -> [ObjectID] {
        try Posix.listDirectory(directory, io: io).compactMap { name in
            name.count == 64 ? ObjectID(hex: String(decoding: name, as: UTF8.self)) : nil
        }
    }

    /// Every pack file present on disk, with its size. A failed listing throws.
    func listPacks() throws -> [ObjectID: UInt64] {
        var result: [ObjectID: UInt64] = [:]
        for sub in RepositoryPaths.packSubdirectories {
            let dir = paths.dataDir + "/" + sub
            for id in try listObjects(in: dir) {
                var st = stat()
                let path = dir + "/" + id.hex
                guard stat(path, &st) == 0 else { throw ioError(errno, "inspecting", path) }
                result[id] = UInt64(st.st_size)
            }
        }
        return result
    }

    /// Reads a content-addressed file and verifies that its SHA-256 is its name.
    func readVerified(_ path: String, id: ObjectID, kind: String) throws -> [UInt8] {
        let bytes = try Posix.readFile(path)
        guard ObjectID.hash(bytes) == id else {
            throw LifeboatError(
                .integrity, "\(kind) \(id.hex) is damaged: its contents do not match its id",
                hint: "run `lifeboat check --read-data`; remove or restore the file from a copy")
        }
        return bytes
    }

    /// Writes a content-addressed file named by its SHA-256.
    func writeContentAddressed(_ bytes: [UInt8], directory: String, crashPrefix: String) throws -> ObjectID {
        let id = ObjectID.hash(bytes)
        try writeFileAtomically(directory: directory, name: id.hex, bytes: bytes, crashPrefix: crashPrefix)
        return id
    }
}
