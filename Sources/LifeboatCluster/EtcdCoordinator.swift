// The `etcd` coordinator: leases, epochs and history in etcd v3.
//
// Keys, under PREFIX/workloads/W/:
//   epoch    {"epoch", "holder", "handed_over_by", "write"}  who took which epoch (never expires)
//   history  {"history": [EpochStart], "write"}              where each epoch's records begin
//   lease    {"holder", "epoch"}, attached to the holder's etcd lease: present while it lives
//
// `Lease` as `Coordinator` sees it: holder, epoch, handedOverBy from `epoch`; history from
// `history`; expired unless `lease` exists for that holder and epoch with a live etcd lease
// (`expiresAt` is then now + its remaining TTL); `version` is the highest mod revision of the
// three keys. A compare-and-swap on `version` V is one transaction that compares every key's
// mod revision with V (so a write anyone made after the read fails it, and two hosts can never
// both take epoch N+1); a take of a lease that was not handed over also requires `lease` to be
// absent (etcd itself says the holder's lease is gone).
//
// What a swap does follows from how `new` differs from the stored lease, so `LeaseKeeper`
// works unchanged with either backend:
//   another epoch               take: grant an etcd lease (TTL from `new.expiresAt`, rounded up,
//                               at least 2 s), write all three keys, `lease` attached to it
//   holder/history/handover     write the changed keys, then keep the etcd lease alive
//   only `expiresAt`, in future renew: one keep-alive, no key written (the version stays)
//   only `expiresAt`, now/past  release: delete `lease`, revoke the etcd lease
// The holder's fencing deadline stays LeaseKeeper's: from the start of its last successful
// renewal, which a keep-alive answered with a TTL; etcd can only expire the lease later.
// Every record a swap writes carries a random write id, so a swap whose transaction was
// retried on another endpoint after a timeout recognises its own earlier commit.
// Peers follow `leaseChanges`: a watch on the workload's keys from the revision read, so a
// lost lease (the DELETE of `lease`) is seen as soon as etcd expires or revokes it.

import Foundation
import LifeboatCore
import Synchronization

/// The `etcd` coordinator (see the note above). Its calls block the calling thread until etcd
/// answers: call them from threads of your own (the agent's control loops and peer server),
/// never from async code or an event loop.
public final class EtcdCoordinator: Coordinator {
    public let client: EtcdClient
    /// The key prefix, no trailing slash (e.g. `/lifeboat`; empty for `/`).
    public let prefix: String
    /// Per workload, when its lease was last known to run out (wall seconds): what an expired
    /// lease reports as `expiresAt`.
    private let knownExpiry = Mutex<[String: Double]>([:])

    public init(client: EtcdClient, prefix: String) throws {
        guard prefix.hasPrefix("/") else {
            throw LifeboatError(
                .badInput, "etcd prefix '\(prefix)' does not start with '/'",
                hint: "write coordinator.prefix as a key path such as /lifeboat")
        }
        var trimmed = prefix
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.client = client
        self.prefix = trimmed
    }

    /// A coordinator with a client of its own; `close()` shuts it down.
    public convenience init(
        endpoints: [String], prefix: String, dialTimeout: Double = 2, requestTimeout: Double = 5
    ) throws {
        let client = try EtcdClient(
            .init(endpoints: endpoints, dialTimeout: dialTimeout, requestTimeout: requestTimeout))
        do {
            try self.init(client: client, prefix: prefix)
        } catch {
            EtcdCoordinator.shutDown(client)
            throw error
        }
    }

    /// Shuts the client down (blocking); running `leaseChanges` streams end.
    public func close() { EtcdCoordinator.shutDown(client) }

    private static func shutDown(_ client: EtcdClient) {
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            try? await client.shutdown()
            done.signal()
        }
        done.wait()
    }

    /// The keys of one workload.
    struct Keys {
        let directory: String
        var epoch: String { directory + "epoch" }
        var history: String { directory + "history" }
        var lease: String { directory + "lease" }
    }

    func keys(_ workload: String) -> Keys { Keys(directory: "\(prefix)/workloads/\(workload)/") }

    // MARK: - Coordinator

    public func lease(_ workload: String) throws -> Lease? {
        try bridged { try await self.read(workload).lease }
    }

    public func compareAndSwap(_ workload: String, expectedVersion: UInt64?, _ new: Lease) throws -> Lease? {
        try bridged { try await self.swap(workload, expectedVersion: expectedVersion, new) }
    }

    public func leaseChanges(_ workload: String) -> AsyncStream<Lease?> {
        let (stream, continuation) = AsyncStream<Lease?>.makeStream(bufferingPolicy: .bufferingNewest(8))
        let task = Task(executorPreference: client.executor) {
            await self.follow(workload, continuation)
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    /// Runs `body` through the client's bridge; etcd errors become `LifeboatError`s.
    private func bridged<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        do {
            return try client.blocking(body)
        } catch let error as EtcdError {
            throw LifeboatError(error)
        }
    }

    // MARK: - reading

    /// The records as stored.
    struct EpochRecord: Codable, Equatable {
        var epoch: UInt64
        var holder: String
        var handedOverBy: String?
        var write: String

        enum CodingKeys: String, CodingKey {
            case epoch, holder, write
            case handedOverBy = "handed_over_by"
        }
    }

    struct HistoryRecord: Codable, Equatable {
        var history: [EpochStart]
        var write: String
    }

    struct HolderRecord: Codable, Equatable {
        var holder: String
        var epoch: UInt64
    }

    /// One read of a workload's keys.
    struct Stored {
        var revision: Int64
        var lease: Lease?
        var epoch: EpochRecord?
        var history: HistoryRecord?
        /// The `lease` key, when it belongs to the epoch's holder.
        var holderKey: EtcdKeyValue?
        /// The etcd lease `lease` is attached to, when it lives.
        var liveLease: Int64?
    }

    func read(_ workload: String) async throws -> Stored {
        let keys = keys(workload)
        let range = try await client.range(.prefix(keys.directory))
        return try await stored(workload, range)
    }

    /// The lease that `range` (of the workload's directory) shows.
    func stored(_ workload: String, _ range: EtcdRangeResult) async throws -> Stored {
        let keys = keys(workload)
        var stored = Stored(revision: range.revision)
        var holder: HolderRecord?
        var version: Int64 = 0
        for kv in range.kvs {
            version = max(version, kv.modRevision)
            switch kv.key {
            case keys.epoch: stored.epoch = try decode(EpochRecord.self, kv)
            case keys.history: stored.history = try decode(HistoryRecord.self, kv)
            case keys.lease:
                holder = try decode(HolderRecord.self, kv)
                stored.holderKey = kv
            default: continue
            }
        }
        guard let epoch = stored.epoch else { return stored }
        let now = Date().timeIntervalSince1970
        var expiresAt: Double?
        if let holder, holder.holder == epoch.holder, holder.epoch == epoch.epoch, let kv = stored.holderKey,
            kv.lease != 0
        {
            do {
                let ttl = try await client.timeToLive(kv.lease).ttl
                stored.liveLease = kv.lease
                expiresAt = now + Double(max(ttl, 1))
            } catch let error as EtcdError where error.isLeaseGone {
                expiresAt = nil
            }
        } else {
            stored.holderKey = nil
        }
        let expiry = knownExpiry.withLock { known -> Double in
            if let expiresAt { known[workload] = expiresAt }
            return min(known[workload, default: now], now)
        }
        stored.lease = Lease(
            workload: workload, holder: epoch.holder, epoch: epoch.epoch, expiresAt: expiresAt ?? expiry,
            version: UInt64(version), history: stored.history?.history ?? [], handedOverBy: epoch.handedOverBy)
        return stored
    }

    func decode<T: Decodable>(_ type: T.Type, _ kv: EtcdKeyValue) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: kv.value)
        } catch {
            throw LifeboatError(
                .integrity, "etcd key \(kv.key) is damaged: \(error)",
                hint: "stop every agent of the workload, then remove the key (etcdctl del \(kv.key))")
        }
    }

    // MARK: - swapping

    func swap(_ workload: String, expectedVersion: UInt64?, _ new: Lease) async throws -> Lease? {
        let stored = try await read(workload)
        guard let current = stored.lease else {
            if expectedVersion != nil { return nil }
            return try await take(workload, stored, new, handedOver: false)
        }
        guard current.version == expectedVersion else { return nil }
        if new.epoch != current.epoch {
            let handedOver = current.handedOverBy != nil && new.holder == current.holder
            return try await take(workload, stored, new, handedOver: handedOver)
        }
        if new.holder != current.holder || new.handedOverBy != current.handedOverBy || new.history != current.history {
            return try await rewrite(workload, stored, current, new)
        }
        if new.expiresAt <= Date().timeIntervalSince1970 {
            return try await release(workload, stored, current)
        }
        return try await renew(stored, current)
    }

    /// The compares of a swap on the version read: no key changed since (none existed).
    func unchanged(_ workload: String, since stored: Stored) -> [EtcdCompare] {
        let keys = keys(workload)
        let all = [keys.epoch, keys.history, keys.lease]
        guard let version = stored.lease?.version else {
            return all.map { EtcdCompare($0, .createRevision(0)) }
        }
        return all.map { EtcdCompare($0, .modRevision(Int64(version) + 1), .less) }
    }

    static func writeID() -> String { String(UInt64.random(in: .min ... .max), radix: 16) }

    func encoded<T: Encodable>(_ value: T) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return try encoder.encode(value)
    }

    /// Takes `new.epoch`: a new etcd lease and all three keys in one transaction.
    func take(_ workload: String, _ stored: Stored, _ new: Lease, handedOver: Bool) async throws -> Lease? {
        let keys = keys(workload)
        let now = Date().timeIntervalSince1970
        let grant = try await client.grant(ttl: max(2, Int64((new.expiresAt - now).rounded(.up))))
        let write = EtcdCoordinator.writeID()
        var compares = unchanged(workload, since: stored)
        if !handedOver { compares.append(EtcdCompare(keys.lease, .createRevision(0))) }
        let epoch = EpochRecord(epoch: new.epoch, holder: new.holder, handedOverBy: nil, write: write)
        let result = try await client.txn(
            compare: compares,
            success: [
                .put(key: keys.epoch, value: try encoded(epoch)),
                .put(key: keys.history, value: try encoded(HistoryRecord(history: new.history, write: write))),
                .put(
                    key: keys.lease, value: try encoded(HolderRecord(holder: new.holder, epoch: new.epoch)),
                    lease: grant.id),
            ],
            failure: [.range(.prefix(keys.directory))])
        let applied = try await ownWrite(workload, result, write) != nil
        if result.succeeded || applied { return try await read(workload).lease }
        try? await client.revoke(grant.id)
        return nil
    }

    /// A failed transaction's read, when it shows a write of `write` (the same swap's earlier
    /// try, applied although its answer was lost).
    func ownWrite(_ workload: String, _ result: EtcdTxnResult, _ write: String) async throws -> Stored? {
        guard case .range(let range) = result.results.first else { return nil }
        let stored = try await stored(workload, range)
        return stored.epoch?.write == write || stored.history?.write == write ? stored : nil
    }

    /// Writes a new holder (a handover) or history as the live holder, then keeps the lease alive.
    func rewrite(_ workload: String, _ stored: Stored, _ current: Lease, _ new: Lease) async throws -> Lease? {
        guard let live = stored.liveLease, let epoch = stored.epoch else { return nil }
        let keys = keys(workload)
        let write = EtcdCoordinator.writeID()
        var operations: [EtcdOperation] = []
        if new.holder != current.holder || new.handedOverBy != current.handedOverBy {
            let record = EpochRecord(
                epoch: epoch.epoch, holder: new.holder, handedOverBy: new.handedOverBy, write: write)
            operations.append(.put(key: keys.epoch, value: try encoded(record)))
            operations.append(
                .put(
                    key: keys.lease, value: try encoded(HolderRecord(holder: new.holder, epoch: epoch.epoch)),
                    lease: live))
        }
        if new.history != current.history {
            operations.append(
                .put(key: keys.history, value: try encoded(HistoryRecord(history: new.history, write: write))))
        }
        let result = try await client.txn(
            compare: unchanged(workload, since: stored) + [EtcdCompare(keys.lease, .lease(live))],
            success: operations, failure: [.range(.prefix(keys.directory))])
        let applied = try await ownWrite(workload, result, write) != nil
        guard result.succeeded || applied else { return nil }
        if new.expiresAt > Date().timeIntervalSince1970 {
            // A lease gone meanwhile shows as expired in the read below.
            _ = try? await client.keepAlive(live)
        }
        return try await read(workload).lease
    }

    /// Gives the lease up: deletes `lease` while it is still this holder's, then revokes it.
    func release(_ workload: String, _ stored: Stored, _ current: Lease) async throws -> Lease? {
        guard let live = stored.liveLease else { return current }
        let keys = keys(workload)
        let result = try await client.txn(
            compare: unchanged(workload, since: stored) + [EtcdCompare(keys.lease, .lease(live))],
            success: [.delete(.key(keys.lease))])
        guard result.succeeded else { return nil }
        do {
            try await client.revoke(live)
        } catch let error as EtcdError where error.isLeaseGone {}
        knownExpiry.withLock { $0[workload] = Date().timeIntervalSince1970 }
        return try await read(workload).lease
    }

    /// Renews the held lease with one keep-alive; nil when it is gone.
    func renew(_ stored: Stored, _ current: Lease) async throws -> Lease? {
        guard let live = stored.liveLease else { return nil }
        let ttl: Int64
        do {
            ttl = try await client.keepAlive(live)
        } catch let error as EtcdError where error.isLeaseGone {
            return nil
        }
        var renewed = current
        renewed.expiresAt = Date().timeIntervalSince1970 + Double(ttl)
        knownExpiry.withLock { $0[current.workload] = renewed.expiresAt }
        return renewed
    }

    // MARK: - following

    /// Yields the lease, then follows a watch of the workload's keys and yields it again after
    /// every change that alters it (its holder, epoch, version, history, handover or liveness).
    func follow(_ workload: String, _ continuation: AsyncStream<Lease?>.Continuation) async {
        var last: (lease: Lease?, alive: Bool)?
        func publish(_ stored: Stored) {
            var comparable = stored.lease
            comparable?.expiresAt = 0
            let alive = stored.liveLease != nil
            if last == nil || last?.lease != comparable || last?.alive != alive {
                continuation.yield(stored.lease)
                last = (comparable, alive)
            }
        }
        while !Task.isCancelled {
            guard let stored = await readRetrying(workload) else { break }
            publish(stored)
            do {
                for try await update in client.watch(.prefix(keys(workload).directory), from: stored.revision + 1) {
                    guard case .events = update else { break }  // compacted: read again, watch again
                    guard let stored = await readRetrying(workload) else { break }
                    publish(stored)
                }
            } catch {
                break  // the client was shut down
            }
        }
        continuation.finish()
    }

    /// A read, retried every 200 ms while etcd does not answer; nil when cancelled.
    func readRetrying(_ workload: String) async -> Stored? {
        while !Task.isCancelled {
            if let stored = try? await read(workload) { return stored }
            try? await Task.sleep(nanoseconds: 200_000_000)
        }
        return nil
    }
}
