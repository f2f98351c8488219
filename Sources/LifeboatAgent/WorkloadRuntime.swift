import Foundation
import Glibc
public import LifeboatCapture
public import LifeboatCore
import LifeboatJournal
import LifeboatSystem
public import Logging
import Synchronization

/// One workload running on this agent: its journal and its captured data dir.
public final class WorkloadRuntime: Sendable {
    public let configuration: WorkloadConfiguration
    public let journal: CaptureJournal
    public let mount: CaptureMount
    /// Writes one line to the agent's log.
    public let logger: Logger
    /// The histograms its fsyncs and snapshots feed.
    let metrics: WorkloadMetrics

    /// Checks the workload's directories, opens (and recovers) its journal, makes the backing
    /// dir agree with the journal after an unclean stop (`UncleanStart`: from the newest snapshot
    /// of the workload by `host` in `repository`, and the journal), and prepares the mount.
    /// Nothing is mounted until `start()`.
    public convenience init(
        _ configuration: WorkloadConfiguration, repository: String? = nil, host: String? = nil,
        metrics: WorkloadMetrics, logger: Logger
    ) throws {
        try WorkloadRuntime.checkDirectories(configuration)
        let writer = try JournalWriter(directory: configuration.journalDir)
        try UncleanStart.prepare(configuration, writer: writer, repository: repository, host: host, logger: logger)
        let epoch = max(writer.lastPosition?.epoch ?? 1, 1)
        try self.init(
            configuration, journal: CaptureJournal(writer: writer, epoch: epoch), metrics: metrics, logger: logger)
    }

    /// A workload over a journal that is already open: a primary after recovery, whose
    /// backing dir was just rebuilt from a snapshot and the journal.
    init(
        _ configuration: WorkloadConfiguration, journal: CaptureJournal, metrics: WorkloadMetrics,
        logger: Logger
    ) throws {
        self.configuration = configuration
        self.logger = logger
        self.journal = journal
        self.metrics = metrics
        do {
            mount = try CaptureMount(
                dataDir: configuration.dataDir, backingDir: configuration.backingDir, journal: journal,
                fsyncObserver: { [metrics] latency in metrics.fsynced(latency) })
        } catch {
            throw LifeboatError(.badInput, "workload \(configuration.name): \(error)")
        }
    }

    public func start() throws {
        // Marked before the mount serves anything: a kill right after the mount is unclean too.
        try Checkpoints.markRunning(configuration)
        do {
            try mount.start()
        } catch {
            Checkpoints.markStopped(configuration)
            throw LifeboatError(.operationFailed, "workload \(configuration.name): \(error)")
        }
        flushState.withLock {
            $0.running = true
            $0.lastCheckpoint = monotonicSeconds()
            $0.checkpointed = Checkpoints.read(configuration.journalDir)
        }
    }

    /// Unmounts and makes every journaled record durable.
    public func stop() {
        flushState.withLock { $0.running = false }
        mount.stop()
        if journal.makeDurable(), let last = journal.writer.lastPosition {
            do {
                try Checkpoints.flush(configuration, through: last)
            } catch {
                logger.error("\(error); the next start checks the backing dir against the journal")
                return
            }
        }
        Checkpoints.markStopped(configuration)
    }

    /// What the flusher remembers between its turns.
    private struct FlushState {
        var running = false
        var lastCheckpoint = 0.0
        var checkpointed: Position?
    }
    private let flushState = Mutex(FlushState())

    /// One turn of the flusher, run every `flushInterval` while the data dir is mounted: makes
    /// the journal durable even when the service never calls fsync, so records written without
    /// fsync reach disk (and readers) within that time; and flushes the backing dir every
    /// `checkpointInterval`, recording the position it covers. Does nothing once stopped.
    public func flushTick() {
        guard flushState.withLock({ $0.running }) else { return }
        if let last = journal.writer.lastPosition, last != journal.writer.durablePosition {
            // Only the local journal: waiting for sync peers is for fsync callers.
            do {
                try journal.writer.sync(through: last.seq)
                journal.afterFlush()
            } catch {
                logger.error("journal flush failed: \(error)")
            }
        }
        let now = monotonicSeconds()
        let (due, checkpointed) = flushState.withLock {
            ($0.running && now - $0.lastCheckpoint >= WorkloadRuntime.checkpointInterval, $0.checkpointed)
        }
        guard due, let durable = journal.writer.durablePosition, checkpointed.map({ $0 < durable }) ?? true else {
            return
        }
        flushState.withLock { $0.lastCheckpoint = now }
        do {
            try Checkpoints.flush(configuration, through: durable)
            flushState.withLock { $0.checkpointed = durable }
        } catch {
            logger.error("checkpoint failed: \(error)")
        }
    }

    /// How long a record written without fsync may stay in memory.
    public static let flushInterval = 0.2
    /// How often the backing dir is flushed to disk.
    public static let checkpointInterval = 5.0

    static func checkDirectories(_ workload: WorkloadConfiguration) throws {
        let name = workload.name
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: workload.backingDir, isDirectory: &isDirectory),
            isDirectory.boolValue
        else {
            throw LifeboatError(
                .badInput,
                "workload \(name): backing_dir \(workload.backingDir) does not exist or is not a directory",
                hint: "create it: it holds the workload's files on this host")
        }
        if !FileManager.default.fileExists(atPath: workload.dataDir) && mkdir(workload.dataDir, 0o755) != 0
            && errno != EEXIST
            && errno != ENOTCONN
        {
            throw LifeboatError(
                .badInput,
                "workload \(name): cannot create data_dir \(workload.dataDir): \(String(cString: strerror(errno)))")
        }
        do {
            try MountTable.prepareMountPoint(workload.dataDir)
        } catch {
            throw LifeboatError(.badInput, "workload \(name): \(error)")
        }
        let data = MountTable.canonical(workload.dataDir)
        let backing = MountTable.canonical(workload.backingDir)
        let journalPath = resolvedAllowingMissing(workload.journalDir)
        func inside(_ path: String, _ dir: String) -> Bool { path == dir || path.hasPrefix(dir + "/") }
        if inside(journalPath, data) {
            throw LifeboatError(
                .badInput,
                "workload \(name): journal_dir \(workload.journalDir) is on the captured data dir \(workload.dataDir) itself",
                hint: "put the journal on a local disk outside data_dir and backing_dir")
        }
        if inside(journalPath, backing) {
            throw LifeboatError(
                .badInput,
                "workload \(name): journal_dir \(workload.journalDir) is inside backing_dir \(workload.backingDir), where the service would see it",
                hint: "put the journal on a local disk outside data_dir and backing_dir")
        }
        if inside(data, backing) || inside(backing, data) {
            throw LifeboatError(
                .badInput, "workload \(name): data_dir and backing_dir must not contain each other",
                hint: "use two separate directories")
        }
    }

    /// The canonical path of `path`, resolving its nearest existing ancestor when it does not
    /// exist yet (a journal dir that the agent will create).
    static func resolvedAllowingMissing(_ path: String) -> String {
        var existing = path
        var rest: [Substring] = []
        while access(existing, F_OK) != 0, let slash = existing.lastIndex(of: "/"), existing != "/" {
            rest.insert(existing[existing.index(after: slash)...], at: 0)
            existing = slash == existing.startIndex ? "/" : String(existing[..<slash])
        }
        let base = MountTable.canonical(existing)
        return rest.isEmpty ? base : (base == "/" ? "" : base) + "/" + rest.joined(separator: "/")
    }
}
