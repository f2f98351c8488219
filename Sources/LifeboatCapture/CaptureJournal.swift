public import LifeboatCore
public import LifeboatJournal
import Synchronization

/// Where the passthrough puts its mutation records: the workload's journal under one epoch.
///
/// A record is appended after its change is made on the backing dir and before the change is
/// answered; `makeDurable` is what fsync and fsyncdir wait for. After one failed append or
/// sync every later mutation is refused with EIO: the journal must never miss a change that
/// was acknowledged.
public final class CaptureJournal: Sendable {
    public let writer: JournalWriter
    public let epoch: UInt64
    private let failure = Mutex<String?>(nil)

    /// Asked before every mutation and every durable answer: nil while this host may write
    /// (it holds the lease), else why not. A fenced journal refuses everything from then on.
    let fence: @Sendable () -> String?
    /// Called after the local fsync of everything through `seq`; true once enough peers hold
    /// it too (sync replication), false when the write must fail with EIO.
    let replicated: @Sendable (UInt64) -> Bool
    /// Called after records were written without waiting for peers.
    let flushed: @Sendable () -> Void

    public init(
        writer: JournalWriter, epoch: UInt64, fence: @escaping @Sendable () -> String? = { nil },
        replicated: @escaping @Sendable (UInt64) -> Bool = { _ in true },
        flushed: @escaping @Sendable () -> Void = {}
    ) {
        self.writer = writer
        self.epoch = epoch
        self.fence = fence
        self.replicated = replicated
        self.flushed = flushed
    }

    /// Called by the agent's flusher after it wrote records without an fsync caller, so the
    /// replication streams notice them at once.
    public func afterFlush() { flushed() }

    /// Refuses every later mutation with EIO, saying why (the agent lost its lease).
    public func refuse(_ reason: String) {
        failure.withLock { current in
            if current == nil { current = reason }
        }
    }

    /// Why the journal refuses mutations, or nil while it accepts them.
    public var failureReason: String? { failure.withLock { $0 } }

    /// Appends one mutation. Returns nil (and refuses everything after) if the journal failed.
    func append(_ mutation: Mutation) -> Position? {
        if failure.withLock({ $0 }) != nil { return nil }
        if let reason = fence() {
            refuse(reason)
            return nil
        }
        do {
            let position: Position
            if case .write(let file, let offset, let data, let time) = mutation {
                position = try data.withUnsafeBytes { data in
                    try appendWrite(file: file, offset: offset, data: data, time: time)
                }
            } else {
                position = try writer.append(epoch: epoch, kind: mutation.kind.rawValue, payload: mutation.encoded())
            }
            return position
        } catch {
            fail(error)
            return nil
        }
    }

    /// Appends a write record without copying the data next to its header first.
    func appendWrite(file: FileID, offset: UInt64, data: UnsafeRawBufferPointer, time: FileTime) throws -> Position {
        if let reason = failure.withLock({ $0 }) ?? fence() {
            refuse(reason)
            throw LifeboatError(.operationFailed, reason)
        }
        let header = Mutation.writeHeader(file: file, offset: offset, time: time).bytes
        return try header.withUnsafeBytes { header in
            try writer.append(epoch: epoch, kind: Mutation.Kind.write.rawValue, header: header, payload: data)
        }
    }

    /// Writes and fsyncs every record appended so far. False if the journal failed.
    public func makeDurable() -> Bool {
        if failure.withLock({ $0 }) != nil { return false }
        guard let last = writer.lastPosition else { return true }
        do {
            try writer.sync(through: last.seq)
            if let reason = fence() {
                refuse(reason)
                return false
            }
            guard replicated(last.seq) else { return false }
            // The wait for the peers may have outlived the lease (this process was paused):
            // look again, so nothing is acknowledged after the fencing deadline.
            if let reason = fence() {
                refuse(reason)
                return false
            }
            return true
        } catch {
            fail(error)
            return false
        }
    }

    func fail(_ error: any Error) {
        failure.withLock { reason in
            if reason == nil { reason = "\(error)" }
        }
    }
}
