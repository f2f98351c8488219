public import LifeboatCore
public import Logging
import Synchronization

/// The changing part of a workload's log metadata, `epoch` and `role`, read on every log line.
///
/// The role is kept in an atomic the supervisor sets with every change of role, so a log line
/// written while the supervisor's state lock is held does not wait for that lock. The epoch
/// comes from a function set once the workload's parts exist; it must never take a lock that
/// is held while logging (the lease keeper and the replica journal hold theirs only around
/// their own fields, and never log under them).
final class WorkloadLogContext: Sendable {
    private let roleIndex = Atomic<Int>(0)
    private let epochSource = Mutex<(@Sendable () -> UInt64)?>(nil)

    init(role: WorkloadRole) { set(role: role) }

    func set(role: WorkloadRole) {
        roleIndex.store(WorkloadRole.allCases.firstIndex(of: role) ?? 0, ordering: .relaxed)
    }

    /// Log lines read the epoch from `source` from now on.
    func readEpoch(from source: @escaping @Sendable () -> UInt64) { epochSource.withLock { $0 = source } }

    var role: WorkloadRole { WorkloadRole.allCases[roleIndex.load(ordering: .relaxed)] }
    var epoch: UInt64 { epochSource.withLock { $0 }?() ?? 0 }

    /// `base` with `workload` as metadata and this context's epoch and role on every line.
    func logger(_ base: Logger, workload: String) -> Logger {
        var logger = base
        logger[metadataKey: "workload"] = "\(workload)"
        let inherited = base.metadataProvider
        let own = Logger.MetadataProvider { [self] in ["epoch": "\(epoch)", "role": "\(role.rawValue)"] }
        logger.handler.metadataProvider = inherited.map { .multiplex([$0, own]) ?? own } ?? own
        return logger
    }
}

extension Logger {
    /// The agent's logger: `host` on every line.
    public static func agent(host: String, label: String = "lifeboatd") -> Logger {
        var logger = Logger(label: label)
        logger[metadataKey: "host"] = "\(host)"
        return logger
    }

    /// A logger that drops everything (tests, and callers that report their own errors).
    public static var quiet: Logger { Logger(label: "lifeboat", factory: { _ in SwiftLogNoOpLogHandler() }) }
}
