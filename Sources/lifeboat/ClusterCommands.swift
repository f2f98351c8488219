import ArgumentParser
import Foundation
import LifeboatAPI

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
        let overview = try AgentClient(agent).overview()
        if json {
            print(String(decoding: try overview.json(), as: UTF8.self))
            return
        }
        print(overview.table(), terminator: "")
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
        let answer = try AgentClient(agent).failover(workload: workload, to: to)
        if json {
            print(String(decoding: try AgentJSON.encode(answer), as: UTF8.self))
            return
        }
        print(
            "workload \(workload): handed over from \(answer.from) to \(answer.to) in \(String(format: "%.3f", answer.handoverSeconds)) s; the new primary starts the service (see `lifeboat status`)"
        )
    }
}
