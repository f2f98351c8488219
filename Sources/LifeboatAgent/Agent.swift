import Foundation
import Glibc
import LifeboatCapture
public import LifeboatCore
import LifeboatJournal
import LifeboatRepository

/// The agent: every workload of its config, captured and journaled, until it is told to stop.
public final class Agent: Sendable {
    public let configuration: AgentConfiguration
    public let workloads: [WorkloadRuntime]
    public let snapshots: [String: WorkloadSnapshots]
    let log: @Sendable (String) -> Void

    /// Prepares every workload (checks dirs, recovers journals) and the repository (created
    /// when its directory does not exist yet). Nothing is mounted yet.
    public init(configuration: AgentConfiguration, log: @escaping @Sendable (String) -> Void) throws {
        self.configuration = configuration
        self.log = log
        let runtimes = try configuration.workloads.map { try WorkloadRuntime($0, log: log) }
        workloads = runtimes
        snapshots = Dictionary(
            uniqueKeysWithValues: runtimes.map {
                (
                    $0.configuration.name,
                    WorkloadSnapshots(runtime: $0, repositoryPath: configuration.repository, host: configuration.host)
                )
            })
        try Agent.prepareRepository(configuration.repository, log: log)
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
            _ = try Repository.initialize(at: path)
            log("initialized repository \(path)")
        } else {
            _ = try Repository.open(at: path)
        }
    }

    /// Mounts every workload's data dir; on a failure, unmounts the ones already started.
    public func start() throws {
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
        for workload in workloads.reversed() { workload.stop() }
    }

    /// The first workload whose mount disappeared from under the agent, if any.
    public var lostMount: WorkloadRuntime? {
        workloads.first { !$0.mount.isServing }
    }
}
