import NIOPosix

/// The agent's one pool of threads for blocking work: control-loop turns (coordinator calls,
/// recoveries), renewals beside a recovery, scheduled and requested snapshots, switchovers and
/// journal flushes. Async code hands work to it with `run` and never blocks its own threads.
///
/// It is sized so that every workload can run a control turn, a renewal, a snapshot, a
/// flush, a fencing check and a warm-copy round at once, with two threads left for API requests: a long recovery or snapshot never
/// keeps another workload's lease from being renewed.
public final class BlockingPool: Sendable {
    private let pool: NIOThreadPool
    public let threads: Int

    /// A started pool for `workloads` workloads.
    public init(workloads: Int) {
        threads = 2 + 6 * max(workloads, 1)
        pool = NIOThreadPool(numberOfThreads: threads)
        pool.start()
    }

    /// Runs `body` on one of the pool's threads and returns its result.
    public func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(body)
    }

    /// Waits for the work in flight, then stops the threads.
    public func shutdown() async {
        try? await pool.shutdownGracefully()
    }
}
