import AsyncHTTPClient
import Foundation
import LifeboatSystem
import NIOCore
import NIOHTTP1
import Synchronization

/// One change a watch saw.
public struct EtcdEvent: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case put
        case delete
    }
    public var kind: Kind
    /// The key as written (a delete carries the key and its `modRevision`, the delete's).
    public var kv: EtcdKeyValue
    /// The key before the change, when the watch asked for it.
    public var previous: EtcdKeyValue?
}

/// What a watch yields.
public enum EtcdWatchUpdate: Sendable, Equatable {
    /// Changes, in revision order.
    case events([EtcdEvent])
    /// The revision the watch had to start from was compacted away (etcd kept changes from
    /// `revision` on). The watch ends: re-read the keys, then watch again from the read's
    /// revision + 1.
    case compacted(revision: Int64)
}

extension EtcdClient {
    /// Every change of `keys` from `revision` on (0: from now), until the consumer stops or the
    /// client is shut down (the stream then throws).
    ///
    /// A dropped connection (etcd restarted, its member killed, a stream silent past
    /// `watchProbeInterval` whose endpoint then fails a status probe or knows no leader)
    /// reconnects from the revision after the last one seen, to the same endpoint or the
    /// next, so no change is lost or seen twice.
    public func watch(
        _ keys: EtcdKeys, from revision: Int64 = 0, previousValues: Bool = false
    ) -> AsyncThrowingStream<EtcdWatchUpdate, any Error> {
        let (stream, continuation) = AsyncThrowingStream<EtcdWatchUpdate, any Error>.makeStream()
        let task = Task(executorPreference: executor) {
            await self.runWatch(keys, from: revision, previousValues: previousValues, continuation)
        }
        continuation.onTermination = { _ in task.cancel() }
        return stream
    }

    /// How one connection of a watch ended.
    enum WatchEnd: Sendable {
        case compacted(Int64)
        /// The client was shut down.
        case shutDown
        /// The connection ended or failed; `established`: the watch had been created first.
        case dropped(String, established: Bool)
    }

    /// Where a watch is, shared between its reader and its probe.
    final class WatchCursor: Sendable {
        /// The first revision not yet delivered.
        let next: Mutex<Int64>
        /// Monotonic seconds of the last message.
        let lastMessage = Mutex<Double>(0)
        let established = Atomic<Bool>(false)

        init(next: Int64) { self.next = Mutex(next) }
    }

    private func runWatch(
        _ keys: EtcdKeys, from revision: Int64, previousValues: Bool,
        _ continuation: AsyncThrowingStream<EtcdWatchUpdate, any Error>.Continuation
    ) async {
        let cursor = WatchCursor(next: revision)
        var index = preferred.load(ordering: .relaxed)
        var failures = 0
        while !Task.isCancelled {
            let endpoint = endpoints[index % endpoints.count]
            cursor.established.store(false, ordering: .relaxed)
            let end = await follow(endpoint, keys, previousValues: previousValues, cursor, continuation)
            if Task.isCancelled { break }
            switch end {
            case .compacted(let revision):
                continuation.yield(.compacted(revision: revision))
                continuation.finish()
                return
            case .shutDown:
                continuation.finish(throwing: EtcdError(.unreachable, "the etcd client was shut down; the watch ended"))
                return
            case .dropped(_, let established):
                if established {
                    failures = 0
                } else {
                    failures += 1
                    index += 1
                }
            }
            // After a whole round of endpoints failed, wait a little (up to a second) before the next.
            if failures > 0 && failures % endpoints.count == 0 {
                let rounds = min(failures / endpoints.count, 4)
                try? await Task.sleep(nanoseconds: UInt64(0.1 * Double(1 << rounds) * 1e9))
            }
        }
        continuation.finish()
    }

    /// One connection of a watch: creates it from the cursor's revision and reads it until it
    /// ends, while a probe checks the endpoint whenever the stream stays silent.
    private func follow(
        _ endpoint: String, _ keys: EtcdKeys, previousValues: Bool, _ cursor: WatchCursor,
        _ continuation: AsyncThrowingStream<EtcdWatchUpdate, any Error>.Continuation
    ) async -> WatchEnd {
        var create = keys.fields
        create["start_revision"] = .int(cursor.next.withLock { $0 })
        create["progress_notify"] = .bool(true)
        if previousValues { create["prev_kv"] = .bool(true) }
        var request = HTTPClientRequest(url: endpoint + "/v3/watch")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        // grpc-gateway passes this on as gRPC metadata: etcd then cancels the watch when its
        // member loses the leader, instead of leaving it silent.
        request.headers.add(name: "Grpc-Metadata-hasleader", value: "true")
        do {
            request.body = .bytes(
                ByteBuffer(bytes: try JSONEncoder().encode(EtcdBody(["create_request": .object(create)]))))
            let response = try await streams.execute(
                request, timeout: EtcdClient.amount(configuration.requestTimeout))
            guard response.status == .ok else {
                return .dropped("answered \(response.status.code)", established: false)
            }
            cursor.lastMessage.withLock { $0 = monotonicSeconds() }
            return try await withThrowingTaskGroup(of: WatchEnd.self) { group in
                group.addTask { try await self.read(response.body, endpoint: endpoint, cursor, continuation) }
                group.addTask { try await self.probe(endpoint, cursor) }
                let end = try await group.next()!
                group.cancelAll()
                return end
            }
        } catch {
            if let error = error as? HTTPClientError, error == .alreadyShutdown { return .shutDown }
            return .dropped(describe(error), established: cursor.established.load(ordering: .relaxed))
        }
    }

    /// Reads newline-delimited messages and yields their events.
    private func read(
        _ body: HTTPClientResponse.Body, endpoint: String, _ cursor: WatchCursor,
        _ continuation: AsyncThrowingStream<EtcdWatchUpdate, any Error>.Continuation
    ) async throws -> WatchEnd {
        var pending: [UInt8] = []
        for try await chunk in body {
            pending.append(contentsOf: chunk.readableBytesView)
            while let newline = pending.firstIndex(of: 0x0a) {
                let line = Data(pending[..<newline])
                pending.removeSubrange(...newline)
                guard !line.isEmpty else { continue }
                cursor.lastMessage.withLock { $0 = monotonicSeconds() }
                let message = try decode(
                    EtcdStreamed<EtcdWatchResponse>.self, line, endpoint: endpoint, path: "/v3/watch")
                if let error = message.error {
                    return .dropped("etcd ended the watch: \(error.message)", established: true)
                }
                guard let result = message.result else { continue }
                if result.canceled {
                    if result.compactRevision > 0 { return .compacted(result.compactRevision) }
                    return .dropped("etcd canceled the watch: \(result.cancelReason)", established: true)
                }
                if result.created {
                    cursor.established.store(true, ordering: .relaxed)
                    continue
                }
                if result.events.isEmpty {
                    // A progress notification: every change up to its revision was delivered.
                    cursor.next.withLock { $0 = max($0, result.header.revision + 1) }
                    continue
                }
                let last = result.events.map(\.kv.modRevision).max() ?? 0
                cursor.next.withLock { $0 = max($0, last + 1) }
                continuation.yield(.events(result.events))
            }
        }
        return .dropped("the stream ended", established: true)
    }

    /// Returns when the endpoint fails a status probe (or knows no leader) after the stream
    /// was silent for `watchProbeInterval`.
    private func probe(_ endpoint: String, _ cursor: WatchCursor) async throws -> WatchEnd {
        let interval = configuration.watchProbeInterval
        while true {
            try await Task.sleep(nanoseconds: UInt64(interval * 1e9))
            guard monotonicSeconds() - cursor.lastMessage.withLock({ $0 }) >= interval else { continue }
            do {
                let status = try await status(of: endpoint)
                if status.leader == 0 { return .dropped("\(endpoint) knows no leader", established: true) }
                cursor.lastMessage.withLock { $0 = monotonicSeconds() }
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                return .dropped("\(error)", established: true)
            }
        }
    }
}

/// One message of a watch stream (inside `result`).
struct EtcdWatchResponse: Decodable {
    var header: EtcdHeader
    var created: Bool
    var canceled: Bool
    var compactRevision: Int64
    var cancelReason: String
    var events: [EtcdEvent]

    enum CodingKeys: String, CodingKey {
        case header, created, canceled, events
        case compactRevision = "compact_revision"
        case cancelReason = "cancel_reason"
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        header = try container.value(.header, default: EtcdHeader())
        created = try container.value(.created, default: false)
        canceled = try container.value(.canceled, default: false)
        compactRevision = try container.int64(.compactRevision)
        cancelReason = try container.value(.cancelReason, default: "")
        events = try container.value(.events, default: [])
    }
}

extension EtcdEvent: Decodable {
    enum CodingKeys: String, CodingKey {
        case type, kv
        case previous = "prev_kv"
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        // PUT is etcd's zero value, so only "DELETE" is ever sent.
        kind = try container.value(.type, default: "PUT") == "DELETE" ? .delete : .put
        kv = try container.decode(EtcdKeyValue.self, forKey: .kv)
        previous = try container.decodeIfPresent(EtcdKeyValue.self, forKey: .previous)
    }
}
