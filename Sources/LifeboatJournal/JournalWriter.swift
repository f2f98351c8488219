import Glibc
public import LifeboatCore
import Synchronization

/// Appends records to a journal directory and makes them durable on `sync()`.
///
/// Opening recovers: every segment is checked, a torn tail of the last one is cut off (and the
/// cut made durable), and appending resumes after the last intact record. Records are
/// numbered `seq = last + 1`; an append with an epoch older than the last record's is refused,
/// so a fenced primary cannot add to the journal. After any failed write or fsync the writer
/// refuses everything: a failed fsync is never retried into success.
///
/// Safe to call from many threads; appends are serialized.
public final class JournalWriter: Sendable {
    public let directory: String
    public let segmentSize: Int
    private let state: Mutex<State>

    private struct State {
        var segments: [(firstSeq: UInt64, path: String)]
        var fd: Int32 = -1
        var segmentBytes = 0
        var buffer: [UInt8] = []
        var last: Position?
        var durable: Position?
        var directoryDirty = false
        var failure: LifeboatError?
    }

    /// What recovery found when the journal was opened.
    public struct Recovery: Sendable {
        public var last: Position?
        public var records: Int
        public var tornBytesRemoved: Int
    }

    public let recovery: Recovery

    /// Opens (creating if needed) the journal in `directory` and recovers it.
    public init(directory: String, segmentSize: Int = 16 << 20) throws {
        precondition(segmentSize >= 4096)
        self.directory = directory
        self.segmentSize = segmentSize
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw journalIOError(errno, "creating journal directory", directory)
        }
        var segments = try Segments.list(directory)
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
        var state = State(segments: segments, last: last, durable: last)
        if let tail = segments.last {
            if tailLength < JournalFormat.segmentHeaderSize {
                // A segment that never got its header: remove it, appending recreates it.
                if unlink(tail.path) != 0 { throw journalIOError(errno, "removing empty segment", tail.path) }
                segments.removeLast()
                state.segments = segments
                try JournalWriter.syncDirectory(directory)
            } else {
                let fd = open(tail.path, O_WRONLY | O_CLOEXEC)
                guard fd >= 0 else { throw journalIOError(errno, "opening journal segment", tail.path) }
                if torn > 0 {
                    guard ftruncate(fd, off_t(tailLength)) == 0, fsync(fd) == 0 else {
                        let error = journalIOError(errno, "cutting the torn tail of", tail.path)
                        close(fd)
                        throw error
                    }
                }
                lseek(fd, off_t(tailLength), SEEK_SET)
                state.fd = fd
                state.segmentBytes = tailLength
            }
        }
        self.state = Mutex(state)
        recovery = Recovery(last: last, records: records, tornBytesRemoved: torn)
    }

    deinit {
        state.withLock { state in
            if state.fd >= 0 { close(state.fd) }
        }
    }

    /// The last appended record's position (durable or not).
    public var lastPosition: Position? { state.withLock { $0.last } }

    /// The last position known to be on disk.
    public var durablePosition: Position? { state.withLock { $0.durable } }

    /// Appends one record and returns its position. It is durable only after `sync()`.
    @discardableResult
    public func append(epoch: UInt64, kind: UInt8, payload: UnsafeRawBufferPointer) throws -> Position {
        guard payload.count <= JournalFormat.maxPayload else {
            throw LifeboatError(
                .badInput,
                "journal record of \(payload.count) bytes is larger than the \(JournalFormat.maxPayload)-byte limit")
        }
        return try state.withLock { state in
            if let failure = state.failure { throw failure }
            if let last = state.last, epoch < last.epoch {
                throw LifeboatError(
                    .operationFailed,
                    "refusing a record of epoch \(epoch): the journal is already at epoch \(last.epoch) (this primary was fenced)"
                )
            }
            let seq = (state.last?.seq ?? 0) + 1
            let frameSize = JournalFormat.frameHeaderSize + JournalFormat.bodyFixedSize + payload.count
            if state.fd < 0 || state.segmentBytes + state.buffer.count + frameSize > segmentSize {
                try startSegment(&state, firstSeq: seq)
            }
            JournalFormat.appendFrame(to: &state.buffer, epoch: epoch, seq: seq, kind: kind, payload: payload)
            if state.buffer.count >= 1 << 20 { try flush(&state) }
            let position = Position(epoch: epoch, seq: seq)
            state.last = position
            return position
        }
    }

    /// Appends one record from an array.
    @discardableResult
    public func append(epoch: UInt64, kind: UInt8, payload: [UInt8]) throws -> Position {
        try payload.withUnsafeBytes { try append(epoch: epoch, kind: kind, payload: $0) }
    }

    /// Writes and fsyncs everything appended so far; returns the durable position.
    @discardableResult
    public func sync() throws -> Position? {
        try state.withLock { state in
            if let failure = state.failure { throw failure }
            try flush(&state)
            if state.fd >= 0 && fsync(state.fd) != 0 {
                throw fail(&state, journalIOError(errno, "syncing journal segment in", directory))
            }
            if state.directoryDirty {
                do {
                    try JournalWriter.syncDirectory(directory)
                } catch let error as LifeboatError {
                    throw fail(&state, error)
                }
                state.directoryDirty = false
            }
            state.durable = state.last
            return state.durable
        }
    }

    /// Removes whole segments whose records all have `seq <= through` (never the one being
    /// written). Returns how many were removed.
    @discardableResult
    public func removeSegments(through seq: UInt64) throws -> Int {
        try state.withLock { state in
            var removed = 0
            while state.segments.count > 1, state.segments[1].firstSeq - 1 <= seq {
                let segment = state.segments.removeFirst()
                if unlink(segment.path) != 0 { throw journalIOError(errno, "removing journal segment", segment.path) }
                removed += 1
            }
            if removed > 0 { try JournalWriter.syncDirectory(directory) }
            return removed
        }
    }

    private func startSegment(_ state: inout State, firstSeq: UInt64) throws {
        if state.fd >= 0 {
            try flush(&state)
            // The finished segment must be complete on disk before a later one exists.
            if fsync(state.fd) != 0 {
                throw fail(&state, journalIOError(errno, "syncing journal segment in", directory))
            }
            close(state.fd)
            state.fd = -1
        }
        let path = directory + "/" + JournalFormat.segmentName(firstSeq: firstSeq)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw fail(&state, journalIOError(errno, "creating journal segment", path)) }
        state.fd = fd
        state.segmentBytes = 0
        state.segments.append((firstSeq, path))
        state.directoryDirty = true
        state.buffer.insert(contentsOf: JournalFormat.segmentHeader(firstSeq: firstSeq), at: 0)
    }

    private func flush(_ state: inout State) throws {
        guard !state.buffer.isEmpty, state.fd >= 0 else { return }
        var done = 0
        while done < state.buffer.count {
            let fd = state.fd
            let written = state.buffer.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
            if written < 0 {
                if errno == EINTR { continue }
                throw fail(&state, journalIOError(errno, "writing journal segment in", directory))
            }
            done += written
        }
        state.segmentBytes += state.buffer.count
        state.buffer.removeAll(keepingCapacity: true)
    }

    private func fail(_ state: inout State, _ error: LifeboatError) -> LifeboatError {
        state.failure = error
        return error
    }

    static func syncDirectory(_ directory: String) throws {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw journalIOError(errno, "opening journal directory", directory) }
        defer { close(fd) }
        if fsync(fd) != 0 { throw journalIOError(errno, "syncing journal directory", directory) }
    }
}
