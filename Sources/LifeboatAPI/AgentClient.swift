public import Foundation
import LifeboatCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A typed client of one agent's HTTP API (Docs/agent.md).
///
/// Every call blocks until the agent answers or the timeout passes. A non-2xx answer throws a
/// `LifeboatError` carrying the agent's message and exit code (`.badInput` for 404); an agent
/// that cannot be reached throws one line naming its URL.
public struct AgentClient: Sendable {
    /// The agent's URL as the operator gave it (`http://127.0.0.1:7440`, or without the scheme).
    public let agent: String
    /// The URL requests go to: `http://` added when no scheme is given, trailing slashes dropped.
    public let base: String

    public init(_ agent: String) {
        self.agent = agent
        var base = agent
        while base.hasSuffix("/") { base.removeLast() }
        if !base.contains("://") { base = "http://" + base }
        self.base = base
    }

    /// Whether the agent is ready (`GET /readyz`), and its one-line reason when it is not.
    public struct Readiness: Sendable, Equatable {
        public var ready: Bool
        /// The agent's answer, e.g. `workload redis is recovering`.
        public var message: String

        public init(ready: Bool, message: String) {
            self.ready = ready
            self.message = message
        }
    }

    /// `GET /v1/status`: the clustered or standalone status.
    public func status(timeout: Double = 5) throws -> AgentStatus {
        let body = try request("/v1/status", method: "GET", timeout: timeout)
        guard let status = try? AgentJSON.decode(AgentStatus.self, from: body) else {
            throw LifeboatError(.operationFailed, "the agent at \(agent) answered something that is not a status")
        }
        return status
    }

    /// `POST /v1/workloads/WORKLOAD/snapshot`: takes a snapshot now and answers its report.
    public func snapshot(workload: String, timeout: Double = 3600) throws -> SnapshotReport {
        let body = try request(Self.workloadPath(workload, "snapshot"), method: "POST", timeout: timeout)
        guard let report = try? AgentJSON.decode(SnapshotReport.self, from: body) else {
            throw LifeboatError(
                .operationFailed, "the agent at \(agent) answered something that is not a snapshot report")
        }
        return report
    }

    /// `POST /v1/workloads/WORKLOAD/failover`: a switchover from this primary to `to` (nil:
    /// the peer with the most records).
    public func failover(workload: String, to: String?, timeout: Double = 120) throws -> FailoverAnswer {
        let body = try request(
            Self.workloadPath(workload, "failover"), method: "POST", timeout: timeout,
            body: AgentJSON.encode(FailoverRequest(to: to)))
        guard let answer = try? AgentJSON.decode(FailoverAnswer.self, from: body) else {
            throw LifeboatError(
                .operationFailed, "the agent at \(agent) answered something that is not a failover answer")
        }
        return answer
    }

    /// `GET /livez`: returns when the agent's process answers.
    public func livez(timeout: Double = 5) throws {
        _ = try request("/livez", method: "GET", timeout: timeout)
    }

    /// `GET /readyz`: a 503 is an answer here (not ready, with the agent's reason), not an error.
    public func readyz(timeout: Double = 5) throws -> Readiness {
        let (status, body) = try send("/readyz", method: "GET", timeout: timeout, body: nil)
        let message = String(decoding: body, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        if status == 503 { return Readiness(ready: false, message: message) }
        _ = try Self.check(status: status, body: body, base: base)
        return Readiness(ready: true, message: message)
    }

    /// One request; the body of a 2xx answer, or an error carrying the agent's message and
    /// exit code.
    public func request(_ path: String, method: String, timeout: Double, body: Data? = nil) throws -> Data {
        let (status, answer) = try send(path, method: method, timeout: timeout, body: body)
        return try Self.check(status: status, body: answer, base: base)
    }

    /// The body of a 2xx answer; otherwise the agent's error as a `LifeboatError`.
    ///
    /// A JSON error body (`ErrorBody`) gives the message and the exit code; any other body is
    /// the message itself, with exit code 1. A 404 is always `.badInput`.
    static func check(status: Int?, body: Data, base: String) throws -> Data {
        if let status, (200..<300).contains(status) { return body }
        let answer = try? AgentJSON.decode(ErrorAnswer.self, from: body)
        let message = answer?.error ?? String(decoding: body, as: UTF8.self)
        let code = answer?.exitCode ?? 1
        throw LifeboatError(
            status == 404 ? .badInput : (FailureKind(rawValue: code) ?? .operationFailed),
            "the agent at \(base) answered \(status ?? 0): \(message.trimmingCharacters(in: .whitespacesAndNewlines))"
        )
    }

    /// An error body read leniently: a field that is missing falls back to the raw body or exit code 1.
    private struct ErrorAnswer: Decodable {
        var error: String?
        var exitCode: Int32?
    }

    static func workloadPath(_ workload: String, _ action: String) -> String {
        "/v1/workloads/\(workload.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? workload)/\(action)"
    }

    /// Sends one request and waits; throws only when there is no answer (or the URL is bad).
    private func send(_ path: String, method: String, timeout: Double, body: Data?) throws -> (Int?, Data) {
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
        // URLSession's timeout is an idle timeout and does not bound a connect to a host that
        // never answers (a cut link): bound the whole request here.
        if done.wait(timeout: .now() + timeout) == .timedOut {
            task.cancel()
            throw LifeboatError(
                .operationFailed, "the agent at \(base) did not answer within \(Self.seconds(timeout)) s",
                hint: "is lifeboatd running there, and is its host reachable?")
        }
        let (data, status, error) = box.get()
        if let error {
            throw LifeboatError(
                .operationFailed, "cannot reach the agent at \(base): \(error.localizedDescription)",
                hint: "is lifeboatd running and listening there?")
        }
        return (status, data ?? Data())
    }

    static func seconds(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(format: "%.1f", value)
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
