import ArgumentParser
import Foundation
import LifeboatCore

/// `lifeboat status`: every host of the cluster, as its agents report it.
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the cluster: hosts, workloads, roles, epochs, positions, lag, snapshots, recoveries.",
        discussion:
            "Asks --agent for its status, then every peer it lists. A host that does not answer is shown as unreachable (exit 0 as long as --agent answers)."
    )

    @Option(help: "An agent's API URL.") var agent = "http://127.0.0.1:7440"
    @Flag(help: "Print the statuses as JSON.") var json = false

    func run() throws {
        let first = try AgentClient.request(agent, path: "/v1/status", method: "GET", timeout: 5)
        guard let own = try JSONSerialization.jsonObject(with: first) as? [String: Any] else {
            throw LifeboatError(.operationFailed, "the agent at \(agent) answered something that is not a status")
        }
        var hosts: [(String, [String: Any]?, String?)] = [(own["host"] as? String ?? agent, own, nil)]
        for peer in own["peers"] as? [[String: Any]] ?? [] {
            let name = peer["host"] as? String ?? "?"
            let api = peer["api"] as? String ?? ""
            do {
                let body = try AgentClient.request(api, path: "/v1/status", method: "GET", timeout: 2)
                hosts.append((name, try JSONSerialization.jsonObject(with: body) as? [String: Any], nil))
            } catch {
                hosts.append((name, nil, "\(error)"))
            }
        }
        if json {
            let list: [[String: Any]] = hosts.map { host, status, error in
                var entry: [String: Any] = ["host": host, "reachable": status != nil]
                if let status { entry["status"] = status }
                if let error { entry["error"] = error }
                return entry
            }
            let data = try JSONSerialization.data(
                withJSONObject: ["hosts": list], options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        var rows = [["HOST", "WORKLOAD", "ROLE", "EPOCH", "POSITION", "DURABLE", "LAG", "SERVICE", "NEWEST SNAPSHOT"]]
        var notes: [String] = []
        for (host, status, error) in hosts {
            guard let status else {
                rows.append([host, "-", "unreachable", "-", "-", "-", "-", "-", "-"])
                notes.append("\(host): \(error ?? "no answer")")
                continue
            }
            for workload in status["workloads"] as? [[String: Any]] ?? [] {
                let peers = workload["peers"] as? [[String: Any]] ?? []
                let lag =
                    peers.isEmpty
                    ? "-"
                    : peers.map { peer in
                        "\(peer["host"] as? String ?? "?")=\((peer["lag"] as? NSNumber).map { "\($0)" } ?? (peer["connected"] as? Bool == true ? "?" : "down"))"
                    }.joined(separator: ",")
                let service = workload["service"] as? [String: Any]
                let snapshot = (workload["newest_snapshot"] ?? workload["last_snapshot"]) as? [String: Any]
                rows.append([
                    host, workload["name"] as? String ?? "?", workload["role"] as? String ?? "standalone",
                    "\(workload["epoch"] ?? "-")", workload["position"] as? String ?? "-",
                    workload["durable_position"] as? String ?? "-", lag,
                    service?["state"] as? String ?? (workload["mounted"] as? Bool == true ? "mounted" : "-"),
                    snapshot.map {
                        "\(($0["snapshot"] as? String ?? "").prefix(8)) at \($0["position"] as? String ?? "-")"
                    }
                        ?? "-",
                ])
                if let alert = workload["alert"] as? String { notes.append("\(host): ALERT \(alert)") }
                if let recovery = workload["last_recovery"] as? [String: Any] {
                    notes.append("\(host): " + Status.describe(recovery))
                }
            }
        }
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            print(
                row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(
                    separator: "  "
                ).trimmingCharacters(in: .whitespaces))
        }
        for note in notes { print(note) }
    }

    static func describe(_ recovery: [String: Any]) -> String {
        func seconds(_ key: String) -> String {
            String(format: "%.3f s", (recovery[key] as? NSNumber)?.doubleValue ?? 0)
        }
        func bytes(_ key: String) -> String { ByteSize.format(((recovery[key] as? NSNumber)?.uint64Value) ?? 0) }
        return
            "last recovery (\(recovery["kind"] as? String ?? "?"), epoch \(recovery["epoch"] ?? "?")): detection \(seconds("detection_seconds")), lease \(seconds("lease_seconds")), snapshot load \(seconds("snapshot_load_seconds")) (\(bytes("snapshot_bytes")) from the volume), delta \(recovery["delta_records"] ?? 0) records / \(bytes("delta_bytes")) from \(recovery["delta_peer"] as? String ?? "no peer") in \(seconds("delta_seconds")) (+\(recovery["local_records"] ?? 0) held locally), replay \(seconds("replay_seconds")), mount \(seconds("mount_seconds")), service start \(seconds("service_start_seconds")), total \(seconds("total_seconds"))"
    }
}

/// `lifeboat failover WORKLOAD`: a planned switchover to another host.
struct Failover: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Move a workload's primary to another host with no loss (a switchover).",
        discussion:
            "--agent must be the workload's current primary. It stops the service, unmounts, waits until the target holds every record, and hands the lease over; the target takes it with the next epoch and starts the service. Exit codes: 0 handed over, 1 failed (the service stays where it was), 2 bad input (not the primary, unknown host)."
    )

    @Argument(help: "The workload.") var workload: String
    @Option(help: "The host to move to (default: the peer with the most records).") var to: String?
    @Option(help: "The current primary's API URL.") var agent = "http://127.0.0.1:7440"
    @Flag(help: "Print the answer as JSON.") var json = false

    func run() throws {
        var request: [String: Any] = [:]
        if let to { request["to"] = to }
        let body = try AgentClient.request(
            agent, path: "/v1/workloads/\(workload)/failover", method: "POST", timeout: 120,
            body: try JSONSerialization.data(withJSONObject: request))
        if json {
            print(String(decoding: body, as: UTF8.self), terminator: "")
            return
        }
        let answer = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
        print(
            "workload \(workload): handed over from \(answer["from"] as? String ?? "?") to \(answer["to"] as? String ?? "?") in \(String(format: "%.3f", (answer["handover_seconds"] as? NSNumber)?.doubleValue ?? 0)) s; the new primary starts the service (see `lifeboat status`)"
        )
    }
}
