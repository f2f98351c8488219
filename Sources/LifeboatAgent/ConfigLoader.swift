import Foundation
import LifeboatCluster
public import LifeboatCore
import LifeboatSystem
import Yams

/// Reads an agent's YAML config. Every mistake is an error naming the file, the line and the
/// key, and saying what is expected: unknown keys, missing keys, wrong types, bad values.
public enum ConfigLoader {
    public static let defaultPath = "/etc/lifeboat/agent.yaml"

    public static func load(path: String) throws -> AgentConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LifeboatError(
                .badInput, "cannot read config \(path)", hint: "give the agent's YAML file with --config")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw LifeboatError(.badInput, "config \(path) is not UTF-8 text")
        }
        return try parse(text, file: path)
    }

    public static func parse(_ text: String, file: String) throws -> AgentConfiguration {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else {
                throw LifeboatError(.badInput, "\(file): the config is empty", hint: "see Docs/examples/agent.yaml")
            }
            root = node
        } catch let error as YamlError {
            throw LifeboatError(.badInput, "\(file): not valid YAML: \(describe(error))")
        }
        var reader = try MappingReader(
            root, file: file, path: "",
            known: ["host", "listen", "repository", "workloads", "peer_listen", "coordinator", "peers", "log_level"])
        let host = try reader.string("host", default: ProcessInfo.processInfo.hostName)
        let listen = try reader.string("listen", default: "127.0.0.1:7440")
        try reader.check("listen", isAddress(listen), "must be HOST:PORT, e.g. 127.0.0.1:7440")
        let logLevelText = try reader.string("log_level", default: "info")
        guard let logLevel = LogLevel(rawValue: logLevelText) else {
            throw reader.error(
                "log_level",
                "'\(logLevelText)' is not a log level (known: \(LogLevel.allCases.map(\.rawValue).joined(separator: ", ")))"
            )
        }
        let repository = try reader.string("repository")
        try reader.check("repository", repository.hasPrefix("/"), "must be an absolute path")
        let cluster = try clusterConfiguration(&reader, file: file)
        guard let workloadsNode = try reader.node("workloads") else {
            throw reader.missing("workloads")
        }
        guard let sequence = workloadsNode.sequence, !sequence.isEmpty else {
            throw reader.error(at: workloadsNode, "workloads", "must be a list of at least one workload")
        }
        var workloads: [WorkloadConfiguration] = []
        for (index, node) in sequence.enumerated() {
            var item = try MappingReader(
                node, file: file, path: "workloads[\(index)].",
                known: [
                    "name", "capture", "data_dir", "backing_dir", "journal_dir", "replication", "min_sync_peers",
                    "sync_timeout", "on_sync_timeout", "lease_ttl", "service", "snapshot_every", "standby",
                ])
            let name = try item.string("name")
            try item.check(
                "name", !name.isEmpty && name.allSatisfy { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" },
                "must be letters, digits, '-' or '_'")
            try item.check("name", !workloads.contains { $0.name == name }, "'\(name)' is used by two workloads")
            let captureText = try item.string("capture", default: "fuse")
            guard let capture = WorkloadConfiguration.Capture(rawValue: captureText) else {
                throw item.error(
                    "capture",
                    "'\(captureText)' is not a capture mode (known: \(WorkloadConfiguration.Capture.allCases.map(\.rawValue).joined(separator: ", ")))"
                )
            }
            var dirs: [String] = []
            for key in ["data_dir", "backing_dir", "journal_dir"] {
                let value = try item.string(key)
                try item.check(key, value.hasPrefix("/"), "must be an absolute path")
                dirs.append(normalized(value))
            }
            var replication = ReplicationConfiguration()
            let modeText = try item.string("replication", default: "async")
            guard let mode = ReplicationConfiguration.Mode(rawValue: modeText) else {
                throw item.error("replication", "'\(modeText)' is not a replication mode (known: async, sync)")
            }
            replication.mode = mode
            let minText = try item.string("min_sync_peers", default: "1")
            guard let minPeers = Int(minText), minPeers >= 1 else {
                throw item.error("min_sync_peers", "must be a whole number of at least 1")
            }
            try item.check(
                "min_sync_peers", mode == .async || cluster == nil || minPeers <= cluster!.peers.count,
                "is \(minPeers) but only \(cluster?.peers.count ?? 0) peers are configured")
            replication.minSyncPeers = minPeers
            replication.syncTimeout = try item.duration("sync_timeout", default: 5)
            let onTimeoutText = try item.string("on_sync_timeout", default: "fail")
            guard let onTimeout = ReplicationConfiguration.OnTimeout(rawValue: onTimeoutText) else {
                throw item.error("on_sync_timeout", "'\(onTimeoutText)' is not a policy (known: fail, degrade)")
            }
            replication.onTimeout = onTimeout
            replication.leaseTTL = try item.duration("lease_ttl", default: 10)
            try item.check("lease_ttl", replication.leaseTTL >= 1, "must be at least 1s")
            if mode == .sync {
                try item.check(
                    "replication", cluster != nil, "sync needs peers: add `coordinator`, `peers` and `peer_listen`")
            }
            var service: ServiceConfiguration?
            if let serviceNode = try item.node("service") {
                var reader = try MappingReader(
                    serviceNode, file: file, path: "workloads[\(index)].service.", known: ["start", "stop", "health"])
                service = ServiceConfiguration(
                    start: try reader.string("start"),
                    stop: try reader.node("stop") == nil ? nil : try reader.string("stop"),
                    health: try reader.node("health") == nil ? nil : try reader.string("health"))
            }
            let snapshotEvery =
                try item.node("snapshot_every") == nil ? nil : try item.duration("snapshot_every", default: 0)
            if let snapshotEvery { try item.check("snapshot_every", snapshotEvery >= 1, "must be at least 1s") }
            let standbyText = try item.string("standby", default: "cold")
            guard let standby = WorkloadConfiguration.Standby(rawValue: standbyText) else {
                throw item.error("standby", "'\(standbyText)' is not a standby (known: cold, warm)")
            }
            if standby == .warm {
                try item.check(
                    "standby", cluster != nil, "warm needs peers: add `coordinator`, `peers` and `peer_listen`")
            }
            workloads.append(
                WorkloadConfiguration(
                    name: name, capture: capture, dataDir: dirs[0], backingDir: dirs[1], journalDir: dirs[2],
                    replication: replication, service: service, snapshotEvery: snapshotEvery, standby: standby))
        }
        return AgentConfiguration(
            host: host, listen: listen, repository: repository, workloads: workloads, cluster: cluster,
            logLevel: logLevel)
    }

    /// The cluster keys: all of `peer_listen`, `coordinator` and `peers`, or none of them.
    static func clusterConfiguration(_ reader: inout MappingReader, file: String) throws -> ClusterConfiguration? {
        let given = try ["peer_listen", "coordinator", "peers"].filter { try reader.node($0) != nil }
        if given.isEmpty { return nil }
        for key in ["peer_listen", "coordinator", "peers"] where !given.contains(key) {
            throw LifeboatError(
                .badInput, "\(file): \(key) is missing (a cluster needs peer_listen, coordinator and peers)",
                hint: "see Docs/examples/cluster/")
        }
        let peerListen = try reader.string("peer_listen")
        try reader.check("peer_listen", isAddress(peerListen), "must be HOST:PORT, e.g. 127.0.0.1:7441")
        let coordinator = try coordinatorSettings(try reader.node("coordinator")!, file: file)
        let peersNode = try reader.node("peers")!
        guard let sequence = peersNode.sequence else {
            throw reader.error(at: peersNode, "peers", "must be a list of peers (host, api, address)")
        }
        var peers: [PeerConfiguration] = []
        for (index, node) in sequence.enumerated() {
            var peer = try MappingReader(node, file: file, path: "peers[\(index)].", known: ["host", "api", "address"])
            let host = try peer.string("host")
            try peer.check("host", !peers.contains { $0.host == host }, "'\(host)' is listed twice")
            let api = try peer.string("api")
            try peer.check("api", isAddress(api), "must be HOST:PORT")
            let address = try peer.string("address")
            try peer.check("address", isAddress(address), "must be HOST:PORT")
            peers.append(PeerConfiguration(host: host, api: api, address: address))
        }
        return ClusterConfiguration(
            peerListen: peerListen, backend: coordinator.backend, coordinatorPath: coordinator.path, peers: peers,
            etcdEndpoints: coordinator.endpoints, etcdDialTimeout: coordinator.dialTimeout)
    }

    /// The `coordinator` mapping: `backend` (`local`, the default, or `etcd`), then `path` for
    /// local, or `endpoints`, `prefix` and `dial_timeout` for etcd.
    static func coordinatorSettings(
        _ node: Node, file: String
    ) throws -> (backend: ClusterConfiguration.Backend, path: String, endpoints: [String], dialTimeout: Double) {
        var coordinator = try MappingReader(
            node, file: file, path: "coordinator.", known: ["backend", "path", "endpoints", "prefix", "dial_timeout"])
        let backendText = try coordinator.string("backend", default: "local")
        guard let backend = ClusterConfiguration.Backend(rawValue: backendText) else {
            throw coordinator.error("backend", "'\(backendText)' is not a coordinator backend (known: local, etcd)")
        }
        let others = backend == .local ? ["endpoints", "prefix", "dial_timeout"] : ["path"]
        for key in others where try coordinator.node(key) != nil {
            throw coordinator.error(key, "does not apply to backend \(backend.rawValue)")
        }
        if backend == .local {
            let path = try coordinator.string("path")
            try coordinator.check("path", path.hasPrefix("/"), "must be an absolute path")
            return (backend, normalized(path), [], 2)
        }
        guard let list = try coordinator.node("endpoints") else { throw coordinator.missing("endpoints") }
        guard let items = list.sequence, !items.isEmpty else {
            throw coordinator.error(at: list, "endpoints", "must be a list of etcd client URLs (http://HOST:PORT)")
        }
        let endpoints = try items.enumerated().map { index, item -> String in
            guard let text = item.string, (try? EtcdClient.normalize(text)) != nil else {
                throw coordinator.error(
                    at: item, "endpoints[\(index)]", "must be an etcd client URL such as http://10.0.0.1:2379")
            }
            return text
        }
        let prefix = normalized(try coordinator.string("prefix", default: "/lifeboat"))
        try coordinator.check("prefix", prefix.hasPrefix("/"), "must be a key path starting with /, e.g. /lifeboat")
        let dialTimeout = try coordinator.duration("dial_timeout", default: 2)
        try coordinator.check("dial_timeout", dialTimeout > 0, "must be more than 0")
        return (backend, prefix, endpoints, dialTimeout)
    }

    /// True for `HOST:PORT` with a port other than 0 (`HostPort`).
    static func isAddress(_ text: String) -> Bool {
        guard let address = HostPort(parsing: text) else { return false }
        return address.port != 0
    }

    /// Drops trailing slashes, so `/a/b/` and `/a/b` are the same dir.
    static func normalized(_ path: String) -> String {
        var path = path
        while path.count > 1 && path.hasSuffix("/") { path.removeLast() }
        return path
    }

    static func describe(_ error: YamlError) -> String {
        switch error {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _):
            return "line \(mark.line): \(problem)" + (context.map { " \($0.text)" } ?? "")
        default:
            return "\(error)"
        }
    }
}

/// Reads the keys of one YAML mapping; a key that is not among the known ones (a typo, or a
/// key of a newer version) is refused when the mapping is opened.
struct MappingReader {
    let file: String
    let path: String
    let node: Node
    private var entries: [(key: String, keyNode: Node, value: Node)] = []

    /// Reads a mapping whose keys must be among `known`: an unknown key (a typo, or a key of a
    /// newer version) is reported first, before a missing key it may stand for.
    init(_ node: Node, file: String, path: String, known: [String]) throws {
        self.file = file
        self.path = path
        self.node = node
        guard let mapping = node.mapping else {
            throw LifeboatError(
                .badInput,
                "\(file):\(node.mark?.line ?? 0): \(path.isEmpty ? "the config" : String(path.dropLast())) must be a mapping of keys to values"
            )
        }
        for (key, value) in mapping {
            guard let name = key.string else {
                throw LifeboatError(.badInput, "\(file):\(key.mark?.line ?? 0): a key must be a string")
            }
            if entries.contains(where: { $0.key == name }) {
                throw LifeboatError(.badInput, "\(file):\(key.mark?.line ?? 0): \(path)\(name) is given twice")
            }
            entries.append((name, key, value))
        }
        if let unknown = entries.first(where: { !known.contains($0.key) }) {
            throw LifeboatError(
                .badInput,
                "\(file):\(unknown.keyNode.mark?.line ?? 0): unknown key \(path)\(unknown.key) (known here: \(known.sorted().joined(separator: ", ")))"
            )
        }
    }

    mutating func node(_ key: String) throws -> Node? {
        return entries.first { $0.key == key }?.value
    }

    mutating func string(_ key: String, default fallback: String? = nil) throws -> String {
        guard let value = try node(key) else {
            if let fallback { return fallback }
            throw missing(key)
        }
        guard case .scalar(let scalar) = value,
            value.tag.description != Tag.Name.null.rawValue || !scalar.string.isEmpty
        else {
            throw error(at: value, key, "must be a text value")
        }
        return scalar.string
    }

    /// A duration such as `2s`, `500ms`, `1m` or a plain number of seconds.
    mutating func duration(_ key: String, default fallback: Double) throws -> Double {
        guard try node(key) != nil else { return fallback }
        let text = try string(key).trimmingCharacters(in: .whitespaces)
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            if let value = Double(text.dropLast(suffix.count)), value >= 0 { return value * factor }
        }
        if let value = Double(text), value >= 0 { return value }
        throw error(key, "must be a duration such as 2s, 500ms or 1m (got '\(text)')")
    }

    func check(_ key: String, _ condition: Bool, _ problem: String) throws {
        if !condition {
            let value = entries.first { $0.key == key }?.value
            throw error(at: value ?? node, key, problem)
        }
    }

    func missing(_ key: String) -> LifeboatError {
        LifeboatError(
            .badInput, "\(file):\(node.mark?.line ?? 0): \(path)\(key) is missing", hint: "see Docs/examples/agent.yaml"
        )
    }

    func error(at value: Node? = nil, _ key: String, _ problem: String) -> LifeboatError {
        let line = (value ?? entries.first { $0.key == key }?.value ?? node).mark?.line ?? 0
        return LifeboatError(.badInput, "\(file):\(line): \(path)\(key) \(problem)")
    }

}
