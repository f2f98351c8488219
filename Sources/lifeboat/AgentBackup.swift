import Foundation
import LifeboatAPI
import LifeboatCore

/// `lifeboat backup --agent`: the agent snapshots its workload; this prints the report.
enum AgentBackup {
    /// `POST /v1/workloads/W/snapshot`; prints the report (the snapshot id last), or with
    /// `json` the report as the agent answered it.
    static func snapshot(agent: String, workload: String, json: Bool) throws {
        let report = try AgentClient(agent).snapshot(workload: workload)
        if json {
            print(String(decoding: try AgentJSON.encode(report), as: UTF8.self))
            return
        }
        print("workload \(workload): snapshot at journal position \(report.position ?? "-") (\(report.method))")
        print(
            "read: \(ByteSize.format(report.changedBytesRead)) changed, \(ByteSize.format(report.scanBytesRead)) scanned, \(ByteSize.format(report.baseBytesRead)) of base chunks; new: \(ByteSize.format(report.newBytes))"
        )
        print("stall: \(String(format: "%.2f", report.stallMs)) ms; time: \(String(format: "%.2f", report.seconds)) s")
        print(report.snapshot)
    }
}
