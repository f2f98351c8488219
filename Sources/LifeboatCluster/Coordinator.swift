public import Foundation
import Glibc
public import LifeboatCore
public import LifeboatSystem
import Synchronization

/// The lease on one workload: who may run it as primary, under which epoch, until when.
public struct Lease: Codable, Sendable, Equatable {
    public var workload: String
    /// The host that holds the lease (the primary).
    public var holder: String
    /// The fencing token: grows by one each time the primary changes.
    public var epoch: UInt64
    /// Wall-clock time (seconds since 1970) after which the lease is free to take.
    public var expiresAt: Double
    /// Bumped by every write; a compare-and-swap names the version it read.
    public var version: UInt64
    /// Where each epoch's records begin: what tells a returning host whether its journal
    /// still belongs to the workload's history.
    public var history: [EpochStart]
    /// Set by a switchover: the old primary handed the lease to `holder`, which takes it with
    /// the next epoch once it has caught up.
    public var handedOverBy: String?

    public init(
        workload: String, holder: String, epoch: UInt64, expiresAt: Double, version: UInt64,
        history: [EpochStart], handedOverBy: String? = nil
    ) {
        self.workload = workload
        self.holder = holder
        self.epoch = epoch
        self.expiresAt = expiresAt
        self.version = version
        self.history = history
        self.handedOverBy = handedOverBy
    }

    enum CodingKeys: String, CodingKey {
        case workload, holder, epoch, version, history
        case expiresAt = "expires_at"
        case handedOverBy = "handed_over_by"
    }

    public func isExpired(now: Double = Date().timeIntervalSince1970) -> Bool { now >= expiresAt }
}

/// The first seq written under an epoch.
public struct EpochStart: Codable, Sendable, Equatable {
    public var epoch: UInt64
    public var firstSeq: UInt64

    public init(epoch: UInt64, firstSeq: UInt64) {
        self.epoch = epoch
        self.firstSeq = firstSeq
    }

    enum CodingKeys: String, CodingKey {
        case epoch
        case firstSeq = "first_seq"
    }
}

extension [EpochStart] {
    /// True when a journal that ends at `last` holds only records of this history: no record
    /// of an epoch at or after a position where a later epoch already began.
    public func contains(journalEnd last: Position) -> Bool {
        if last.epoch == 0 { return true }  // an empty journal that starts after a snapshot
        guard let next = first(where: { $0.epoch > last.epoch }) else { return true }
        return last.seq < next.firstSeq
    }
}

/// Where leases and epochs live. Every change is a compare-and-swap on the version read, so
/// two hosts can never both take the same epoch.
public protocol Coordinator: Sendable {
    /// The workload's lease, or nil when no host ever held it.
    func lease(_ workload: String) throws -> Lease?
    /// Writes `new` (its version bumped) if the stored lease still has `expectedVersion`
    /// (nil: no lease stored yet). Returns the stored lease, or nil when the swap lost.
    func compareAndSwap(_ workload: String, expectedVersion: UInt64?, _ new: Lease) throws -> Lease?
    /// The workload's lease now, then again each time it changes or runs out, until the consumer
    /// stops iterating. Read errors are retried, not yielded. The default polls `lease(_:)`;
    /// `EtcdCoordinator` follows a watch instead.
    func leaseChanges(_ workload: String) -> AsyncStream<Lease?>
    /// Releases what the coordinator holds open (connections, threads); nothing to do for
    /// the local backend.
    func close()
}

extension Coordinator {
    public func close() {}

    public func leaseChanges(_ workload: String) -> AsyncStream<Lease?> {
        pollLeaseChanges(workload, every: 0.25)
    }

    /// `leaseChanges` by polling `lease(_:)` every `interval` seconds on a thread of its own
    /// (the reads block): yields when the lease differs from the last one yielded or has run
    /// out since.
    public func pollLeaseChanges(_ workload: String, every interval: Double) -> AsyncStream<Lease?> {
        let (stream, continuation) = AsyncStream<Lease?>.makeStream(bufferingPolicy: .bufferingNewest(8))
        let stopped = StopFlag()
        continuation.onTermination = { _ in stopped.stop() }
        let thread = Thread {
            var last: (lease: Lease?, expired: Bool)?
            while !stopped.isStopped {
                if let lease = try? Optional.some(self.lease(workload)) {
                    let expired = lease?.isExpired() ?? false
                    if last == nil || last?.lease != lease || last?.expired != expired {
                        continuation.yield(lease)
                        last = (lease, expired)
                    }
                }
                Thread.sleep(forTimeInterval: interval)
            }
        }
        thread.name = "lease-poll-\(workload)"
        thread.start()
        return stream
    }
}

/// A flag one side sets once and the other reads.
final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    func stop() { flag.store(true, ordering: .sequentiallyConsistent) }
    var isStopped: Bool { flag.load(ordering: .sequentiallyConsistent) }
}

/// The `local` coordinator: one JSON file per workload in a directory of one machine,
/// replaced atomically (`writeFileAtomically`: write, fsync, rename, directory fsync) under an
/// exclusive `flock` on a lock file. A swap whose write, fsync, rename or directory fsync
/// failed throws: the new lease is not taken as stored.
public struct LocalCoordinator: Coordinator {
    public let directory: String
    /// The seam the lease files are written through (tests inject failures).
    let io: FileIO

    public init(directory: String, calls: any SystemCalls = RealSystemCalls()) throws {
        self.directory = directory
        self.io = FileIO(calls)
        if mkdir(directory, 0o755) != 0 && errno != EEXIST {
            throw LifeboatError(
                .badInput,
                "cannot create coordinator directory \(directory): \(String(cString: strerror(errno)))",
                hint: "fix coordinator.path in the config")
        }
    }

    func path(_ workload: String) -> String { "\(directory)/\(workload).lease" }

    public func lease(_ workload: String) throws -> Lease? {
        guard let data = FileManager.default.contents(atPath: path(workload)) else {
            if access(path(workload), F_OK) != 0 && errno == ENOENT { return nil }
            throw LifeboatError(.operationFailed, "cannot read lease \(path(workload))")
        }
        do {
            return try JSONDecoder().decode(Lease.self, from: data)
        } catch {
            throw LifeboatError(
                .integrity, "lease file \(path(workload)) is damaged: \(error)",
                hint: "stop every agent of the workload, then remove the file")
        }
    }

    public func compareAndSwap(_ workload: String, expectedVersion: UInt64?, _ new: Lease) throws -> Lease? {
        let lockPath = "\(directory)/\(workload).lock"
        let lockFD = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard lockFD >= 0 else {
            throw LifeboatError(.operationFailed, "cannot open \(lockPath): \(String(cString: strerror(errno)))")
        }
        defer { Glibc.close(lockFD) }
        while flock(lockFD, LOCK_EX) != 0 {
            if errno != EINTR {
                throw LifeboatError(.operationFailed, "cannot lock \(lockPath): \(String(cString: strerror(errno)))")
            }
        }
        let current = try lease(workload)
        guard current?.version == expectedVersion else { return nil }
        var stored = new
        stored.version = (current?.version ?? 0) + 1
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
        let bytes = Array(try encoder.encode(stored)) + [0x0a]
        do {
            try io.writeFileAtomically(
                directory: directory, name: "\(workload).lease", bytes: bytes, mode: 0o644, crashPrefix: nil)
        } catch {
            throw LifeboatError(
                .operationFailed, "cannot write lease \(path(workload)): \(errnoText(error.code))", underlying: error)
        }
        return stored
    }
}
