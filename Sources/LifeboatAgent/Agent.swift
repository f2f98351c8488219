import Foundation
import Glibc
import LifeboatCapture
public import LifeboatCluster
public import LifeboatCore
import LifeboatJournal
import LifeboatRepository
public import Logging
public import ServiceLifecycle
import Synchronization

/// The agent: every workload of its config, captured and journaled, until it is told to stop.
public final class Agent: Sendable {
    public let configuration: AgentConfiguration
    /// One supervisor per workload: `standalone` without a cluster (always mounted here), else
    /// primary or peer as the lease decides.
    public let supervisors: [WorkloadSupervisor]
    private let peerServer = Mutex<PeerServer?>(nil)
    let logger: Logger
    /// The cluster's coordinator (nil without a cluster); `close()` releases it.
    let coordinator: (any Coordinator)?
    /// Where every blocking piece of work of the agent runs.
    public let pool: BlockingPool
    /// This agent's metrics registry (`GET /metrics`).
    let metrics: AgentMetrics

    /// Prepares every workload (checks dirs, recovers journals) and the repository (created
    /// when its directory does not exist yet). Nothing is mounted yet.
    public init(configuration: AgentConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        pool = BlockingPool(workloads: configuration.workloads.count)
        let metrics = AgentMetrics(host: configuration.host)
        self.metrics = metrics
        try Agent.prepareRepository(configuration.repository, logger: logger)
        if let cluster = configuration.cluster {
            let coordinator: any Coordinator =
                switch cluster.backend {
                case .local: try LocalCoordinator(directory: cluster.coordinatorPath)
                case .etcd:
                    try EtcdCoordinator(
                        endpoints: cluster.etcdEndpoints, prefix: cluster.coordinatorPath,
                        dialTimeout: cluster.etcdDialTimeout,
                        requestTimeout: Agent.etcdRequestTimeout(configuration.workloads))
                }
            self.coordinator = coordinator
            do {
                supervisors = try configuration.workloads.map {
                    try WorkloadSupervisor(
                        $0, agent: configuration, cluster: cluster, coordinator: coordinator,
                        metrics: metrics.workload($0.name, peers: cluster.peers.map(\.host)), logger: logger)
                }
            } catch {
                coordinator.close()
                throw error
            }
        } else {
            coordinator = nil
            supervisors = try configuration.workloads.map {
                try WorkloadSupervisor(
                    standalone: $0, agent: configuration, metrics: metrics.workload($0.name, peers: []), logger: logger)
            }
        }
    }

    /// How long one etcd request may take before the client tries the next endpoint: a
    /// quarter of the shortest lease TTL (at most 5 s, at least 0.5 s), so a renewal stuck on a
    /// member that was cut off (its connection open, nothing answering) moves on while the
    /// lease still has time, instead of running the primary into its fencing deadline.
    static func etcdRequestTimeout(_ workloads: [WorkloadConfiguration]) -> Double {
        let shortest = workloads.map(\.replication.leaseTTL).min() ?? 10
        return min(5, max(0.5, shortest / 4))
    }

    /// The snapshot taker of a workload, while this host may take its snapshots.
    public func snapshots(of workload: String) -> WorkloadSnapshots? {
        supervisor(workload)?.snapshots
    }

    /// The supervisor of `workload`, standalone or clustered.
    public func supervisor(_ workload: String) -> WorkloadSupervisor? {
        supervisors.first { $0.configuration.name == workload }
    }

    /// The supervisor of a clustered workload (nil for a standalone one).
    public func controller(_ workload: String) -> WorkloadSupervisor? {
        supervisor(workload).flatMap { $0.isStandalone ? nil : $0 }
    }

    /// Creates the repository if its directory does not exist (or is empty); checks that an
    /// existing one opens.
    static func prepareRepository(_ path: String, logger: Logger) throws {
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
                logger.info("initialized repository \(path)")
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
            let server = try PeerServer(address: cluster.peerListen, provider: self, logger: logger)
            peerServer.withLock { $0 = server }
            logger.info("peer protocol listening on \(cluster.peerListen); \(cluster.peers.count) peer(s)")
            for supervisor in supervisors { try supervisor.start() }
            return
        }
        var started: [WorkloadSupervisor] = []
        for supervisor in supervisors {
            do {
                try supervisor.start()
            } catch {
                for done in started.reversed() { done.stop() }
                throw error
            }
            started.append(supervisor)
        }
    }

    /// The agent's services in the order they start; a graceful shutdown stops them in the
    /// reverse order: the API first (no new requests), then the clustered workloads (their
    /// services stopped, unmounted), the peer server, the standalone workloads. `start()` must
    /// have succeeded.
    public func services(api: any Service) -> [any Service] {
        let standalone: [any Service] = supervisors.filter(\.isStandalone).map { WorkloadService($0, pool: pool) }
        let peers: [any Service] = peerServer.withLock { $0 }.map { [PeerServerService($0)] } ?? []
        let clustered: [any Service] = supervisors.filter { !$0.isStandalone }.map { WorkloadService($0, pool: pool) }
        return standalone + peers + clustered + [api]
    }

    /// Releases the coordinator's connections: the last call, after the services stopped.
    public func close() { coordinator?.close() }

    /// Unmounts every data dir and makes the journals durable (when the services never ran).
    public func stop() {
        for supervisor in supervisors.reversed() where !supervisor.isStandalone { supervisor.stop() }
        peerServer.withLock { $0?.close() }
        for supervisor in supervisors.reversed() where supervisor.isStandalone { supervisor.stop() }
    }

    /// The first standalone workload whose mount disappeared from under the agent, if any (a
    /// clustered workload is mounted only while primary).
    public var lostMount: WorkloadRuntime? {
        supervisors.lazy.filter(\.isStandalone).compactMap(\.runtime).first { !$0.mount.isServing }
    }
}

extension Agent: ReplicaProvider {
    public func replica(for workload: String) -> ReplicaJournal? { controller(workload)?.replica(for: workload) }
    public func hasSeedData(_ workload: String) -> Bool { controller(workload)?.hasSeedData(workload) ?? false }
    public func journalDirectory(for workload: String) -> String? {
        controller(workload)?.journalDirectory(for: workload)
    }
    public func describe(_ workload: String) -> (durable: Position?, epoch: UInt64, role: String)? {
        controller(workload)?.describe(workload)
    }
    public func currentLease(_ workload: String) throws -> Lease? { try controller(workload)?.currentLease(workload) }
    public func received(_ workload: String, bytes: Int, records: Int) {
        controller(workload)?.received(workload, bytes: bytes, records: records)
    }
}
