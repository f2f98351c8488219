import Foundation
public import LifeboatCore
public import LifeboatJournal
public import Logging

/// What the peer server needs from the agent about each workload.
public protocol ReplicaProvider: Sendable {
    /// The workload's journal while this host is a peer of it; nil otherwise.
    func replica(for workload: String) -> ReplicaJournal?
    /// The directory to serve records from (any role), nil for an unknown workload.
    func journalDirectory(for workload: String) -> String?
    /// What this host holds of the workload and its role, for `query`.
    func describe(_ workload: String) -> (durable: Position?, epoch: UInt64, role: String)?
    /// The workload's lease as the coordinator holds it now (nil: no host ever held it);
    /// throws when the coordinator cannot be read.
    func currentLease(_ workload: String) throws -> Lease?
    /// Counts bytes received, for metrics.
    func received(_ workload: String, bytes: Int, records: Int)
    /// True when this host's backing dir of the workload holds seed data (for `query`).
    func hasSeedData(_ workload: String) -> Bool
}

extension ReplicaProvider {
    public func hasSeedData(_ workload: String) -> Bool { false }
}

/// Serves the peer protocol: a primary's stream, a recovering host's fetch, a query.
public final class PeerServer: Sendable {
    let listener: PeerListener
    let provider: any ReplicaProvider
    let logger: Logger

    public init(address: String, provider: any ReplicaProvider, logger: Logger) throws {
        self.provider = provider
        self.logger = logger
        listener = try PeerListener(address: address) { connection in
            PeerServer.serve(connection, provider: provider, logger: logger)
        }
    }

    public func close() { listener.close() }

    static func serve(_ connection: PeerConnection, provider: any ReplicaProvider, logger: Logger) {
        defer { connection.close() }
        do {
            guard let first = try connection.receive(timeout: 10) else { return }
            switch first {
            case .hello(let hello):
                try receiveStream(hello, connection, provider: provider, logger: logger)
            case .fetch(let workload, let from):
                try serveFetch(workload: workload, from: from, connection, provider: provider)
            case .query(let workload):
                if let info = provider.describe(workload) {
                    try connection.send(
                        .position(
                            durable: info.durable, epoch: info.epoch, role: info.role,
                            seeded: provider.hasSeedData(workload)))
                } else {
                    try connection.send(.refused("no workload named \(workload) on this agent"))
                }
            default:
                try connection.send(.refused("unexpected first message"))
            }
        } catch {
            try? connection.send(.refused("\(error)"))
        }
    }

    /// Why a stream announced by `hello` is refused, or nil when its sender holds the
    /// workload's lease at exactly the hello's epoch (read from the coordinator now): a peer
    /// follows only the lease's holder, never a host that merely claims a high epoch.
    static func refusal(of hello: PeerMessage.Hello, provider: any ReplicaProvider) -> String? {
        let lease: Lease?
        do {
            lease = try provider.currentLease(hello.workload)
        } catch {
            return "this host cannot read the lease of \(hello.workload) to check the sender (\(error)); it retries"
        }
        guard let lease else { return "no host holds the lease of \(hello.workload) yet" }
        if hello.epoch < lease.epoch {
            return
                "epoch \(hello.epoch) is older than the lease's epoch \(lease.epoch) (held by \(lease.holder)): \(hello.host) was fenced"
        }
        if hello.epoch > lease.epoch {
            return
                "epoch \(hello.epoch) is newer than the lease's epoch \(lease.epoch) (held by \(lease.holder)): the coordinator never gave \(hello.host) that epoch"
        }
        if hello.host != lease.holder {
            return
                "the lease of \(hello.workload) at epoch \(lease.epoch) is held by \(lease.holder), not \(hello.host)"
        }
        return nil
    }

    /// Where a peer's journal takes up a primary's stream, for the log: `(0, N)` is an empty
    /// journal that continues a snapshot at seq N (its epoch is not known), not a record.
    static func describeStart(_ durable: Position?) -> String {
        guard let durable else { return "the start" }
        if durable.epoch == 0 {
            return "seq \(durable.seq + 1) on (an empty journal after the snapshot at seq \(durable.seq))"
        }
        return "\(durable)"
    }

    /// A primary's stream: check the hello, then keep records durably and acknowledge them.
    static func receiveStream(
        _ hello: PeerMessage.Hello, _ connection: PeerConnection, provider: any ReplicaProvider,
        logger base: Logger
    ) throws {
        var logger = base
        logger[metadataKey: "workload"] = "\(hello.workload)"
        guard let replica = provider.replica(for: hello.workload) else {
            let role = provider.describe(hello.workload)?.role ?? "unknown"
            try connection.send(.refused("this host is not a peer of workload \(hello.workload) (it is \(role))"))
            return
        }
        if let refusal = refusal(of: hello, provider: provider) {
            logger.warning("refused the stream of \(hello.host) at epoch \(hello.epoch): \(refusal)")
            try connection.send(.refused(refusal))
            return
        }
        let durable = try replica.welcome(hello)
        try connection.send(.welcome(durable: durable))
        logger.info("following primary \(hello.host) at epoch \(hello.epoch) from \(describeStart(durable))")
        while true {
            guard var message = try connection.receive(timeout: 5) else { continue }
            // Take every batch that is already here, then fsync once (group commit).
            var frames: [UInt8] = []
            var pendingOther: PeerMessage?
            while true {
                if case .records(let bytes) = message {
                    frames.append(contentsOf: bytes)
                    if frames.count < 8 << 20, let more = try connection.receive(timeout: 0) {
                        message = more
                        continue
                    }
                } else {
                    pendingOther = message
                }
                break
            }
            if !frames.isEmpty {
                guard provider.replica(for: hello.workload) === replica else {
                    try connection.send(.refused("this host stopped being a peer of \(hello.workload)"))
                    return
                }
                let before = replica.writer.lastPosition?.seq ?? 0
                if let position = try replica.receive(frames, epoch: hello.epoch) {
                    provider.received(
                        hello.workload, bytes: frames.count, records: Int(position.seq - min(before, position.seq)))
                    connection.post(.ack(position))
                }
            }
            switch pendingOther {
            case .reset(let after)?:
                try replica.reset(after: after)
                logger.info(
                    "journal starts over after \(after) (behind the primary's oldest record)"
                )
                if let position = replica.writer.durablePosition { connection.post(.ack(position)) }
            case .retain(let through)?:
                replica.retain(through: through)
            case nil, .records?:
                break
            case let other?:
                try connection.send(.refused("unexpected message \(other) on a stream"))
                return
            }
        }
    }

    /// A recovering host's fetch: every record from `from` on, then `end`.
    static func serveFetch(
        workload: String, from: UInt64, _ connection: PeerConnection, provider: any ReplicaProvider
    ) throws {
        guard let directory = provider.journalDirectory(for: workload) else {
            try connection.send(.refused("no workload named \(workload) on this agent"))
            return
        }
        let tail = JournalTail(directory: directory, from: from)
        do {
            while let batch = try tail.next(maxBytes: 4 << 20) {
                try connection.send(.records(batch.frames))
            }
        } catch let gone as JournalTail.Gone {
            try connection.send(.refused("\(gone)"))
            return
        }
        try connection.send(.end(last: tail.last))
    }
}

/// One-shot requests to another agent's peer server.
public enum PeerClient {
    /// What `address` holds of `workload`, or nil when it does not answer.
    public static func query(
        _ address: String, workload: String, timeout: Double = 1
    ) -> (durable: Position?, epoch: UInt64, role: String, seeded: Bool)? {
        guard let connection = try? PeerConnection.connect(to: address, timeout: timeout) else { return nil }
        defer { connection.close() }
        guard (try? connection.send(.query(workload: workload))) != nil,
            case .position(let durable, let epoch, let role, let seeded)? = try? connection.receive(timeout: timeout)
        else { return nil }
        return (durable, epoch, role, seeded)
    }

    /// What a fetch brought.
    public struct Fetched: Sendable {
        public var records = 0
        public var bytes = 0
        public var last: Position?

        public init(records: Int = 0, bytes: Int = 0, last: Position? = nil) {
            self.records = records
            self.bytes = bytes
            self.last = last
        }
    }

    /// Fetches every record from `from` on into `writer` (appended, then made durable).
    public static func fetch(
        _ address: String, workload: String, from: UInt64, into writer: JournalWriter
    ) throws -> Fetched {
        let connection = try PeerConnection.connect(to: address)
        defer { connection.close() }
        try connection.send(.fetch(workload: workload, from: from))
        var fetched = Fetched()
        while true {
            guard let message = try connection.receive(timeout: 30) else {
                throw LifeboatError(.operationFailed, "peer \(address) stopped sending records of \(workload)")
            }
            switch message {
            case .records(let frames):
                let before = writer.lastPosition?.seq ?? 0
                let last = try frames.withUnsafeBytes { try writer.appendFrames($0) }
                fetched.records += Int((last?.seq ?? before) - before)
                fetched.bytes += frames.count
                fetched.last = last
            case .end:
                try writer.sync()
                return fetched
            case .refused(let reason):
                throw LifeboatError(.operationFailed, "peer \(address) refused the fetch: \(reason)")
            default:
                throw LifeboatError(.operationFailed, "peer \(address) answered a fetch with \(message)")
            }
        }
    }
}
