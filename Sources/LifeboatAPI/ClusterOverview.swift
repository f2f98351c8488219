public import Foundation
import LifeboatCore

/// Every host of a cluster as its agent reports it: what `lifeboat status` prints.
///
/// Built by `AgentClient.overview()`: the asked agent first, then each peer it lists. A host
/// that does not answer is kept, unreachable, with the error that says why.
public struct ClusterOverview: Codable, Sendable, Equatable {
    /// One host: its status, or why it did not answer.
    public struct Host: Codable, Sendable, Equatable {
        public var host: String
        public var reachable: Bool
        public var status: AgentStatus?
        public var error: String?

        /// A host that answered.
        public init(host: String, status: AgentStatus) {
            self.host = host
            self.reachable = true
            self.status = status
            self.error = nil
        }

        /// A host that did not answer, and why.
        public init(host: String, error: String) {
            self.host = host
            self.reachable = false
            self.status = nil
            self.error = error
        }
    }

    public var hosts: [Host]

    public init(hosts: [Host]) { self.hosts = hosts }

    /// `lifeboat status --json`: the API's coder, but with slashes escaped (`\/`) as this
    /// output has always been written.
    public func json() throws -> Data {
        let encoder = AgentJSON.encoder()
        encoder.outputFormatting.remove(.withoutEscapingSlashes)
        return try encoder.encode(self)
    }

    /// `lifeboat status`: one row per host and workload, then one note per unreachable host,
    /// alert and last recovery. Lines end with a newline.
    public func table() -> String {
        var rows = [["HOST", "WORKLOAD", "ROLE", "EPOCH", "POSITION", "DURABLE", "LAG", "SERVICE", "NEWEST SNAPSHOT"]]
        var notes: [String] = []
        func reference(_ snapshot: String, _ position: String?) -> String {
            "\(snapshot.prefix(8)) at \(position ?? "-")"
        }
        for host in hosts {
            switch host.status {
            case nil:
                rows.append([host.host, "-", "unreachable", "-", "-", "-", "-", "-", "-"])
                notes.append("\(host.host): \(host.error ?? "no answer")")
            case .standalone(let status):
                for workload in status.workloads {
                    rows.append([
                        host.host, workload.name, WorkloadRole.standalone.rawValue, "\(workload.epoch)",
                        workload.position ?? "-", workload.durablePosition ?? "-", "-",
                        workload.mounted ? "mounted" : "-",
                        workload.lastSnapshot.map { reference($0.snapshot, $0.position) } ?? "-",
                    ])
                }
            case .cluster(let status):
                for workload in status.workloads {
                    let lag =
                        workload.peers.isEmpty
                        ? "-"
                        : workload.peers.map { peer in
                            "\(peer.host)=\(peer.lag.map { "\($0)" } ?? (peer.connected ? "?" : "down"))"
                        }.joined(separator: ",")
                    let snapshot =
                        workload.newestSnapshot.map { reference($0.snapshot, $0.position) }
                        ?? workload.lastSnapshot.map { reference($0.snapshot, $0.position) }
                    rows.append([
                        host.host, workload.name, workload.role.rawValue, "\(workload.epoch)",
                        workload.position ?? "-", workload.durablePosition ?? "-", lag, workload.service.state,
                        snapshot ?? "-",
                    ])
                    if let alert = workload.alert { notes.append("\(host.host): ALERT \(alert)") }
                    if let recovery = workload.lastRecovery {
                        notes.append("\(host.host): " + Self.describe(recovery))
                    }
                }
            }
        }
        let widths = (0..<rows[0].count).map { column in rows.map { $0[column].count }.max() ?? 0 }
        var out = ""
        for row in rows {
            out +=
                row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(
                    separator: "  "
                ).trimmingCharacters(in: .whitespaces) + "\n"
        }
        for note in notes { out += note + "\n" }
        return out
    }

    /// One line naming every part of a recovery: its time, and where its bytes came from.
    public static func describe(_ recovery: RecoveryReport) -> String {
        func seconds(_ value: Double) -> String { String(format: "%.3f s", value) }
        return
            "last recovery (\(recovery.kind.rawValue), epoch \(recovery.epoch)): detection \(seconds(recovery.detectionSeconds)), lease \(seconds(recovery.leaseSeconds)), snapshot load \(seconds(recovery.snapshotLoadSeconds)) (\(ByteSize.format(recovery.snapshotBytes)) from the volume), delta \(recovery.deltaRecords) records / \(ByteSize.format(UInt64(recovery.deltaBytes))) from \(recovery.deltaPeer ?? "no peer") in \(seconds(recovery.deltaSeconds)) (+\(recovery.localRecords) held locally), replay \(seconds(recovery.replaySeconds)), mount \(seconds(recovery.mountSeconds)), service start \(seconds(recovery.serviceStartSeconds)), total \(seconds(recovery.totalSeconds))"
    }
}

extension AgentClient {
    /// Asks this agent for its status, then every peer it lists (each with `peerTimeout`).
    ///
    /// Throws only when this agent does not answer; a peer that does not is listed unreachable.
    public func overview(timeout: Double = 5, peerTimeout: Double = 2) throws -> ClusterOverview {
        let own = try status(timeout: timeout)
        var hosts = [ClusterOverview.Host(host: own.host, status: own)]
        for peer in own.peers {
            do {
                hosts.append(.init(host: peer.host, status: try AgentClient(peer.api).status(timeout: peerTimeout)))
            } catch {
                hosts.append(.init(host: peer.host, error: "\(error)"))
            }
        }
        return ClusterOverview(hosts: hosts)
    }
}
