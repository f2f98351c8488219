/// The body of `POST /v1/workloads/NAME/failover`: the host to hand over to, or nil for the
/// peer with the most records.
public struct FailoverRequest: Codable, Sendable, Equatable {
    public var to: String?

    public init(to: String? = nil) { self.to = to }
}

/// The answer of a switchover: who handed the workload to whom, and how long the handover took.
public struct FailoverAnswer: Codable, Sendable, Equatable {
    public var workload: String
    public var from: String
    public var to: String
    public var handoverSeconds: Double

    public init(workload: String, from: String, to: String, handoverSeconds: Double) {
        self.workload = workload
        self.from = from
        self.to = to
        self.handoverSeconds = handoverSeconds
    }
}

/// The body of every JSON error answer: the operator's one-line message and the exit code
/// `lifeboat` should end with (`{"error": ..., "exit_code": ...}`).
public struct ErrorBody: Codable, Sendable, Equatable {
    public var error: String
    public var exitCode: Int32

    public init(error: String, exitCode: Int32 = 1) {
        self.error = error
        self.exitCode = exitCode
    }
}
