import CLifeboatPosix
public import Glibc

/// Times for utimensat(2) and futimens(2).
public enum FileTimes {
    /// UTIME_OMIT, which Swift does not import: "leave this time as it is".
    public static let omit = lifeboat_utime_omit()

    /// The timespec that leaves a time unchanged.
    public static var omitted: Glibc.timespec { Glibc.timespec(tv_sec: 0, tv_nsec: omit) }
}
