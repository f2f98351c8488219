/// What kind of failure an operation met; each kind maps to one documented exit code.
public enum FailureKind: Int32, Sendable, CaseIterable {
    /// The operation failed (I/O error, no space, fsync failure); nothing acknowledged was lost.
    case operationFailed = 1
    /// Bad usage or input: unknown snapshot, ambiguous prefix, target not empty, bad path.
    case badInput = 2
    /// A backup committed, but some source files could not be read.
    case partialBackup = 3
    /// Damage was found, or data could not be verified and was not written.
    case integrity = 4
    /// The repository is missing or is not a Lifeboat repository.
    case noRepository = 10
    /// Another operation holds a conflicting lock.
    case locked = 11
    /// The repository's format version is not supported.
    case unsupportedFormat = 12
    /// Interrupted by a signal.
    case interrupted = 130

    /// The process exit code for this kind of failure.
    public var exitCode: Int32 { rawValue }
}

/// An error an operator can act on: what failed, where, and what to do.
///
/// `message` is one line naming the object (path, snapshot, pack) and the problem;
/// `hint` says what to do about it. `underlying` keeps the original cause for logs.
public struct LifeboatError: Error, Sendable, CustomStringConvertible {
    public var kind: FailureKind
    public var message: String
    public var hint: String?
    public var underlying: (any Error & Sendable)?

    public init(_ kind: FailureKind, _ message: String, hint: String? = nil, underlying: (any Error & Sendable)? = nil)
    {
        self.kind = kind
        self.message = message
        self.hint = hint
        self.underlying = underlying
    }

    /// The one-line form shown to operators.
    public var description: String {
        if let hint { return "\(message); \(hint)" }
        return message
    }
}
