import Foundation
import Glibc
public import LifeboatCore
import LifeboatSystem
import Synchronization

/// What a lock file says: who holds it, since when, and how long its lease lasts.
public struct LockInfo: Codable, Sendable {
    public var host: String
    public var pid: Int32
    public var operation: String
    public var exclusive: Bool
    public var time: Timestamp
    public var epoch: UInt64
    public var leaseSeconds: Double

    enum CodingKeys: String, CodingKey {
        case host, pid, operation, exclusive, time, epoch
        case leaseSeconds = "lease_seconds"
    }
}

/// A lock file as seen by another process: its info and when it was last refreshed.
public struct ObservedLock: Sendable {
    public var id: ObjectID
    public var info: LockInfo
    public var refreshed: Timestamp

    /// A lock whose holder has not refreshed it within its lease, or whose holder process on
    /// this host no longer exists.
    public func isStale(now: Timestamp = .now()) -> Bool {
        if Double(now.seconds - refreshed.seconds) > info.leaseSeconds { return true }
        return info.host == currentHostName() && kill(info.pid, 0) != 0 && errno == ESRCH
    }

    public var summary: String {
        "\(info.exclusive ? "exclusive" : "shared") lock of `\(info.operation)` by pid \(info.pid) on \(info.host), since \(info.time.short) UTC"
    }
}

/// A held repository lock, refreshed in the background while the operation runs.
///
/// Shared locks (backup) coexist; an exclusive lock (prune, forget) excludes every other
/// live lock. The holder must call `ensureHeld()` before each commit: if the process was
/// paused past its lease, others may have treated the lock as stale, so the holder aborts.
public final class RepositoryLock: Sendable {
    private let repository: Repository
    public let id: ObjectID
    public let info: LockInfo
    private let state: Mutex<(lastRefresh: Double, lost: Bool, released: Bool)>
    private let stopRefresher = Atomic<Bool>(false)

    /// The lease from `LIFEBOAT_LOCK_LEASE_SECONDS`, default 120 s.
    public static var defaultLease: Double {
        if let raw = getenv("LIFEBOAT_LOCK_LEASE_SECONDS"), let value = Double(String(cString: raw)), value > 0 {
            return value
        }
        return 120
    }

    /// Takes a lock, waiting up to `wait` seconds for conflicting locks to go away.
    public static func acquire(
        _ repository: Repository, operation: String, exclusive: Bool, wait: Double = 0, epoch: UInt64 = 0,
        warn: @escaping @Sendable (String) -> Void = { _ in }
    ) throws -> RepositoryLock {
        let deadline = monotonicSeconds() + wait
        var reportedStale = Set<ObjectID>()
        while true {
            let lock = try RepositoryLock(
                repository: repository, operation: operation, exclusive: exclusive, epoch: epoch)
            let others = try repository.listLocks().filter { $0.id != lock.id }
            for stale in others where stale.isStale() && !reportedStale.contains(stale.id) {
                reportedStale.insert(stale.id)
                warn(
                    "ignoring stale \(stale.summary), not refreshed for \(Int(Timestamp.now().seconds - stale.refreshed.seconds)) s (remove with `lifeboat unlock --remove-stale`)"
                )
            }
            let conflicts = others.filter { !$0.isStale() && (exclusive || $0.info.exclusive) }
            if conflicts.isEmpty {
                lock.startRefresher()
                return lock
            }
            try? lock.release()
            if monotonicSeconds() >= deadline {
                throw LifeboatError(
                    .locked, "repository \(repository.path) is locked: \(conflicts[0].summary)",
                    hint:
                        "wait for it to finish (or pass --lock-wait SECONDS); if it died, its lock goes stale after \(Int(conflicts[0].info.leaseSeconds)) s"
                )
            }
            usleep(UInt32(200_000 + Int.random(in: 0..<300_000)))
        }
    }

    private init(repository: Repository, operation: String, exclusive: Bool, epoch: UInt64) throws {
        self.repository = repository
        id = ObjectID.random()
        let host = currentHostName()
        info = LockInfo(
            host: host, pid: getpid(), operation: operation, exclusive: exclusive, time: .now(), epoch: epoch,
            leaseSeconds: RepositoryLock.defaultLease)
        state = Mutex((monotonicSeconds(), false, false))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try repository.writeFileAtomically(
            directory: repository.paths.locksDir, name: id.hex, bytes: Array(try encoder.encode(info)), crashPrefix: nil
        )
    }

    private func startRefresher() {
        let interval = max(0.05, info.leaseSeconds / 5)
        let thread = Thread { [self] in
            while !stopRefresher.load(ordering: .relaxed) {
                Thread.sleep(forTimeInterval: interval)
                refresh()
            }
        }
        thread.start()
    }

    /// Touches the lock file — unless the lease already lapsed, in which case the lock is lost for good.
    private func refresh() {
        state.withLock { state in
            guard !state.lost, !state.released else { return }
            let now = monotonicSeconds()
            if now - state.lastRefresh > info.leaseSeconds * 0.8 {
                state.lost = true
                return
            }
            let path = repository.paths.lockPath(id)
            if utimensat(AT_FDCWD, path, nil, 0) == 0 {
                state.lastRefresh = now
            } else {
                state.lost = true
            }
        }
    }

    /// Throws if the lease may have lapsed, so the caller aborts instead of committing.
    public func ensureHeld() throws {
        let ok = state.withLock { state -> Bool in
            if state.lost { return false }
            if monotonicSeconds() - state.lastRefresh > info.leaseSeconds * 0.8 {
                state.lost = true
                return false
            }
            return Posix.exists(repository.paths.lockPath(id))
        }
        guard ok else {
            throw LifeboatError(
                .operationFailed,
                "the \(info.operation) lost its repository lock: it was not refreshed within its \(Int(info.leaseSeconds)) s lease (process paused or volume unreachable), so it stops without committing",
                hint: "run it again; `lifeboat prune` removes the data it left behind")
        }
    }

    /// Removes the lock file and stops refreshing.
    public func release() throws {
        stopRefresher.store(true, ordering: .relaxed)
        let alreadyReleased = state.withLock { state -> Bool in
            defer { state.released = true }
            return state.released
        }
        guard !alreadyReleased else { return }
        let path = repository.paths.lockPath(id)
        if unlink(path) != 0 && errno != ENOENT { throw ioError(errno, "removing lock", path) }
    }
}

extension Repository {
    /// Every lock file with its last refresh time. Unreadable lock files throw.
    public func listLocks() throws -> [ObservedLock] {
        try listObjects(in: paths.locksDir).compactMap { id in
            let path = paths.lockPath(id)
            var st = stat()
            guard stat(path, &st) == 0 else {
                if errno == ENOENT { return nil }  // released between listing and stat: gone for real
                throw ioError(errno, "inspecting lock", path)
            }
            let bytes: [UInt8]
            do {
                bytes = try Posix.readFile(path)
            } catch {
                if !Posix.exists(path) { return nil }
                throw error
            }
            guard let info = try? JSONDecoder().decode(LockInfo.self, from: Data(bytes)) else {
                throw LifeboatError(
                    .integrity, "lock file \(path) is damaged", hint: "remove it by hand if no operation is running")
            }
            return ObservedLock(
                id: id, info: info,
                refreshed: Timestamp(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: Int32(st.st_mtim.tv_nsec)))
        }
    }

    /// Removes a lock file (for `unlock --remove-stale`).
    public func removeLock(_ id: ObjectID) throws {
        try removeFile(directory: paths.locksDir, name: id.hex)
    }
}

/// This machine's host name.
public func currentHostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    gethostname(&buffer, 255)
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
