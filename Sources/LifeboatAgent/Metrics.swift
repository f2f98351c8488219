import LifeboatAPI
import LifeboatCapture
import LifeboatCore
import LifeboatJournal
import Synchronization

/// The agent's Prometheus text exposition (`GET /metrics`, Docs/agent.md): HELP and TYPE for
/// every family, label values escaped. Counters and gauges are read from the agent's state at
/// each scrape; the histograms are recorded as things happen (`WorkloadMetrics`).
enum Metrics {
    static func render(_ agent: Agent) -> [UInt8] {
        agent.metrics.scrape { scrape in
            for runtime in agent.supervisors.filter(\.isStandalone).compactMap(\.runtime) {
                let name = runtime.configuration.name
                let writer = runtime.journal.writer
                scrape.gauge(.journalSeq, workload: name, Double(writer.lastPosition?.seq ?? 0))
                scrape.gauge(.journalDurableSeq, workload: name, Double(writer.durablePosition?.seq ?? 0))
                scrape.gauge(.epoch, workload: name, Double(runtime.journal.epoch))
            }
            for controller in agent.supervisors where !controller.isStandalone {
                collect(controller, into: &scrape)
            }
        }
    }

    /// The series of one clustered workload.
    private static func collect(_ controller: WorkloadSupervisor, into scrape: inout AgentMetrics.Scrape) {
        let status = controller.status
        let name = status.name
        scrape.gauge(.journalSeq, workload: name, Double(controller.writer.lastPosition?.seq ?? 0))
        scrape.gauge(.journalDurableSeq, workload: name, Double(controller.writer.durablePosition?.seq ?? 0))
        scrape.gauge(.journalOldestSeq, workload: name, Double(status.oldestSeq))
        scrape.gauge(.epoch, workload: name, Double(status.epoch))
        for role in [WorkloadRole.peer, .recovering, .primary, .fenced, .stopped] {
            scrape.gauge(.role, workload: name, labels: [("role", role.rawValue)], status.role == role ? 1 : 0)
        }
        for peer in status.peers {
            let labels = [("peer", peer.host)]
            scrape.gauge(.peerConnected, workload: name, labels: labels, peer.connected ? 1 : 0)
            scrape.gauge(.peerLagRecords, workload: name, labels: labels, Double(peer.lag ?? 0))
            scrape.counter(.peerBytesSent, workload: name, labels: labels, total: peer.bytesSent)
        }
        scrape.counter(
            .bytesReceived, workload: name, total: controller.counters.bytesReceived.load(ordering: .relaxed))
        scrape.counter(
            .recordsReceived, workload: name, total: controller.counters.recordsReceived.load(ordering: .relaxed))
        scrape.counter(.syncTimeouts, workload: name, total: controller.syncTimeouts)
        if let snapshot = status.lastSnapshot {
            scrape.gauge(.snapshotSeconds, workload: name, snapshot.seconds)
            scrape.gauge(.snapshotStallSeconds, workload: name, snapshot.stallMs / 1000)
        }
        if let recovery = status.lastRecovery {
            for (part, seconds) in [
                ("detection", recovery.detectionSeconds), ("lease", recovery.leaseSeconds),
                ("announce", recovery.announceSeconds ?? 0),
                ("snapshot_load", recovery.snapshotLoadSeconds), ("delta", recovery.deltaSeconds),
                ("replay", recovery.replaySeconds), ("mount", recovery.mountSeconds),
                ("service_start", recovery.serviceStartSeconds), ("total", recovery.totalSeconds),
            ] {
                scrape.gauge(.recoverySeconds, workload: name, labels: [("part", part)], seconds)
            }
            scrape.gauge(.recoveryDeltaBytes, workload: name, Double(recovery.deltaBytes))
            scrape.gauge(.recoverySnapshotBytes, workload: name, Double(recovery.snapshotBytes))
        }
    }
}
