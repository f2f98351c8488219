import Glibc
import Synchronization

/// Named places where a test can make the process die with SIGKILL.
///
/// `LIFEBOAT_CRASH_AT=POINT[:N]` kills the process the N-th time (default the first)
/// it reaches POINT. With the variable unset this costs one string comparison.
public enum CrashPoints {
    /// Every point the code reaches, documented in Docs/cli.md.
    public static let all = [
        "pack.before-rename", "pack.after-rename", "index.before-rename", "index.after-rename",
        "snapshot.before-rename", "snapshot.after-rename", "prune.after-repack", "prune.after-index-write",
        "prune.after-index-delete", "prune.after-pack-delete", "forget.after-snapshot-delete",
    ]

    private static let target: (name: String, count: Int)? = {
        guard let raw = getenv("LIFEBOAT_CRASH_AT") else { return nil }
        let parts = String(cString: raw).split(separator: ":")
        guard let name = parts.first else { return nil }
        let count = parts.count > 1 ? Int(parts[1]) ?? 1 : 1
        return (String(name), count)
    }()

    private static let hits = Atomic<Int>(0)

    /// Dies here if the test asked for it.
    public static func reached(_ name: String) {
        guard let target, target.name == name else { return }
        let hit = hits.add(1, ordering: .relaxed).newValue
        if hit >= target.count { kill(getpid(), SIGKILL) }
    }
}
