import Foundation
import Glibc
public import LifeboatCore
public import LifeboatJournal
public import LifeboatSystem
public import Logging
import Synchronization

/// A peer's copy of a workload's journal: records received from the primary, kept durably,
/// and the highest epoch this host has accepted a primary of (stored next to the segments),
/// so an older primary is refused even after a restart.
public final class ReplicaJournal: Sendable {
    public let writer: JournalWriter
    public let workload: String
    private let acceptedEpochValue: Mutex<UInt64>
    let logger: Logger

    /// The seam `accepted-epoch` is written through.
    let io: FileIO

    /// Opens the replica over `writer` and reads `accepted-epoch`. A file that cannot be read
    /// or does not hold an epoch throws: taking it for 0 would let a fenced primary back in.
    public init(
        workload: String, writer: JournalWriter, calls: any SystemCalls = RealSystemCalls(),
        logger: Logger
    ) throws {
        self.workload = workload
        self.writer = writer
        self.io = FileIO(calls)
        self.logger = logger
        let path = writer.directory + "/accepted-epoch"
        var stored: UInt64 = 0
        do {
            if let bytes = try io.readFileIfPresent(path) {
                let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
                guard let epoch = UInt64(text) else {
                    throw LifeboatError(
                        .integrity, "\(path) does not hold an epoch (it reads '\(text.prefix(40))')",
                        hint:
                            "write the highest epoch this host followed into it (see `lifeboat status`), or remove the journal dir to rejoin empty"
                    )
                }
                stored = epoch
            }
        } catch let error as SystemError {
            throw LifeboatError(
                .operationFailed, "cannot read \(path): \(errnoText(error.code))", hint: "check the journal dir's disk",
                underlying: error)
        }
        acceptedEpochValue = Mutex(max(stored, writer.lastPosition?.epoch ?? 0))
    }

    /// The highest epoch of a primary this host accepted.
    public var acceptedEpoch: UInt64 { acceptedEpochValue.withLock { $0 } }

    /// Records `epoch` as accepted (durably) when it is newer; refuses an older one.
    public func accept(epoch: UInt64) throws {
        try acceptedEpochValue.withLock { accepted in
            if epoch < accepted {
                throw LifeboatError(
                    .operationFailed,
                    "epoch \(epoch) is older than epoch \(accepted) this host already follows: the sender was fenced")
            }
            if epoch > accepted {
                try writeAcceptedEpoch(epoch)
                accepted = epoch
            }
        }
    }

    /// Checks a primary's hello: refuses an older epoch; when this journal holds records that
    /// the primary's history does not (it was a primary that lost its lease), copies them
    /// aside and empties the journal. Returns what this host holds durably.
    public func welcome(_ hello: PeerMessage.Hello) throws -> Position? {
        try accept(epoch: hello.epoch)
        try writer.sync()
        if let last = writer.durablePosition, !hello.history.contains(journalEnd: last) {
            let aside = try keepAside(reason: "epoch \(last.epoch) records the history of epoch \(hello.epoch) lacks")
            let restart = hello.history.first { $0.epoch > last.epoch }.map { $0.firstSeq - 1 } ?? 0
            try writer.reset(after: Position(epoch: 0, seq: min(restart, last.seq)))
            logger.warning(
                "this journal ended at \(last), past where epoch \(hello.epoch)'s history diverged; kept it aside in \(aside) and rejoined from the new primary"
            )
        }
        return writer.durablePosition
    }

    /// Appends received frames and makes them durable; returns the durable position.
    public func receive(_ frames: [UInt8], epoch: UInt64) throws -> Position? {
        if epoch < acceptedEpoch {
            throw LifeboatError(
                .operationFailed, "records of epoch \(epoch) refused: this host follows epoch \(acceptedEpoch)")
        }
        try frames.withUnsafeBytes { _ = try writer.appendFrames($0) }
        return try writer.sync()
    }

    /// Starts the journal over after `position`, keeping records past it aside. Returns the
    /// dir they were copied to (nil: there were none).
    @discardableResult
    public func reset(after position: Position) throws -> String? {
        var aside: String?
        if let last = writer.lastPosition, last.seq > position.seq, last.epoch > 0 {
            aside = try keepAside(reason: "reset after \(position)")
            logger.info("records after \(position) kept aside in \(aside!)")
        }
        try writer.reset(after: position)
        return aside
    }

    /// Appends the records of the journal copy in `aside` from the seq after this journal's
    /// end on (all of them, made durable). Returns how many; 0 when the copy does not reach
    /// that far or starts later (a gap: nothing is appended).
    public func rejoin(from aside: String) throws -> Int {
        let next = (writer.durablePosition?.seq ?? 0) + 1
        let tail = JournalTail(directory: aside, from: next)
        var records = 0
        do {
            while let batch = try tail.next() {
                if records == 0 && batch.first.seq != next { return 0 }
                try batch.frames.withUnsafeBytes { _ = try writer.appendFrames($0) }
                records += batch.records
            }
        } catch is JournalTail.Gone {
            return 0
        }
        if records > 0 { try writer.sync() }
        return records
    }

    /// Drops segments whose records are all at or before `seq` (a committed snapshot).
    public func retain(through seq: UInt64) {
        do {
            try writer.removeSegments(through: seq)
        } catch {
            logger.warning("cannot drop journal segments through \(seq): \(error)")
        }
    }

    /// Stores `epoch` in `accepted-epoch` durably: a unique temp file, fsync, rename, and an
    /// fsync of the directory, so a restart never finds an older one.
    private func writeAcceptedEpoch(_ epoch: UInt64) throws {
        let path = writer.directory + "/accepted-epoch"
        do {
            try io.writeFileAtomically(
                directory: writer.directory, name: "accepted-epoch", bytes: Array("\(epoch)\n".utf8), mode: 0o600)
        } catch {
            throw LifeboatError(
                .operationFailed, "cannot write \(path): \(errnoText(error.code))", underlying: error)
        }
    }

    /// Copies every segment into a sibling directory named after the time; returns its path.
    func keepAside(reason: String) throws -> String {
        try writer.sync()
        let stamp = Int(Date().timeIntervalSince1970)
        let aside = writer.directory + ".diverged-\(stamp)-\(UInt16.random(in: 0...UInt16.max))"
        let manager = FileManager.default
        try manager.createDirectory(atPath: aside, withIntermediateDirectories: false)
        for name in try manager.contentsOfDirectory(atPath: writer.directory) where name.hasSuffix(".journal") {
            try manager.copyItem(atPath: writer.directory + "/" + name, toPath: aside + "/" + name)
        }
        try reason.write(toFile: aside + "/REASON", atomically: true, encoding: .utf8)
        return aside
    }
}
