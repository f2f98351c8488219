public import LifeboatCore

/// What went wrong talking to etcd, as one line an operator can act on.
public struct EtcdError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// No endpoint answered (refused, timed out, 503): the message names each one and why.
        case unreachable
        /// The lease is not found: it expired or was revoked (a keep-alive answered without a
        /// TTL, or etcd said "requested lease not found").
        case leaseGone(id: Int64)
        /// The revision asked for was compacted away; re-read, then watch from the new revision.
        case compacted(revision: Int64)
        /// etcd refused the request (bad request, permission, too large …).
        case rejected(code: Int)
        /// The answer could not be read as etcd's JSON.
        case badResponse
    }

    public var kind: Kind
    public var message: String
    public var hint: String?

    public init(_ kind: Kind, _ message: String, hint: String? = nil) {
        self.kind = kind
        self.message = message
        self.hint = hint
    }

    public var description: String {
        if let hint { return "\(message); \(hint)" }
        return message
    }

    /// True when the lease named is gone.
    public var isLeaseGone: Bool {
        if case .leaseGone = kind { return true }
        return false
    }
}

extension LifeboatError {
    /// The etcd error as the agent reports it (the cause kept as `underlying`).
    public init(_ error: EtcdError) {
        self.init(.operationFailed, error.message, hint: error.hint, underlying: error)
    }
}
