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
    private let observers = Mutex<[@Sendable (Position, Mutation, Int) -> Void]>([])

    public init(writer: JournalWriter, epoch: UInt64) {
        self.writer = writer
        self.epoch = epoch
    }

    /// Why the journal refuses mutations, or nil while it accepts them.
    public var failureReason: String? { failure.withLock { $0 } }

    /// Calls `observer` for every record appended from now on (the dirty map listens here).
    /// A write is passed without its data and with the data's length as the third argument.
    public func observe(_ observer: @escaping @Sendable (Position, Mutation, Int) -> Void) {
        observers.withLock { $0.append(observer) }
    }

    /// Appends one mutation. Returns nil (and refuses everything after) if the journal failed.
    func append(_ mutation: Mutation) -> Position? {
        if failure.withLock({ $0 }) != nil { return nil }
        do {
            let position: Position
            if case .write(let file, let offset, let data, let time) = mutation {
                position = try data.withUnsafeBytes { data in
                    try appendWrite(file: file, offset: offset, data: data, time: time)
                }
            } else {
                position = try writer.append(epoch: epoch, kind: mutation.kind.rawValue, payload: mutation.encoded())
                notify(position, mutation, 0)
            }
            return position
        } catch {
            fail(error)
            return nil
        }
    }

    /// Appends a write record without copying the data next to its header first.
    func appendWrite(file: FileID, offset: UInt64, data: UnsafeRawBufferPointer, time: FileTime) throws -> Position {
        let header = Mutation.writeHeader(file: file, offset: offset, time: time).bytes
        let position = try header.withUnsafeBytes { header in
            try writer.append(epoch: epoch, kind: Mutation.Kind.write.rawValue, header: header, payload: data)
        }
        if observers.withLock({ !$0.isEmpty }) {
            notify(position, .write(file: file, offset: offset, data: [], time: time), data.count)
        }
        return position
    }

    /// Writes and fsyncs every record appended so far. False if the journal failed.
    public func makeDurable() -> Bool {
        if failure.withLock({ $0 }) != nil { return false }
        guard let last = writer.lastPosition else { return true }
        do {
            try writer.sync(through: last.seq)
            return true
        } catch {
            fail(error)
            return false
        }
    }

    private func notify(_ position: Position, _ mutation: Mutation, _ length: Int) {
        let current = observers.withLock { $0 }
        for observer in current { observer(position, mutation, length) }
    }

    func fail(_ error: any Error) {
        failure.withLock { reason in
            if reason == nil { reason = "\(error)" }
        }
    }
}
