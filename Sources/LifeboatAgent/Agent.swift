import Foundation
import Glibc
import LifeboatCapture
public import LifeboatCluster
public import LifeboatCore
import LifeboatJournal
import LifeboatRepository
import Synchronization

/// The agent: every workload of its config, captured and journaled, until it is told to stop.
public final class Agent: Sendable {
    public let configuration: AgentConfiguration
    /// Workloads of an agent without a cluster: always mounted here.
    public let workloads: [WorkloadRuntime]
    let standaloneSnapshots: [String: WorkloadSnapshots]
    /// Workloads of a clustered agent: primary or peer as the lease decides.
    public let controllers: [WorkloadController]
    private let peerServer = Mutex<PeerServer?>(nil)
    let log: @Sendable (String) -> Void

    /// Prepares every workload (checks dirs, recovers journals) and the repository (created
    /// when its directory does not exist yet). Nothing is mounted yet.
    public init(configuration: AgentConfiguration, log: @escaping @Sendable (String) -> Void) throws {
        self.configuration = configuration
        self.log = log
        try Agent.prepareRepository(configuration.repository, log: log)
        if let cluster = configuration.cluster {
            let coordinator = try LocalCoordinator(directory: cluster.coordinatorPath)
            workloads = []
            standaloneSnapshots = [:]
            controllers = try configuration.workloads.map {
                try WorkloadController(
                    $0, agent: configuration, cluster: cluster, coordinator: coordinator, log: log)
            }
            return
        }
        controllers = []
        let runtimes = try configuration.workloads.map {
            try WorkloadRuntime($0, repository: configuration.repository, host: configuration.host, log: log)
        }
        workloads = runtimes
        standaloneSnapshots = Dictionary(
            uniqueKeysWithValues: runtimes.map {
                (
                    $0.configuration.name,
                    WorkloadSnapshots(runtime: $0, repositoryPath: configuration.repository, host: configuration.host)
                )
            })
    }

    /// The snapshot taker of a workload, while this host may take its snapshots.
    public func snapshots(of workload: String) -> WorkloadSnapshots? {
        if let snapshots = standaloneSnapshots[workload] { return snapshots }
        return controllers.first { $0.configuration.name == workload }?.snapshots
    }

    public func controller(_ workload: String) -> WorkloadController? {
        controllers.first { $0.configuration.name == workload }
    }

    /// Creates the repository if its directory does not exist (or is empty); checks that an
    /// existing one opens.
    static func prepareRepository(_ path: String, log: (String) -> Void) throws {
        let contents = try? FileManager.default.contentsOfDirectory(atPath: path)
        if contents == nil || contents?.isEmpty == true {
            let parent = (path as NSString).deletingLastPathComponent
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDirectory), isDirectory.boolValue
            else {
                throw LifeboatError(
                    .badInput, "repository \(path): its parent directory \(parent) does not exist",
                    hint: "mount the volume, or fix `repository` in the config")
            }
            do {
                _ = try Repository.initialize(at: path)
                log("initialized repository \(path)")
                return
            } catch {
                // Another agent on the same volume may be creating it right now: open below.
            }
        }
        // A repository another agent is still creating has no config yet: wait a little.
        let deadline = Date(timeIntervalSinceNow: 10)
        while true {
            do {
                _ = try Repository.open(at: path)
                return
            } catch let error as LifeboatError where error.kind == .noRepository && Date() < deadline {
                Thread.sleep(forTimeInterval: 0.2)
            }
        }
    }

    /// Mounts every workload's data dir; on a failure, unmounts the ones already started.
    public func start() throws {
        if let cluster = configuration.cluster {
            peerServer.withLock { $0 = nil }
            let server = try PeerServer(address: cluster.peerListen, provider: self, log: log)
            peerServer.withLock { $0 = server }
            log("peer protocol listening on \(cluster.peerListen); \(cluster.peers.count) peer(s)")
            for controller in controllers { controller.start() }
            return
        }
        var started: [WorkloadRuntime] = []
        for workload in workloads {
            do {
                try workload.start()
            } catch {
                for done in started.reversed() { done.stop() }
                throw error
            }
            started.append(workload)
            let position = workload.journal.writer.lastPosition.map { "\($0)" } ?? "empty"
            let recovery = workload.journal.writer.recovery
            log(
                "workload \(workload.configuration.name): data dir \(workload.configuration.dataDir) mounted over \(workload.configuration.backingDir), epoch \(workload.journal.epoch), journal at \(position)"
                    + (recovery.tornBytesRemoved > 0 ? " (cut a torn tail of \(recovery.tornBytesRemoved) bytes)" : ""))
        }
    }

    /// Unmounts every data dir and makes the journals durable.
    public func stop() {
        for controller in controllers.reversed() { controller.stop() }
        peerServer.withLock { $0?.close() }
        for workload in workloads.reversed() { workload.stop() }
    }

    /// The first workload whose mount disappeared from under the agent, if any.
    public var lostMount: WorkloadRuntime? {
        workloads.first { !$0.mount.isServing }
    }
}

extension Agent: ReplicaProvider {
    public func replica(for workload: String) -> ReplicaJournal? { controller(workload)?.replica(for: workload) }
    public func journalDirectory(for workload: String) -> String? {
        controller(workload)?.journalDirectory(for: workload)
    }
    public func describe(_ workload: String) -> (durable: Position?, epoch: UInt64, role: String)? {
        controller(workload)?.describe(workload)
    }
    public func leaseEpoch(_ workload: String) -> UInt64? { controller(workload)?.leaseEpoch(workload) }
    public func received(_ workload: String, bytes: Int, records: Int) {
        controller(workload)?.received(workload, bytes: bytes, records: records)
    }
}
