/// A `HOST:PORT` address, as the config, the peer protocol and the API name them.
///
/// The port is what follows the last colon (so `[::1]:7440` keeps its brackets in `host`);
/// the host must not be empty and the port must be 0-65535. Callers word their own error.
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `HOST:PORT`; nil when `text` is not one.
    public init?(parsing text: String) {
        guard let colon = text.lastIndex(of: ":"), colon != text.startIndex,
            let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port)
        else { return nil }
        self.init(host: String(text[..<colon]), port: port)
    }

    public var description: String { "\(host):\(port)" }
}
