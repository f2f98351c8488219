import Glibc

/// Nanoseconds on the monotonic clock: CLOCK_BOOTTIME, which never jumps with the wall clock
/// and keeps running while the process is stopped or the machine sleeps (so a lease or lock
/// deadline measured on it has passed when a paused process wakes up).
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_BOOTTIME, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Seconds on the monotonic clock (see `monotonicNanoseconds`): for durations and
/// deadlines, never for dates.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_BOOTTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
