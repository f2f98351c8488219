import ArgumentParser
import Foundation
import Glibc
import LifeboatAgent
import LifeboatCore
import LifeboatSystem
import Logging
import Synchronization

/// `lifeboatd --config FILE`: runs the agent until SIGTERM or SIGINT, then unmounts and exits 0.
struct LifeboatDaemon: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lifeboatd",
        abstract: "The Lifeboat agent: captures workloads' data dirs and journals every write.",
        discussion:
            "Exit codes: 0 stopped by SIGTERM/SIGINT, 1 failed while running, 2 bad config or directories. See Docs/agent.md."
    )

    @Option(name: .long, help: "The agent's YAML config.")
    var config: String = ConfigLoader.defaultPath

    func run() throws {
        // Block the stop signals in every thread (threads inherit the mask); the main thread
        // waits for them below, so no signal lands on a FUSE or Swift runtime thread.
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
        try agent.start()
        let serverFailure = Mutex<String?>(nil)
        Task.detached {
            do {
                try await AgentAPI.serve(agent) {
                    logger.info("API listening on http://\(configuration.listen)")
                }
            } catch {
                let reason = isAddressInUse(error) ? "the address is already in use" : "\(error)"
                serverFailure.withLock { $0 = "the API cannot listen on \(configuration.listen): \(reason)" }
            }
        }
        let mode = configuration.cluster != nil ? " in a cluster (roles follow the leases)" : ""
        logger.info(
            "agent \(configuration.host) running \(configuration.workloads.count) workload(s)\(mode); SIGTERM stops it")
        var timeout = timespec(tv_sec: 1, tv_nsec: 0)
        while true {
            let received = sigtimedwait(&signals, nil, &timeout)
            if received > 0 {
                logger.info("received signal \(received): unmounting")
                agent.stop()
                logger.info("stopped")
                return
            }
            if let failure = serverFailure.withLock({ $0 }) {
                agent.stop()
                throw LifeboatError(.operationFailed, failure, hint: "choose a free `listen` address")
            }
            if let lost = agent.lostMount {
                agent.stop()
                throw LifeboatError(
                    .operationFailed,
                    "the data dir \(lost.configuration.dataDir) of workload \(lost.configuration.name) was unmounted from outside the agent",
                    hint: "restart the agent")
            }
        }
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
    var command = try LifeboatDaemon.parseAsRoot()
    try command.run()
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
