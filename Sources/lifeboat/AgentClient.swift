import Foundation
import FoundationNetworking
import LifeboatCore

/// Talks to an agent's HTTP API (Docs/agent.md).
enum AgentClient {
    /// `POST /v1/workloads/W/snapshot`; prints the report (the snapshot id last).
    static func snapshot(agent: String, workload: String, json: Bool) throws {
        let body = try request(
            agent,
            path:
                "/v1/workloads/\(workload.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? workload)/snapshot",
            method: "POST", timeout: 3600)
        if json {
            print(String(decoding: body, as: UTF8.self), terminator: "")
            return
        }
        guard let report = try? JSONSerialization.jsonObject(with: body) as? [String: Any],
            let id = report["snapshot"] as? String
        else {
            throw LifeboatError(
                .operationFailed, "the agent at \(agent) answered something that is not a snapshot report")
        }
        func number(_ key: String) -> Double { (report[key] as? NSNumber)?.doubleValue ?? 0 }
        print(
            "workload \(workload): snapshot at journal position \(report["position"] as? String ?? "-") (\(report["method"] as? String ?? "?"))"
        )
        print(
            "read: \(ByteSize.format(UInt64(number("changed_bytes_read")))) changed, \(ByteSize.format(UInt64(number("scan_bytes_read")))) scanned, \(ByteSize.format(UInt64(number("base_bytes_read")))) of base chunks; new: \(ByteSize.format(UInt64(number("new_bytes"))))"
        )
        print(
            "stall: \(String(format: "%.2f", number("stall_ms"))) ms; time: \(String(format: "%.2f", number("seconds"))) s"
        )
        print(id)
    }

    /// One request; the body of a 2xx answer, or an error carrying the agent's message and
    /// exit code.
    static func request(
        _ agent: String, path: String, method: String, timeout: Double, body: Data? = nil
    ) throws
        -> Data
    {
        var base = agent
        while base.hasSuffix("/") { base.removeLast() }
        if !base.contains("://") { base = "http://" + base }
        guard let url = URL(string: base + path) else {
            throw LifeboatError(.badInput, "\(agent) is not an agent URL", hint: "write it like http://127.0.0.1:7440")
        }
        var request = URLRequest(url: url, timeoutInterval: timeout)
        request.httpMethod = method
        if let body {
            request.httpBody = body
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox()
        let task = URLSession.shared.dataTask(with: request) { data, response, error in
            box.set(data: data, status: (response as? HTTPURLResponse)?.statusCode, error: error)
            done.signal()
        }
        task.resume()
        done.wait()
        let (data, status, error) = box.get()
        if let error {
            throw LifeboatError(
                .operationFailed, "cannot reach the agent at \(base): \(error.localizedDescription)",
                hint: "is lifeboatd running and listening there?")
        }
        let body = data ?? Data()
        guard let status, (200..<300).contains(status) else {
            let answer = (try? JSONSerialization.jsonObject(with: body)) as? [String: Any]
            let message = answer?["error"] as? String ?? String(decoding: body, as: UTF8.self)
            let code = (answer?["exit_code"] as? NSNumber)?.int32Value ?? 1
            throw LifeboatError(
                status == 404 ? .badInput : (FailureKind(rawValue: code) ?? .operationFailed),
                "the agent at \(base) answered \(status ?? 0): \(message.trimmingCharacters(in: .whitespacesAndNewlines))"
            )
        }
        return body
    }

    /// The answer of a request, handed from URLSession's thread to the waiting one.
    private final class ResultBox: @unchecked Sendable {
        // @unchecked: written once before the semaphore is signalled, read after the wait.
        private var data: Data?
        private var status: Int?
        private var error: (any Error)?
        func set(data: Data?, status: Int?, error: (any Error)?) {
            self.data = data
            self.status = status
            self.error = error
        }
        func get() -> (Data?, Int?, (any Error)?) { (data, status, error) }
    }
}
