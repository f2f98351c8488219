import Foundation
public import LifeboatCluster
import LifeboatCore
import Logging
public import ServiceLifecycle

/// One workload as a service of the agent's group: drives its control loop, its renewals
/// beside a recovery, the check of its fencing deadline, its scheduled snapshots and its
/// journal flushes, each on the agent's
/// blocking pool; on graceful shutdown or cancellation it stops the workload's service and
/// unmounts its data dir (`WorkloadSupervisor.stop`). A standalone workload whose data dir is
/// unmounted from outside ends the service with an error, which stops the agent.
public struct WorkloadService: Service {
    let supervisor: WorkloadSupervisor
    let pool: BlockingPool

    public init(_ supervisor: WorkloadSupervisor, pool: BlockingPool) {
        self.supervisor = supervisor
        self.pool = pool
    }

    public func run() async throws {
        var failure: (any Error)?
        do {
            try await withGracefulShutdownHandler {
                try await cancelWhenGracefulShutdown { try await loops() }
            } onGracefulShutdown: {
                // Turns that start from now on do nothing; one in flight finishes first.
                supervisor.beginStopping()
            }
        } catch is CancellationError {
        } catch {
            failure = error
        }
        supervisor.beginStopping()
        // In a task of its own: this one may be cancelled (another service failed), and the
        // pool drops work submitted from a cancelled task; the workload must still stop.
        let (workload, threads) = (supervisor, pool)
        await Task.detached { try? await threads.run { workload.stop() } }.value
        if let failure { throw failure }
    }

    /// Runs until cancelled, or until one loop fails.
    private func loops() async throws {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await every(WorkloadRuntime.flushInterval) { supervisor.runtime?.flushTick() } }
            if supervisor.isStandalone {
                group.addTask { try await every(1) { try supervisor.checkMounted() } }
            } else {
                group.addTask { try await controlLoop() }
                group.addTask { try await followLeaseChanges() }
                group.addTask {
                    try await every({ supervisor.recoveryRenewalInterval }) { supervisor.renewWhileRecovering() }
                }
                group.addTask { try await every(1) { supervisor.snapshotIfDue() } }
                group.addTask { try await every(WorkloadSupervisor.warmRoundInterval) { supervisor.warmRound() } }
                group.addTask {
                    try await every(WorkloadSupervisor.fenceCheckInterval) { supervisor.fenceIfPastDeadline() }
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Runs a control turn every `controlInterval`, or sooner when the lease changed while
    /// this host is a peer (the coordinator's watch), so a peer learns of a lost lease at once.
    private func controlLoop() async throws {
        while true {
            let started = ContinuousClock.now
            while !supervisor.takeLeaseChange(),
                ContinuousClock.now - started < .milliseconds(Int64(supervisor.controlInterval * 1000))
            {
                try await Task.sleep(for: .milliseconds(20))
            }
            try await pool.run { supervisor.controlTick() }
        }
    }

    /// Follows the coordinator's changes of the lease (an etcd watch, or the local backend's
    /// polling) until cancelled; subscribes again when a stream ends.
    private func followLeaseChanges() async throws {
        while true {
            for await _ in supervisor.leaseChanges() { supervisor.noteLeaseChange() }
            try await Task.sleep(for: .seconds(1))
        }
    }

    private func every(_ seconds: Double, _ turn: @escaping @Sendable () throws -> Void) async throws {
        try await every({ seconds }, turn)
    }

    /// Waits `interval()`, runs `turn` on the pool, again, until cancelled or `turn` throws.
    private func every(
        _ interval: @escaping @Sendable () -> Double, _ turn: @escaping @Sendable () throws -> Void
    ) async throws {
        while true {
            try await Task.sleep(for: .milliseconds(Int64(interval() * 1000)))
            try await pool.run(turn)
        }
    }
}

/// The peer protocol's listener as a service: already bound by `Agent.start`, closed on
/// graceful shutdown or cancellation.
public struct PeerServerService: Service {
    let server: PeerServer

    public init(_ server: PeerServer) { self.server = server }

    public func run() async throws {
        try? await gracefulShutdown()
        server.close()
    }
}
