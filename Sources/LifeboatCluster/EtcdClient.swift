import AsyncHTTPClient
public import Foundation
import Glibc
import LifeboatCore
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// An async client of etcd v3's JSON gateway (`POST /v3/...`, etcd 3.4).
///
/// Endpoints: a request that cannot connect, times out or is answered 503 (etcd's
/// "unavailable") moves on to the next endpoint; the endpoint that answered is tried first
/// next time. An answer from etcd itself (a refusal, "lease not found") is final. When no
/// endpoint answers, `EtcdError.unreachable` names every endpoint and why it failed.
///
/// A retried write may have been applied by the endpoint that timed out: callers that must
/// know (a compare-and-swap) recognise their own earlier write (see `EtcdCoordinator`).
///
/// The client owns one event-loop thread (its connections and its tasks) and must be shut
/// down (`shutdown()`) before it is released.
public final class EtcdClient: Sendable {
    public struct Configuration: Sendable {
        /// Client URLs (`http://HOST:PORT`; a bare `HOST:PORT` means http).
        public var endpoints: [String]
        /// Seconds a connection attempt to one endpoint may take.
        public var dialTimeout: Double
        /// Seconds one request to one endpoint may take until its answer begins.
        public var requestTimeout: Double
        /// Seconds a watch may stay silent before its endpoint is probed (and left when the
        /// probe fails or the member knows no leader).
        public var watchProbeInterval: Double

        public init(
            endpoints: [String], dialTimeout: Double = 2, requestTimeout: Double = 5, watchProbeInterval: Double = 5
        ) {
            self.endpoints = endpoints
            self.dialTimeout = dialTimeout
            self.requestTimeout = requestTimeout
            self.watchProbeInterval = watchProbeInterval
        }
    }

    /// The endpoints, normalized (`http://HOST:PORT`, no trailing slash).
    public let endpoints: [String]
    public let configuration: Configuration
    let group: MultiThreadedEventLoopGroup
    /// Unary requests: a read timeout bounds an answer that stalls mid-body.
    let unary: HTTPClient
    /// Watches: long-lived streams with no read timeout.
    let streams: HTTPClient
    let executor: EventLoopTaskExecutor
    /// The index of the endpoint that answered last.
    let preferred = Atomic<Int>(0)

    /// Checks the endpoints and sets the client up; connects on the first request.
    public init(_ configuration: Configuration) throws {
        guard !configuration.endpoints.isEmpty else {
            throw LifeboatError(
                .badInput, "no etcd endpoint given", hint: "list etcd's client URLs in coordinator.endpoints")
        }
        endpoints = try configuration.endpoints.map(EtcdClient.normalize)
        for (name, value) in [
            ("dial_timeout", configuration.dialTimeout), ("request timeout", configuration.requestTimeout),
        ]
        where !(value > 0 && value.isFinite) {
            throw LifeboatError(.badInput, "etcd \(name) \(value) is not a positive number of seconds")
        }
        self.configuration = configuration
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        executor = EventLoopTaskExecutor(group.next())
        var settings = HTTPClient.Configuration(
            timeout: .init(connect: EtcdClient.amount(configuration.dialTimeout), read: nil))
        // The client moves to the next endpoint itself; AHC must not retry one that refuses.
        settings.connectionPool.retryConnectionEstablishment = false
        settings.httpVersion = .http1Only
        var unarySettings = settings
        unarySettings.timeout.read = EtcdClient.amount(configuration.requestTimeout)
        unary = HTTPClient(eventLoopGroup: group, configuration: unarySettings)
        settings.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 256
        streams = HTTPClient(eventLoopGroup: group, configuration: settings)
    }

    /// Closes every connection and stops the client's thread; running watches end.
    public func shutdown() async throws {
        try await unary.shutdown()
        try await streams.shutdown()
        try await group.shutdownGracefully()
    }

    /// The endpoint tried first by the next request.
    public var currentEndpoint: String { endpoints[preferred.load(ordering: .relaxed) % endpoints.count] }

    /// Runs `body` on the client's own thread and blocks the calling thread until it ends: the
    /// bridge for synchronous callers on threads of their own. Never call it on an event loop
    /// (NIO traps that) or from async code.
    public func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let promise = executor.eventLoop.makePromise(of: T.self)
        Task(executorPreference: executor) {
            do {
                promise.succeed(try await body())
            } catch {
                promise.fail(error)
            }
        }
        return try promise.futureResult.wait()
    }

    /// `endpoint` as `http://HOST:PORT` (no trailing slash); throws when it is not a client URL.
    public static func normalize(_ endpoint: String) throws -> String {
        var text = endpoint.trimmingCharacters(in: .whitespaces)
        while text.hasSuffix("/") { text.removeLast() }
        if !text.contains("://") { text = "http://" + text }
        guard let url = URL(string: text), url.scheme == "http" || url.scheme == "https", url.host != nil,
            url.port != nil, url.path.isEmpty
        else {
            throw LifeboatError(
                .badInput, "'\(endpoint)' is not an etcd client URL",
                hint: "write it as http://HOST:PORT (or https://HOST:PORT)")
        }
        return text
    }

    static func amount(_ seconds: Double) -> TimeAmount { .nanoseconds(Int64(seconds * 1e9)) }

    // MARK: - requests

    /// What one endpoint made of a request.
    enum Attempt {
        /// etcd answered 200 with this body.
        case answered(Data)
        /// etcd answered with an error of its own: final, no other endpoint is asked.
        case refused(EtcdErrorBody, status: UInt)
        /// No answer worth having (no connection, a timeout, 503): try the next endpoint.
        case unavailable(String)
    }

    /// POSTs `body` to `path`, endpoint after endpoint, and decodes the answer. `lease` names
    /// the lease a "lease not found" refusal is about.
    func call<Answer: Decodable>(_ path: String, _ body: EtcdBody, lease: Int64 = 0) async throws -> Answer {
        let payload = try JSONEncoder().encode(body)
        var failures: [String] = []
        let first = preferred.load(ordering: .relaxed)
        for step in 0..<endpoints.count {
            let index = (first + step) % endpoints.count
            let endpoint = endpoints[index]
            switch try await attempt(endpoint, path, payload) {
            case .answered(let data):
                preferred.store(index, ordering: .relaxed)
                return try decode(Answer.self, data, endpoint: endpoint, path: path)
            case .refused(let error, let status):
                preferred.store(index, ordering: .relaxed)
                throw refusal(error, status: status, endpoint: endpoint, path: path, lease: lease)
            case .unavailable(let reason):
                failures.append("\(endpoint) (\(reason))")
            }
        }
        throw EtcdError(
            .unreachable, "no etcd endpoint answered \(path): \(failures.joined(separator: ", "))",
            hint: "check that etcd runs there and that coordinator.endpoints lists its client URLs")
    }

    /// One POST to one endpoint.
    func attempt(_ endpoint: String, _ path: String, _ payload: Data) async throws -> Attempt {
        var request = HTTPClientRequest(url: endpoint + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(bytes: payload))
        do {
            let response = try await unary.execute(request, timeout: EtcdClient.amount(configuration.requestTimeout))
            let body = Data(try await response.body.collect(upTo: 64 << 20).readableBytesView)
            if response.status == .ok { return .answered(body) }
            let error = try? JSONDecoder().decode(EtcdErrorBody.self, from: body)
            if response.status == .serviceUnavailable || error?.code == 14 {
                return .unavailable("answered \(response.status.code)\(error.map { ": \($0.message)" } ?? "")")
            }
            return .refused(
                error ?? EtcdErrorBody(message: String(decoding: body.prefix(200), as: UTF8.self)),
                status: response.status.code)
        } catch {
            if Task.isCancelled { throw CancellationError() }
            return .unavailable(describe(error))
        }
    }

    /// Why a request to an endpoint got no answer, in a few words.
    func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            if error == .connectTimeout || error == .getConnectionFromPoolTimeout {
                return "no connection within the dial timeout of \(configuration.dialTimeout) s"
            }
            if error == .deadlineExceeded || error == .readTimeout {
                return "no answer within \(configuration.requestTimeout) s"
            }
            if error == .remoteConnectionClosed { return "the connection was closed" }
            if error == .alreadyShutdown { return "the client was shut down" }
        }
        if let error = error as? NIOConnectionError, let first = error.connectionErrors.first {
            return describe(first.error)
        }
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)).lowercased() }
        return "\(error)"
    }

    func decode<Answer: Decodable>(_ type: Answer.Type, _ data: Data, endpoint: String, path: String) throws -> Answer {
        do {
            return try JSONDecoder().decode(Answer.self, from: data)
        } catch {
            throw EtcdError(
                .badResponse,
                "etcd at \(endpoint) answered \(path) with something that is not etcd's JSON (\(error)): \(String(decoding: data.prefix(200), as: UTF8.self))",
                hint: "check that \(endpoint) is an etcd v3 client URL (etcd 3.4 or later)")
        }
    }

    func refusal(_ error: EtcdErrorBody, status: UInt, endpoint: String, path: String, lease: Int64) -> EtcdError {
        if error.code == 5 && error.message.contains("lease not found") {
            return EtcdError(.leaseGone(id: lease), "etcd lease \(lease) is gone (expired or revoked)")
        }
        if error.code == 11 && error.message.contains("compacted") {
            return EtcdError(
                .compacted(revision: 0), "etcd at \(endpoint) refused \(path): \(error.message)",
                hint: "read again at the current revision")
        }
        return EtcdError(
            .rejected(code: error.code), "etcd at \(endpoint) refused \(path) (HTTP \(status)): \(error.message)")
    }
}

// MARK: - operations

extension EtcdClient {
    /// Reads one key or a prefix (`limit` 0: every key; `revision` 0: the newest).
    public func range(_ keys: EtcdKeys, limit: Int64 = 0, revision: Int64 = 0) async throws -> EtcdRangeResult {
        var fields = keys.fields
        if limit > 0 { fields["limit"] = .int(limit) }
        if revision > 0 { fields["revision"] = .int(revision) }
        return try await call("/v3/kv/range", EtcdBody(fields))
    }

    /// Writes `value` at `key` (attached to `lease` unless 0). Returns the new revision.
    @discardableResult
    public func put(_ key: String, _ value: Data, lease: Int64 = 0) async throws -> Int64 {
        var fields: [String: EtcdJSON] = ["key": .bytes(Data(key.utf8)), "value": .bytes(value)]
        if lease != 0 { fields["lease"] = .int(lease) }
        let answer: EtcdWriteResponse = try await call("/v3/kv/put", EtcdBody(fields), lease: lease)
        return answer.header.revision
    }

    /// Deletes one key or a prefix. Returns how many keys were deleted.
    @discardableResult
    public func delete(_ keys: EtcdKeys) async throws -> Int64 {
        let answer: EtcdWriteResponse = try await call("/v3/kv/deleterange", EtcdBody(keys.fields))
        return answer.deleted
    }

    /// Runs `success` when every compare holds, else `failure`, as one atomic step.
    public func txn(
        compare: [EtcdCompare], success: [EtcdOperation], failure: [EtcdOperation] = []
    ) async throws -> EtcdTxnResult {
        try await call(
            "/v3/kv/txn",
            EtcdBody([
                "compare": .array(compare.map(\.json)), "success": .array(success.map(\.json)),
                "failure": .array(failure.map(\.json)),
            ]))
    }

    /// Drops the history before `revision` (a watch from an older revision is then told
    /// `.compacted`).
    public func compact(revision: Int64) async throws {
        let _: EtcdWriteResponse = try await call(
            "/v3/kv/compaction", EtcdBody(["revision": .int(revision), "physical": .bool(true)]))
    }

    /// Grants a lease of `ttl` seconds (`id` 0: etcd picks one).
    public func grant(ttl: Int64, id: Int64 = 0) async throws -> EtcdLeaseGrant {
        var fields: [String: EtcdJSON] = ["TTL": .int(ttl)]
        if id != 0 { fields["ID"] = .int(id) }
        let answer: EtcdLeaseResponse = try await call("/v3/lease/grant", EtcdBody(fields))
        return EtcdLeaseGrant(id: answer.id, ttl: answer.ttl ?? 0)
    }

    /// Renews the lease once. Returns the TTL it has again; throws `.leaseGone` when etcd no
    /// longer knows it (the answer carries no TTL).
    @discardableResult
    public func keepAlive(_ id: Int64) async throws -> Int64 {
        let answer: EtcdStreamed<EtcdLeaseResponse> = try await call(
            "/v3/lease/keepalive", EtcdBody(["ID": .int(id)]), lease: id)
        if let error = answer.error {
            throw refusal(error, status: 200, endpoint: currentEndpoint, path: "/v3/lease/keepalive", lease: id)
        }
        guard let ttl = answer.result?.ttl, ttl > 0 else {
            throw EtcdError(.leaseGone(id: id), "etcd lease \(id) is gone (expired or revoked)")
        }
        return ttl
    }

    /// Revokes the lease and deletes every key attached to it.
    public func revoke(_ id: Int64) async throws {
        let _: EtcdWriteResponse = try await call("/v3/lease/revoke", EtcdBody(["ID": .int(id)]), lease: id)
    }

    /// The lease's remaining TTL (and its keys when asked); `.leaseGone` when it is gone.
    public func timeToLive(_ id: Int64, keys: Bool = false) async throws -> EtcdLeaseStatus {
        let answer: EtcdLeaseResponse = try await call(
            "/v3/lease/timetolive", EtcdBody(["ID": .int(id), "keys": .bool(keys)]), lease: id)
        guard let ttl = answer.ttl, ttl >= 0 else {
            throw EtcdError(.leaseGone(id: id), "etcd lease \(id) is gone (expired or revoked)")
        }
        return EtcdLeaseStatus(
            id: answer.id, ttl: ttl, grantedTTL: answer.grantedTTL,
            keys: answer.keys.map { String(decoding: $0, as: UTF8.self) })
    }

    /// The cluster's members.
    public func members() async throws -> [EtcdMember] {
        let answer: EtcdMemberList = try await call("/v3/cluster/member/list", EtcdBody([:]))
        return answer.members
    }

    /// What the member at `endpoint` (one of `endpoints`, or any client URL) says of itself.
    /// No other endpoint is asked.
    public func status(of endpoint: String) async throws -> EtcdStatus {
        let endpoint = try EtcdClient.normalize(endpoint)
        let path = "/v3/maintenance/status"
        switch try await attempt(endpoint, path, Data("{}".utf8)) {
        case .answered(let data):
            let answer = try decode(EtcdStatusResponse.self, data, endpoint: endpoint, path: path)
            return EtcdStatus(
                endpoint: endpoint, version: answer.version, memberID: answer.header.memberID, leader: answer.leader,
                dbSize: answer.dbSize, raftIndex: answer.raftIndex, raftTerm: answer.raftTerm, errors: answer.errors)
        case .refused(let error, let status):
            throw refusal(error, status: status, endpoint: endpoint, path: path, lease: 0)
        case .unavailable(let reason):
            throw EtcdError(
                .unreachable, "etcd at \(endpoint) did not answer \(path): \(reason)",
                hint: "check that etcd runs there")
        }
    }
}
