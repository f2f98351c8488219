import Foundation
import Glibc
import LifeboatCluster
import XCTest

/// Real etcd members on loopback for the tests: `/usr/bin/etcd` (Debian's `etcd-server`), one
/// data dir each under /dev/shm (fast fsync), free ports, killed by their own pid and the dirs
/// removed by `stop()`, which every test calls in its teardown.
final class EtcdServers: @unchecked Sendable {
    // Touched only by the test's own thread (set-up, the test body, teardown).
    struct Member {
        let name: String
        let clientPort: Int
        let peerPort: Int
        let dataDir: String
        var process: Process?
        var client: String { "http://127.0.0.1:\(clientPort)" }
    }

    static let binary = "/usr/bin/etcd"
    let root: String
    private(set) var members: [Member]

    /// Members that form one cluster; none runs before `start`.
    init(count: Int) throws {
        guard FileManager.default.isExecutableFile(atPath: EtcdServers.binary) else {
            throw XCTSkip("\(EtcdServers.binary) is missing: install etcd-server (scripts/setup.sh does)")
        }
        var template = Array("/dev/shm/lifeboat-etcd-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw LifeboatTestError("cannot create a temp dir under /dev/shm: \(String(cString: strerror(errno)))")
        }
        root = String(cString: made)
        let ports = try freePorts(2 * count)
        members = (0..<count).map { index in
            Member(
                name: "m\(index)", clientPort: ports[2 * index], peerPort: ports[2 * index + 1],
                dataDir: "\(String(cString: made))/m\(index)", process: nil)
        }
    }

    var endpoints: [String] { members.map(\.client) }

    /// Starts members (all by default) and waits until each answers with a leader.
    func start(_ indexes: [Int]? = nil) async throws {
        let cluster = members.map { "\($0.name)=http://127.0.0.1:\($0.peerPort)" }.joined(separator: ",")
        let chosen = indexes ?? Array(members.indices)
        for index in chosen {
            let member = members[index]
            let process = Process()
            process.executableURL = URL(fileURLWithPath: EtcdServers.binary)
            process.arguments = [
                "--name", member.name, "--data-dir", member.dataDir,
                "--listen-client-urls", member.client, "--advertise-client-urls", member.client,
                "--listen-peer-urls", "http://127.0.0.1:\(member.peerPort)",
                "--initial-advertise-peer-urls", "http://127.0.0.1:\(member.peerPort)",
                "--initial-cluster", cluster, "--initial-cluster-state", "new", "--initial-cluster-token", root,
                "--heartbeat-interval", "50", "--election-timeout", "500",
                "--logger", "zap", "--log-outputs", "stderr", "--log-level", "warn",
            ]
            _ = FileManager.default.createFile(atPath: "\(root)/\(member.name).log", contents: nil)
            let log = try FileHandle(forWritingTo: URL(fileURLWithPath: "\(root)/\(member.name).log"))
            log.seekToEndOfFile()
            process.standardOutput = log
            process.standardError = log
            process.standardInput = FileHandle.nullDevice
            try process.run()
            members[index].process = process
        }
        let probe = try EtcdClient(.init(endpoints: endpoints, dialTimeout: 0.5, requestTimeout: 1))
        do {
            for index in chosen { try await waitReady(index, probe) }
        } catch {
            try? await probe.shutdown()
            throw error
        }
        try await probe.shutdown()
    }

    private func waitReady(_ index: Int, _ probe: EtcdClient) async throws {
        let deadline = Date().addingTimeInterval(20)
        while true {
            if let status = try? await probe.status(of: members[index].client), status.leader != 0 { return }
            guard members[index].process?.isRunning == true else {
                throw LifeboatTestError("etcd \(members[index].name) exited: \(logTail(index))")
            }
            guard Date() < deadline else {
                throw LifeboatTestError("etcd \(members[index].name) did not become ready: \(logTail(index))")
            }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
    }

    /// SIGKILLs the member by its pid and reaps it.
    func kill(_ index: Int) {
        guard let process = members[index].process else { return }
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        members[index].process = nil
    }

    /// Kills every member and removes the data dirs.
    func stop() {
        for index in members.indices { kill(index) }
        try? FileManager.default.removeItem(atPath: root)
    }

    func logTail(_ index: Int) -> String {
        let text = (try? String(contentsOfFile: "\(root)/\(members[index].name).log", encoding: .utf8)) ?? ""
        return String(text.suffix(600))
    }
}

/// Ports no one listens on now (the sockets bound to find them are closed again).
func freePorts(_ count: Int) throws -> [Int] {
    var sockets: [Int32] = []
    defer { sockets.forEach { close($0) } }
    return try (0..<count).map { _ in
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw LifeboatTestError("socket: \(String(cString: strerror(errno)))") }
        sockets.append(fd)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { generic in
                bind(fd, generic, length) == 0 && getsockname(fd, generic, &length) == 0
            }
        }
        guard bound else { throw LifeboatTestError("bind: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

struct LifeboatTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
