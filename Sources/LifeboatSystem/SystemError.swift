import Glibc
public import LifeboatCore
public import SystemPackage

/// A failed system call: which call, on which path, and the errno it returned.
///
/// Callers decide by the errno (`error.errno == .noSpace`, or `error.code == ENOSPC` where
/// swift-system is not imported), never by message text. EINTR never reaches a caller: every
/// wrapper in this module retries it.
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The call that failed (`write`, `fsync`, `rename`, ...).
    public var call: String
    /// The path it was made on (for a descriptor, the file it was opened from).
    public var path: String
    public var errno: Errno

    public init(_ call: String, _ path: String, _ errno: Errno) {
        self.call = call
        self.path = path
        self.errno = errno
    }

    /// An error for the C errno `code`.
    public init(_ call: String, _ path: String, code: Int32) { self.init(call, path, Errno(rawValue: code)) }

    /// The errno as the C value.
    public var code: Int32 { errno.rawValue }

    /// True when the path does not exist (ENOENT).
    public var isNotFound: Bool { errno == .noSuchFileOrDirectory }

    /// True when the device or the user's quota is full (ENOSPC, EDQUOT).
    public var isNoSpace: Bool { errno == .noSpace || errno == .diskQuotaExceeded }

    /// The action as operator messages word it ("writing", "syncing", "renaming to" ...).
    public var action: String {
        switch call {
        case "write", "pwrite": "writing"
        case "read", "pread": "reading"
        case "fsync": "syncing"
        case "fsync directory": "syncing directory"
        case "rename": "renaming to"
        case "open": "opening"
        case "create": "creating"
        case "mkdir": "creating directory"
        case "unlink": "removing"
        case "opendir", "readdir": "listing"
        case "access", "stat", "lstat", "fstat": "inspecting"
        default: call
        }
    }

    public var description: String { "\(call) \(path) failed: \(errno)" }
}

/// The text of an errno, as strerror words it.
public func errnoText(_ code: Int32) -> String { String(cString: strerror(code)) }

extension LifeboatError {
    /// The error an operator sees for a failed call, `underlying` set to it.
    ///
    /// No space: "no space left on device while ACTION PATH" with `spaceHint`. With
    /// `adviseAccess`, permission and read-only failures get their own sentences too; any
    /// other errno reads "ACTION PATH failed: REASON" with `hint`. `action` and `path`
    /// default to the call's.
    public init(
        _ error: SystemError, action: String? = nil, path: String? = nil,
        spaceHint: String = "free space on that filesystem and run the command again", adviseAccess: Bool = true,
        hint: String? = nil
    ) {
        let action = action ?? error.action
        let path = path ?? error.path
        switch error.errno {
        case .noSpace, .diskQuotaExceeded:
            self.init(
                .operationFailed, "no space left on device while \(action) \(path)", hint: spaceHint, underlying: error)
        case .permissionDenied where adviseAccess, .notPermitted where adviseAccess:
            self.init(
                .operationFailed, "permission denied while \(action) \(path)",
                hint: "run as a user that may write there", underlying: error)
        case .readOnlyFileSystem where adviseAccess:
            self.init(.operationFailed, "read-only filesystem while \(action) \(path)", hint: hint, underlying: error)
        default:
            self.init(
                .operationFailed, "\(action) \(path) failed: \(errnoText(error.code))", hint: hint, underlying: error)
        }
    }
}

/// Errors that carry the errno of the call that failed (SwiftNIO's `IOError` conforms in
/// LifeboatCluster), so they are matched by errno rather than by their text.
public protocol ErrnoCarrying {
    var errnoCode: Int32 { get }
}

/// True when `error` (a `SystemError`, or an `ErrnoCarrying` one such as NIO's bind error)
/// failed with EADDRINUSE.
public func isAddressInUse(_ error: any Error) -> Bool {
    if let error = error as? SystemError { return error.errno == .addressInUse }
    if let error = error as? any ErrnoCarrying { return error.errnoCode == EADDRINUSE }
    return false
}
