import Foundation
public import LifeboatCore
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
            root, file: file, path: "", known: ["host", "listen", "repository", "workloads"])
        let host = try reader.string("host", default: ProcessInfo.processInfo.hostName)
        let listen = try reader.string("listen", default: "127.0.0.1:7440")
        try reader.check("listen", isAddress(listen), "must be HOST:PORT, e.g. 127.0.0.1:7440")
        let repository = try reader.string("repository")
        try reader.check("repository", repository.hasPrefix("/"), "must be an absolute path")
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
                known: ["name", "capture", "data_dir", "backing_dir", "journal_dir"])
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
            workloads.append(
                WorkloadConfiguration(
                    name: name, capture: capture, dataDir: dirs[0], backingDir: dirs[1], journalDir: dirs[2]))
        }
        return AgentConfiguration(host: host, listen: listen, repository: repository, workloads: workloads)
    }

    static func isAddress(_ text: String) -> Bool {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]) else {
            return false
        }
        return colon != text.startIndex && (1...65535).contains(port)
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
