import Foundation
public import LifeboatCore
public import LifeboatJournal
import LifeboatSystem
public import Logging
import Synchronization

/// How far one peer is, as the primary sees it.
public struct PeerProgress: Sendable {
    public var host: String
    public var connected: Bool
    /// The last position the peer said it holds durably.
    public var acked: Position?
    public var bytesSent: UInt64
    public var lastError: String?
}

/// The primary's side of replication for one workload: a stream to every peer, and the wait
/// that sync mode puts behind every fsync.
public final class ReplicationGroup: Sendable {
    public let workload: String
    public let epoch: UInt64
    let streams: [PeerStream]

    /// `acknowledged` is told, for every record batch a peer acknowledged, the peer's host and
    /// the time from just before the batch was sent to the moment its stream read the
    /// acknowledgement (what a sync-mode fsync waits for). It runs on the stream's thread.
    public init(
        workload: String, host: String, epoch: UInt64, history: [EpochStart], writer: JournalWriter,
        peers: [PeerConfiguration],
        acknowledged: @escaping @Sendable (_ peer: String, _ latency: Duration) -> Void = { _, _ in },
        logger: Logger
    ) {
        self.workload = workload
        self.epoch = epoch
        let waiters = AckWaiters()
        self.waiters = waiters
        streams = peers.map { peer in
            PeerStream(
                peer: peer,
                hello: PeerMessage.Hello(workload: workload, host: host, epoch: epoch, history: history),
                writer: writer, waiters: waiters, acknowledged: acknowledged, logger: logger)
        }
    }

    let waiters: AckWaiters

    public func start() { for stream in streams { stream.start() } }

    public func stop() { for stream in streams { stream.stop() } }

    /// Wakes the streams: new records were written.
    public func kick() { for stream in streams { stream.kick() } }

    /// Waits until `count` peers hold `seq` durably; false after `timeout` seconds.
    public func waitReplicated(seq: UInt64, count: Int, timeout: Double) -> Bool {
        kick()
        return waiters.wait(timeout: timeout) {
            streams.filter { ($0.progress.acked?.seq ?? 0) >= seq }.count >= count
        }
    }

    /// Tells the peers they may drop records through `seq` (a snapshot committed there).
    public func retain(through seq: UInt64) { for stream in streams { stream.retain(through: seq) } }

    public var progress: [PeerProgress] { streams.map(\.progress) }
}

/// Wakes threads waiting for acknowledgements.
final class AckWaiters: @unchecked Sendable {
    private let condition = NSCondition()

    func notify() {
        condition.lock()
        condition.broadcast()
        condition.unlock()
    }

    func wait(timeout: Double, until done: () -> Bool) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        condition.lock()
        defer { condition.unlock() }
        while !done() {
            if !condition.wait(until: deadline) { return done() }
        }
        return true
    }
}

/// Streams a workload's journal to one peer, reconnecting until stopped: hello, then every
/// record from the peer's durable position on, as the journal grows.
final class PeerStream: @unchecked Sendable {
    let peer: PeerConfiguration
    let hello: PeerMessage.Hello
    let writer: JournalWriter
    let waiters: AckWaiters
    let acknowledged: @Sendable (_ peer: String, _ latency: Duration) -> Void
    let logger: Logger
    private let state = Mutex(PeerProgress(host: "", connected: false, acked: nil, bytesSent: 0, lastError: nil))
    private let stopped = Mutex(false)
    private let pendingRetain = Mutex<UInt64?>(nil)
    private let wake = NSCondition()
    private var woken = false
    private let connection = Mutex<PeerConnection?>(nil)
    /// Bytes sent and not yet acknowledged that make the stream wait for acks.
    static let window = 16 << 20

    init(
        peer: PeerConfiguration, hello: PeerMessage.Hello, writer: JournalWriter, waiters: AckWaiters,
        acknowledged: @escaping @Sendable (_ peer: String, _ latency: Duration) -> Void,
        logger: Logger
    ) {
        self.peer = peer
        self.hello = hello
        self.writer = writer
        self.waiters = waiters
        self.acknowledged = acknowledged
        self.logger = logger
        state.withLock { $0.host = peer.host }
    }

    var progress: PeerProgress { state.withLock { $0 } }

    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "stream-\(hello.workload)-\(peer.host)"
        thread.start()
    }

    func stop() {
        stopped.withLock { $0 = true }
        connection.withLock { $0?.close() }
        kick()
    }

    func kick() {
        wake.lock()
        woken = true
        wake.signal()
        wake.unlock()
    }

    func retain(through seq: UInt64) {
        pendingRetain.withLock { $0 = seq }
        kick()
    }

    private func sleep(_ seconds: Double) {
        wake.lock()
        if !woken { _ = wake.wait(until: Date(timeIntervalSinceNow: seconds)) }
        woken = false
        wake.unlock()
    }

    private var isStopped: Bool { stopped.withLock { $0 } }

    private func run() {
        var lastLogged: String?
        while !isStopped {
            do {
                try streamOnce()
            } catch {
                let reason = "\(error)"
                state.withLock {
                    $0.connected = false
                    $0.lastError = reason
                }
                waiters.notify()
                if reason != lastLogged && !isStopped {
                    logger.warning("stream to \(peer.host): \(reason)")
                    lastLogged = reason
                }
            }
            connection.withLock { $0 = nil }
            if !isStopped { sleep(0.5) }
        }
    }

    private func streamOnce() throws {
        let link = try PeerConnection.connect(to: peer.address, timeout: 1)
        connection.withLock { $0 = link }
        defer { link.close() }
        if isStopped { return }
        try link.send(.hello(hello))
        guard let reply = try link.receive(timeout: 10) else {
            throw LifeboatError(.operationFailed, "no answer to hello")
        }
        var start: UInt64
        switch reply {
        case .welcome(let durable):
            let first = writer.firstSeq
            let theirs = durable?.seq ?? 0
            if theirs + 1 < first || theirs > (writer.lastPosition?.seq ?? 0) {
                // Behind our oldest record, or ahead of us: it starts over from what we hold.
                try link.send(.reset(after: Position(epoch: 0, seq: first - 1)))
                start = first
            } else {
                start = theirs + 1
            }
            state.withLock {
                $0.connected = true
                $0.lastError = nil
                if let durable, durable.seq + 1 == start { $0.acked = durable }
            }
            logger.info("streaming to \(peer.host) from seq \(start)")
        case .refused(let reason):
            throw LifeboatError(.operationFailed, "refused: \(reason)")
        default:
            throw LifeboatError(.operationFailed, "unexpected answer to hello: \(reply)")
        }
        let tail = JournalTail(directory: writer.directory, from: start)
        var inFlight: [(seq: UInt64, bytes: Int, sentAt: UInt64)] = []
        var unackedBytes = 0
        while !isStopped {
            if let seq = pendingRetain.withLock({ value -> UInt64? in
                defer { value = nil }
                return value
            }) {
                link.post(.retain(through: seq))
            }
            var sentSomething = false
            if unackedBytes < PeerStream.window, let batch = try tail.next(maxBytes: 1 << 20) {
                let sentAt = monotonicNanoseconds()
                try link.send(.records(batch.frames))
                inFlight.append((batch.last.seq, batch.frames.count, sentAt))
                unackedBytes += batch.frames.count
                state.withLock { $0.bytesSent += UInt64(batch.frames.count) }
                sentSomething = true
            }
            // Take every acknowledgement that arrived.
            while let message = try link.receive(timeout: sentSomething ? 0 : 0.001) {
                switch message {
                case .ack(let position):
                    let now = monotonicNanoseconds()
                    state.withLock { $0.acked = position }
                    // The waiting fsyncs first; the latencies after.
                    waiters.notify()
                    while let first = inFlight.first, first.seq <= position.seq {
                        unackedBytes -= first.bytes
                        inFlight.removeFirst()
                        acknowledged(peer.host, .nanoseconds(Int64(truncatingIfNeeded: now &- first.sentAt)))
                    }
                case .refused(let reason):
                    throw LifeboatError(.operationFailed, "refused: \(reason)")
                default:
                    throw LifeboatError(.operationFailed, "unexpected message \(message)")
                }
            }
            if !sentSomething { sleep(0.02) }
        }
    }
}

extension ReplicationGroup {
    /// Waits until the peer `host` holds `seq` durably; false after `timeout` seconds.
    public func waitReplicatedBy(host: String, seq: UInt64, timeout: Double) -> Bool {
        kick()
        return waiters.wait(timeout: timeout) {
            streams.contains { $0.peer.host == host && ($0.progress.acked?.seq ?? 0) >= seq }
        }
    }
}
