import Glibc
public import LifeboatCore
public import LifeboatSystem
import Synchronization

/// Appends records to a journal directory and makes them durable on `sync()`.
///
/// Opening recovers: every segment is checked, a torn tail of the last one is cut off (and the
/// cut made durable), and appending resumes after the last intact record. Records are
/// numbered `seq = last + 1`; an append with an epoch older than the last record's is refused,
/// so a fenced primary cannot add to the journal. After any failed write or fsync the writer
/// refuses everything: a failed fsync is never retried into success.
///
/// Safe to call from many threads. Appends only copy into memory under a short lock; writing
/// and fsyncing happen under a second lock, so appends go on while a sync waits for the disk,
/// and callers that wait behind a sync find their records covered by it (group commit).
///
/// Every write, fsync, directory fsync and listing goes through the seam given at init
/// (`RealSystemCalls` by default), so tests inject EIO, ENOSPC and EINTR here.
public final class JournalWriter: Sendable {
    public let directory: String
    public let segmentSize: Int
    private let io: FileIO
    /// Appended records not yet handed to the disk, and the positions.
    private let state: Mutex<State>
    /// The open segment; held while writing and fsyncing.
    private let segment: Mutex<IO>

    /// Bytes of appended records that make an append wait for them to be written.
    static let backpressureBytes = 8 << 20

    private struct Pending {
        /// Set when these bytes start a new segment file (they begin with its header).
        var newSegment: (firstSeq: UInt64, path: String)?
        var bytes: [UInt8]
    }

    private struct State {
        var segments: [(firstSeq: UInt64, path: String)]
        /// Size the current segment will have once everything pending is written.
        var segmentBytes = 0
        var pending: [Pending] = []
        var pendingBytes = 0
        var last: Position?
        var durable: Position?
        var failure: LifeboatError?
        var resets: UInt64 = 0
    }

    private struct IO {
        var fd: Int32 = -1
        var directoryDirty = false
    }

    /// What recovery found when the journal was opened.
    public struct Recovery: Sendable {
        public var last: Position?
        public var records: Int
        public var tornBytesRemoved: Int
    }

    public let recovery: Recovery

    /// Opens (creating if needed) the journal in `directory` and recovers it.
    public init(directory: String, segmentSize: Int = 16 << 20, calls: any SystemCalls = RealSystemCalls()) throws {
        precondition(segmentSize >= 4096)
        self.directory = directory
        self.segmentSize = segmentSize
        let io = FileIO(calls)
        self.io = io
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw journalIOError(errno, "creating journal directory", directory)
        }
        var segments = try Segments.list(directory, io: io)
        var last: Position?
        var records = 0
        var torn = 0
        var tailLength = 0
        for (index, segment) in segments.enumerated() {
            let isLast = index == segments.count - 1
            let scan = try Segments.scan(
                try Segments.read(segment.path), firstSeq: segment.firstSeq, path: segment.path, isLast: isLast,
                after: last
            ) { _ in records += 1 }
            last = scan.last
            torn = scan.tornBytes
            tailLength = scan.validLength
        }
        if last == nil, let first = segments.first, tailLength >= JournalFormat.segmentHeaderSize {
            // A journal reset to start after a snapshot: nothing yet, the next seq is known.
            last = Position(epoch: 0, seq: first.firstSeq - 1)
        }
        var state = State(segments: segments, last: last, durable: last)
        var opened = IO()
        if let tail = segments.last {
            if tailLength < JournalFormat.segmentHeaderSize {
                // A segment that never got its header: remove it, appending recreates it.
                if unlink(tail.path) != 0 { throw journalIOError(errno, "removing empty segment", tail.path) }
                segments.removeLast()
                state.segments = segments
                try JournalWriter.syncDirectory(directory, io: io)
            } else {
                let fd = open(tail.path, O_WRONLY | O_CLOEXEC)
                guard fd >= 0 else { throw journalIOError(errno, "opening journal segment", tail.path) }
                if torn > 0 {
                    do {
                        guard ftruncate(fd, off_t(tailLength)) == 0 else {
                            throw journalIOError(errno, "cutting the torn tail of", tail.path)
                        }
                        try io.fsync(fd, path: tail.path)
                    } catch {
                        close(fd)
                        if let error = error as? SystemError {
                            throw journalIOError(error, "cutting the torn tail of", tail.path)
                        }
                        throw error
                    }
                }
                lseek(fd, off_t(tailLength), SEEK_SET)
                opened.fd = fd
                state.segmentBytes = tailLength
            }
        }
        self.state = Mutex(state)
        self.segment = Mutex(opened)
        recovery = Recovery(last: last, records: records, tornBytesRemoved: torn)
    }

    deinit {
        segment.withLock { io in
            if io.fd >= 0 { close(io.fd) }
        }
    }

    /// The last appended record's position (durable or not).
    public var lastPosition: Position? { state.withLock { $0.last } }

    /// The last position known to be on disk.
    public var durablePosition: Position? { state.withLock { $0.durable } }

    /// Appends one record and returns its position. It is durable only after `sync()`.
    @discardableResult
    public func append(epoch: UInt64, kind: UInt8, payload: UnsafeRawBufferPointer) throws -> Position {
        try append(epoch: epoch, kind: kind, header: UnsafeRawBufferPointer(start: nil, count: 0), payload: payload)
    }

    /// Appends one record whose payload is `header` followed by `payload` (a write's data is
    /// framed without first being copied next to its header).
    @discardableResult
    public func append(
        epoch: UInt64, kind: UInt8, header: UnsafeRawBufferPointer, payload: UnsafeRawBufferPointer
    ) throws -> Position {
        let payloadSize = header.count + payload.count
        guard payloadSize <= JournalFormat.maxPayload else {
            throw LifeboatError(
                .badInput,
                "journal record of \(payloadSize) bytes is larger than the \(JournalFormat.maxPayload)-byte limit")
        }
        let (position, backlog) = try state.withLock { state -> (Position, Int) in
            if let failure = state.failure { throw failure }
            if let last = state.last, epoch < last.epoch {
                throw LifeboatError(
                    .operationFailed,
                    "refusing a record of epoch \(epoch): the journal is already at epoch \(last.epoch) (this primary was fenced)"
                )
            }
            let seq = (state.last?.seq ?? 0) + 1
            let frameSize = JournalFormat.frameHeaderSize + JournalFormat.bodyFixedSize + payloadSize
            makeRoom(&state, seq: seq, frameSize: frameSize)
            let index = state.pending.count - 1
            JournalFormat.appendFrame(
                to: &state.pending[index].bytes, epoch: epoch, seq: seq, kind: kind, header: header, payload: payload)
            state.segmentBytes += frameSize
            state.pendingBytes += frameSize
            let position = Position(epoch: epoch, seq: seq)
            state.last = position
            return (position, state.pendingBytes)
        }
        if backlog >= JournalWriter.backpressureBytes { try write(sync: false, through: nil) }
        return position
    }

    /// Makes the last pending chunk the place for a frame of `frameSize` bytes with `seq`:
    /// a new segment (its header first) when the current one would grow past `segmentSize`.
    private func makeRoom(_ state: inout State, seq: UInt64, frameSize: Int) {
        if state.segments.isEmpty || state.segmentBytes + frameSize > segmentSize {
            let path = directory + "/" + JournalFormat.segmentName(firstSeq: seq)
            let header = JournalFormat.segmentHeader(firstSeq: seq)
            state.segments.append((seq, path))
            state.pending.append(Pending(newSegment: (seq, path), bytes: header))
            state.segmentBytes = header.count
            state.pendingBytes += header.count
        } else if state.pending.isEmpty {
            state.pending.append(Pending(newSegment: nil, bytes: []))
        }
    }

    /// Appends records that another journal already framed (a peer receiving the primary's
    /// stream, or a recovery fetching the delta): whole frames, each checked, each the next seq,
    /// none of an older epoch than the last. Returns the last position appended.
    @discardableResult
    public func appendFrames(_ frames: UnsafeRawBufferPointer) throws -> Position? {
        let (last, backlog) = try state.withLock { state -> (Position?, Int) in
            if let failure = state.failure { throw failure }
            var offset = 0
            while offset < frames.count {
                guard case .valid(let position, let size) = JournalFormat.checkedFrame(in: frames, at: offset) else {
                    throw LifeboatError(.integrity, "a received journal frame at byte \(offset) fails its checksum")
                }
                let expected = (state.last?.seq ?? 0) + 1
                guard position.seq == expected else {
                    throw LifeboatError(.integrity, "received record \(position), expected seq \(expected)")
                }
                if let last = state.last, position.epoch < last.epoch {
                    throw LifeboatError(
                        .operationFailed, "refusing record \(position): the journal is already at epoch \(last.epoch)")
                }
                makeRoom(&state, seq: expected, frameSize: size)
                state.pending[state.pending.count - 1].bytes.append(
                    contentsOf: UnsafeRawBufferPointer(rebasing: frames[offset..<(offset + size)]))
                state.segmentBytes += size
                state.pendingBytes += size
                state.last = position
                offset += size
            }
            return (state.last, state.pendingBytes)
        }
        if backlog >= JournalWriter.backpressureBytes { try write(sync: false, through: nil) }
        return last
    }

    /// Empties the journal so that it starts after `position` (a peer that fell behind the
    /// primary's oldest record, or a new host starting from a snapshot). The old segments are
    /// removed; the next record must be `position.seq + 1`.
    public func reset(after position: Position) throws {
        try segment.withLock { io in
            try state.withLock { state in
                if let failure = state.failure { throw failure }
                if io.fd >= 0 {
                    close(io.fd)
                    io.fd = -1
                }
                for segment in state.segments where unlink(segment.path) != 0 && errno != ENOENT {
                    throw journalIOError(errno, "removing journal segment", segment.path)
                }
                let firstSeq = position.seq + 1
                let path = directory + "/" + JournalFormat.segmentName(firstSeq: firstSeq)
                let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
                guard fd >= 0 else { throw journalIOError(errno, "creating journal segment", path) }
                let header = JournalFormat.segmentHeader(firstSeq: firstSeq)
                do {
                    try writeAll(fd, header)
                    try sync(fd, "syncing journal segment", path)
                    try JournalWriter.syncDirectory(directory, io: self.io)
                } catch {
                    close(fd)
                    throw error
                }
                io.fd = fd
                io.directoryDirty = false
                state.segments = [(firstSeq, path)]
                state.segmentBytes = header.count
                state.pending = []
                state.pendingBytes = 0
                state.last = Position(epoch: 0, seq: position.seq)
                state.durable = state.last
                state.resets += 1
            }
        }
    }

    /// How often this writer was started over (`reset`): a reader that saw the same count
    /// before and after reading read one unbroken journal.
    public var resets: UInt64 { state.withLock { $0.resets } }

    /// The first seq the journal still holds (or would hold next, when empty).
    public var firstSeq: UInt64 {
        state.withLock { state in state.segments.first?.firstSeq ?? ((state.last?.seq ?? 0) + 1) }
    }

    /// Appends one record from an array.
    @discardableResult
    public func append(epoch: UInt64, kind: UInt8, payload: [UInt8]) throws -> Position {
        try payload.withUnsafeBytes { try append(epoch: epoch, kind: kind, payload: $0) }
    }

    /// Writes and fsyncs everything appended so far; returns the durable position.
    ///
    /// With `through`, returns at once when that seq is already durable: callers that wait on
    /// the lock behind another caller's fsync find their records covered by it (group commit).
    @discardableResult
    public func sync(through seq: UInt64? = nil) throws -> Position? {
        try write(sync: true, through: seq)
    }

    /// Hands pending bytes to the segment files; with `sync`, fsyncs them too.
    @discardableResult
    private func write(sync: Bool, through seq: UInt64?) throws -> Position? {
        try segment.withLock { io in
            let taken = try state.withLock { state -> (pending: [Pending], last: Position?)? in
                if let failure = state.failure { throw failure }
                if sync, let seq, let durable = state.durable, durable.seq >= seq { return nil }
                let pending = state.pending
                state.pending = []
                return (pending, state.last)
            }
            guard let taken else { return state.withLock { $0.durable } }
            var written = 0
            do {
                for chunk in taken.pending {
                    if let segment = chunk.newSegment {
                        if io.fd >= 0 {
                            // The finished segment must be complete on disk before a later one exists.
                            try self.sync(io.fd, "syncing journal segment in", directory)
                            close(io.fd)
                            io.fd = -1
                        }
                        let fd = open(segment.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
                        guard fd >= 0 else { throw journalIOError(errno, "creating journal segment", segment.path) }
                        io.fd = fd
                        io.directoryDirty = true
                    }
                    try writeAll(io.fd, chunk.bytes)
                    written += chunk.bytes.count
                }
                if sync {
                    if io.fd >= 0 { try self.sync(io.fd, "syncing journal segment in", directory) }
                    if io.directoryDirty {
                        try JournalWriter.syncDirectory(directory, io: self.io)
                        io.directoryDirty = false
                    }
                }
            } catch let error as LifeboatError {
                state.withLock { $0.failure = error }
                throw error
            }
            return state.withLock { state in
                state.pendingBytes -= written
                if sync, let last = taken.last, state.durable.map({ $0 < last }) ?? true { state.durable = last }
                return state.durable
            }
        }
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        do {
            try bytes.withUnsafeBytes { buffer in
                Result { () throws(SystemError) in try io.writeAll(fd, buffer, path: directory) }
            }.get()
        } catch {
            throw journalIOError(error, "writing journal segment in", directory)
        }
    }

    private func sync(_ fd: Int32, _ action: String, _ path: String) throws {
        do {
            try io.fsync(fd, path: path)
        } catch {
            throw journalIOError(error, action, path)
        }
    }

    /// Removes whole segments whose records all have `seq <= through` (never the one being
    /// written). Returns how many were removed.
    @discardableResult
    public func removeSegments(through seq: UInt64) throws -> Int {
        try write(sync: false, through: nil)
        return try segment.withLock { _ in
            try state.withLock { state in
                var removed = 0
                while state.segments.count > 1, state.segments[1].firstSeq - 1 <= seq {
                    let segment = state.segments.removeFirst()
                    if unlink(segment.path) != 0 {
                        throw journalIOError(errno, "removing journal segment", segment.path)
                    }
                    removed += 1
                }
                if removed > 0 { try JournalWriter.syncDirectory(directory, io: io) }
                return removed
            }
        }
    }

    /// fsyncs a directory, so the names created or removed in it are durable.
    public static func syncDirectory(_ directory: String, io: FileIO = .real) throws {
        do {
            try io.fsyncDirectory(directory)
        } catch {
            throw journalIOError(
                error, error.call == "open" ? "opening journal directory" : "syncing journal directory", directory)
        }
    }
}
