import ArgumentParser
import Foundation
import Glibc
import LifeboatAgent
import LifeboatCore
import LifeboatSystem
import Logging
import ServiceLifecycle
import UnixSignals

/// `lifeboatd --config FILE`: runs the agent until SIGTERM or SIGINT, then unmounts and exits 0.
struct LifeboatDaemon: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lifeboatd",
        abstract: "The Lifeboat agent: captures workloads' data dirs and journals every write.",
        discussion:
            "Exit codes: 0 stopped by SIGTERM/SIGINT, 1 failed while running, 2 bad config or directories. See Docs/agent.md."
    )

    @Option(name: .long, help: "The agent's YAML config.")
    var config: String = ConfigLoader.defaultPath

    /// Prepares and mounts every workload, then runs the agent's services (one per workload,
    /// the peer server, the API) as one service group until a stop signal: the group stops them
    /// in reverse order, each finishing what it has in flight.
    func run() async throws { try await runAgent() }

    func runAgent() async throws {
        // Block the stop signals in every thread (threads inherit the mask) before any thread
        // starts: the service group reads them from its signal source, and no signal lands on
        // a FUSE or Swift runtime thread.
        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in [SIGTERM, SIGINT, SIGHUP] { sigaddset(&signals, signal) }
        pthread_sigmask(SIG_BLOCK, &signals, nil)

        let configuration = try ConfigLoader.load(path: config)
        let level = Logger.Level(rawValue: configuration.logLevel.rawValue) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger.agent(host: configuration.host)
        raiseDescriptorLimit()
        let agent = try Agent(configuration: configuration, logger: logger)
        do {
            try agent.start()
        } catch {
            agent.close()
            throw error
        }
        let api: APIService
        do {
            api = try AgentAPI.service(agent) { logger.info("API listening on http://\(configuration.listen)") }
        } catch {
            agent.stop()
            agent.close()
            throw error
        }
        let mode = configuration.cluster != nil ? " in a cluster (roles follow the leases)" : ""
        logger.info(
            "agent \(configuration.host) running \(configuration.workloads.count) workload(s)\(mode); SIGTERM stops it")
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: agent.services(api: api), gracefulShutdownSignals: [.sigterm, .sigint, .sighup],
                logger: logger))
        do {
            try await group.run()
        } catch {
            await agent.pool.shutdown()
            agent.close()
            throw error
        }
        await agent.pool.shutdown()
        agent.close()
        logger.info("stopped")
    }
}

/// The passthrough holds one descriptor per file the kernel knows and one per changed file:
/// allow as many as the system does.
func raiseDescriptorLimit() {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    let systemMax =
        (try? String(contentsOfFile: "/proc/sys/fs/nr_open", encoding: .utf8))
        .flatMap { rlim_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? limit.rlim_max
    var wanted = rlimit(
        rlim_cur: max(limit.rlim_max, min(systemMax, 1 << 20)), rlim_max: max(limit.rlim_max, min(systemMax, 1 << 20)))
    if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &wanted) != 0 {
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}

do {
    let command = try LifeboatDaemon.parseAsRoot()
    if let daemon = command as? LifeboatDaemon {
        try await daemon.runAgent()
    } else {
        var other = command
        try other.run()
    }
    exit(0)
} catch let error as LifeboatError {
    FileHandle.standardError.write(Data("lifeboatd: error: \(error.description)\n".utf8))
    exit(error.kind.exitCode)
} catch {
    let code = LifeboatDaemon.exitCode(for: error)
    let message = LifeboatDaemon.fullMessage(for: error)
    if code == .success {
        print(message)
        exit(0)
    }
    FileHandle.standardError.write(Data("lifeboatd: error: \(message)\n".utf8))
    exit(FailureKind.badInput.exitCode)
}
