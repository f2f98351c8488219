import Foundation
import LifeboatSystem

/// The two clocks the failover core reads: injected, so a unit test can move time by hand.
///
/// `monotonic` times the fencing deadline, renewals, waits and recovery steps (it never jumps);
/// `wall` is what lease expiries are written in, because every host of a cluster reads them.
public protocol AgentClock: Sendable {
    /// Seconds on the monotonic clock (an arbitrary origin; only differences mean something).
    var monotonic: Double { get }
    /// Seconds since 1970 (UTC).
    var wall: Double { get }
}

/// The real clocks: time since boot, and `Date()`.
public struct SystemClock: AgentClock {
    public init() {}
    public var monotonic: Double { monotonicSeconds() }
    public var wall: Double { Date().timeIntervalSince1970 }
}

func fmt(_ seconds: Double) -> String { String(format: "%.3f", seconds) }
