import Foundation
import LifeboatAPI
import LifeboatCapture
import LifeboatCore
import LifeboatJournal
import Synchronization

/// The agent's Prometheus text exposition (`GET /metrics`).
enum Metrics {
    static func render(_ agent: Agent) -> String {
        var out = ""
        func line(_ name: String, _ labels: [(String, String)], _ value: Double) {
            let text = labels.map { "\($0.0)=\"\($0.1)\"" }.joined(separator: ",")
            out +=
                "\(name){\(text)} \(value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value))\n"
        }
        let host = agent.configuration.host
        for runtime in agent.supervisors.filter(\.isStandalone).compactMap(\.runtime) {
            let labels = [("host", host), ("workload", runtime.configuration.name)]
            line("lifeboat_journal_seq", labels, Double(runtime.journal.writer.lastPosition?.seq ?? 0))
            line("lifeboat_journal_durable_seq", labels, Double(runtime.journal.writer.durablePosition?.seq ?? 0))
            line("lifeboat_epoch", labels, Double(runtime.journal.epoch))
        }
        for controller in agent.supervisors where !controller.isStandalone {
            let status = controller.status
            let labels = [("host", host), ("workload", status.name)]
            line("lifeboat_journal_seq", labels, Double(controller.writer.lastPosition?.seq ?? 0))
            line("lifeboat_journal_durable_seq", labels, Double(controller.writer.durablePosition?.seq ?? 0))
            line("lifeboat_journal_oldest_seq", labels, Double(status.oldestSeq))
            line("lifeboat_epoch", labels, Double(status.epoch))
            for role in [WorkloadRole.peer, .recovering, .primary, .fenced, .stopped] {
                line("lifeboat_role", labels + [("role", role.rawValue)], status.role == role ? 1 : 0)
            }
            for peer in status.peers {
                let peerLabels = labels + [("peer", peer.host)]
                line("lifeboat_peer_connected", peerLabels, peer.connected ? 1 : 0)
                line("lifeboat_peer_lag_records", peerLabels, Double(peer.lag ?? 0))
                line("lifeboat_peer_bytes_sent_total", peerLabels, Double(peer.bytesSent))
            }
            line(
                "lifeboat_bytes_received_total", labels,
                Double(controller.counters.bytesReceived.load(ordering: .relaxed)))
            line(
                "lifeboat_records_received_total", labels,
                Double(controller.counters.recordsReceived.load(ordering: .relaxed)))
            line(
                "lifeboat_sync_timeouts_total", labels,
                Double(controller.syncTimeouts))
            if let snapshot = status.lastSnapshot {
                line("lifeboat_snapshot_seconds", labels, snapshot.seconds)
                line("lifeboat_snapshot_stall_seconds", labels, snapshot.stallMs / 1000)
            }
            if let recovery = status.lastRecovery {
                for (part, seconds) in [
                    ("detection", recovery.detectionSeconds), ("lease", recovery.leaseSeconds),
                    ("snapshot_load", recovery.snapshotLoadSeconds), ("delta", recovery.deltaSeconds),
                    ("replay", recovery.replaySeconds), ("mount", recovery.mountSeconds),
                    ("service_start", recovery.serviceStartSeconds), ("total", recovery.totalSeconds),
                ] {
                    line("lifeboat_recovery_seconds", labels + [("part", part)], seconds)
                }
                line("lifeboat_recovery_delta_bytes", labels, Double(recovery.deltaBytes))
                line("lifeboat_recovery_snapshot_bytes", labels, Double(recovery.snapshotBytes))
            }
        }
        return out
    }
}
