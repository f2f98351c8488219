import Glibc
import LifeboatCore
import LifeboatSystem

/// Which snapshots to keep, per group of host, workload and paths (as restic's `forget`).
public struct RetentionPolicy: Sendable {
    public var last = 0
    public var hourly = 0
    public var daily = 0
    public var weekly = 0
    public var monthly = 0
    public var yearly = 0

    public init(last: Int = 0, hourly: Int = 0, daily: Int = 0, weekly: Int = 0, monthly: Int = 0, yearly: Int = 0) {
        (self.last, self.hourly, self.daily, self.weekly, self.monthly, self.yearly) = (
            last, hourly, daily, weekly, monthly, yearly
        )
    }

    public var isEmpty: Bool { last + hourly + daily + weekly + monthly + yearly == 0 }

    /// The ids to keep among `snapshots` of one group, with the reason each is kept.
    public func keep(_ snapshots: [SnapshotRecord]) -> [ObjectID: [String]] {
        let newestFirst = snapshots.sorted { ($0.snapshot.time, $0.id) > ($1.snapshot.time, $1.id) }
        var reasons: [ObjectID: [String]] = [:]
        for record in newestFirst.prefix(last) { reasons[record.id, default: []].append("last") }
        let buckets: [(count: Int, name: String, key: (tm) -> Int)] = [
            (hourly, "hourly", { ($0.year * 400 + $0.yday) * 24 + $0.hour }),
            (daily, "daily", { $0.year * 400 + $0.yday }),
            (weekly, "weekly", { $0.year * 60 + $0.week }),
            (monthly, "monthly", { $0.year * 12 + Int($0.tm_mon) }),
            (yearly, "yearly", { $0.year }),
        ]
        for bucket in buckets where bucket.count > 0 {
            var seen = Set<Int>()
            for record in newestFirst {
                var time = time_t(record.snapshot.time.seconds)
                var parts = tm()
                gmtime_r(&time, &parts)
                let key = bucket.key(parts)
                if seen.contains(key) { continue }
                seen.insert(key)
                reasons[record.id, default: []].append(bucket.name)
                if seen.count == bucket.count { break }
            }
        }
        return reasons
    }
}

extension tm {
    fileprivate var year: Int { Int(tm_year) + 1900 }
    fileprivate var yday: Int { Int(tm_yday) }
    fileprivate var hour: Int { Int(tm_hour) }
    /// Week number, weeks starting Monday.
    fileprivate var week: Int { (Int(tm_yday) + 7 - (Int(tm_wday) + 6) % 7) / 7 }
}

/// What `forget` decided for one snapshot.
public struct ForgetDecision: Sendable {
    public var record: SnapshotRecord
    public var keep: Bool
    public var reasons: [String]
}

extension Repository {
    /// Removes the snapshots the policy does not keep; with `prune`, then removes their data.
    public func forget(
        policy: RetentionPolicy, dryRun: Bool, prune: Bool, lockWait: Double = 0,
        warn: @escaping @Sendable (String) -> Void = { _ in }
    ) throws -> (decisions: [ForgetDecision], prune: PruneReport?) {
        guard !policy.isEmpty else {
            throw LifeboatError(
                .badInput, "no retention policy given, so nothing would be kept",
                hint:
                    "pass at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, --keep-yearly"
            )
        }
        let lock = try RepositoryLock.acquire(self, operation: "forget", exclusive: true, wait: lockWait, warn: warn)
        defer { try? lock.release() }
        let snapshots = try listSnapshots()
        let groups = Dictionary(grouping: snapshots) { record in
            [record.snapshot.host, record.snapshot.workload] + record.snapshot.paths
        }
        var decisions: [ForgetDecision] = []
        for (_, group) in groups.sorted(by: { $0.key.lexicographicallyPrecedes($1.key) }) {
            let kept = policy.keep(group)
            for record in group {
                decisions.append(
                    ForgetDecision(record: record, keep: kept[record.id] != nil, reasons: kept[record.id] ?? []))
            }
        }
        if dryRun { return (decisions, nil) }
        for decision in decisions where !decision.keep {
            try lock.ensureHeld()
            try removeFile(directory: paths.snapshotsDir, name: decision.record.id.hex)
            CrashPoints.reached("forget.after-snapshot-delete")
        }
        var report: PruneReport?
        if prune { report = try pruneLocked(lock: lock, maxUnusedFraction: 0.1, dryRun: false) }
        return (decisions, report)
    }
}
