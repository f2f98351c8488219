/// Formats byte counts for people: binary units, three significant digits.
public enum ByteSize {
    /// `1536` → `"1.50 KiB"`; exact bytes below 1 KiB.
    public static func format(_ bytes: UInt64) -> String {
        let units = ["KiB", "MiB", "GiB", "TiB", "PiB"]
        if bytes < 1024 { return "\(bytes) B" }
        var value = Double(bytes)
        var unit = -1
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        let digits = value >= 100 ? 0 : (value >= 10 ? 1 : 2)
        return "\(formatFixed(value, digits: digits)) \(units[unit])"
    }

    /// Parses `"512"`, `"64K"`, `"16MiB"`, `"1G"`; nil when malformed.
    public static func parse(_ text: String) -> UInt64? {
        let trimmed = text.trimmingWhitespace()
        let digits = trimmed.prefix { $0.isNumber }
        guard let base = UInt64(digits) else { return nil }
        let suffix = trimmed.dropFirst(digits.count).lowercased()
        let shifts: [String: UInt64] = [
            "": 0, "b": 0, "k": 10, "kb": 10, "kib": 10, "m": 20, "mb": 20, "mib": 20,
            "g": 30, "gb": 30, "gib": 30, "t": 40, "tb": 40, "tib": 40,
        ]
        guard let shift = shifts[suffix] else { return nil }
        let (result, overflow) = base.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? nil : result
    }

    /// Fixed-point formatting without Foundation.
    public static func formatFixed(_ value: Double, digits: Int) -> String {
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let scaled = (value * scale).rounded()
        let whole = Int64(scaled / scale)
        if digits == 0 { return "\(whole)" }
        let fraction = Int64(scaled) - whole * Int64(scale)
        var fractionText = "\(abs(fraction))"
        while fractionText.count < digits { fractionText = "0" + fractionText }
        return "\(whole).\(fractionText)"
    }
}

extension String {
    /// The string without leading and trailing spaces, tabs and newlines.
    public func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}
