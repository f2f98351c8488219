import Foundation
import Glibc
import LifeboatAPI
import LifeboatCore
import Synchronization
import XCTest

/// The client against a real HTTP server on loopback that answers canned responses.
final class AgentClientTests: XCTestCase {
    func testStatusSnapshotAndFailoverDecodeTheModels() throws {
        let server = try CannedServer([
            .json(200, clusterJSON), .json(200, snapshotJSON), .json(200, failoverAnswerJSON),
        ])
        defer { server.stop() }
        let client = AgentClient("127.0.0.1:\(server.port)/")
        XCTAssertEqual(client.base, "http://127.0.0.1:\(server.port)")
        XCTAssertEqual(try client.status(), .cluster(Fixtures.cluster))
        XCTAssertEqual(try client.snapshot(workload: "redis"), Fixtures.snapshot)
        XCTAssertEqual(try client.failover(workload: "redis", to: "h3"), Fixtures.failoverAnswer)
        let requests = server.requests
        XCTAssertEqual(
            requests.map(\.line),
            ["GET /v1/status", "POST /v1/workloads/redis/snapshot", "POST /v1/workloads/redis/failover"])
        XCTAssertEqual(try AgentJSON.decode(FailoverRequest.self, from: Data(requests[2].body.utf8)).to, "h3")
    }

    func testAnErrorAnswerCarriesTheAgentsMessageAndExitCode() throws {
        let server = try CannedServer([
            .json(409, errorJSON), .json(404, #"{"error": "no workload named x on this agent", "exit_code": 2}"#),
            .json(500, #"{"error": "snapshot of redis refused: stale epoch", "exit_code": 4}"#),
            .text(500, "boom\n"),
        ])
        defer { server.stop() }
        let client = AgentClient("http://127.0.0.1:\(server.port)")
        let base = client.base
        assertError(
            try client.snapshot(workload: "redis"), .badInput,
            "the agent at \(base) answered 409: \(Fixtures.error.error)")
        assertError(
            try client.snapshot(workload: "x"), .badInput,
            "the agent at \(base) answered 404: no workload named x on this agent")
        assertError(
            try client.snapshot(workload: "redis"), .integrity,
            "the agent at \(base) answered 500: snapshot of redis refused: stale epoch")
        assertError(
            try client.failover(workload: "redis", to: nil), .operationFailed, "the agent at \(base) answered 500: boom"
        )
    }

    func testAnAnswerThatIsNotTheModelIsOneClearError() throws {
        let server = try CannedServer([.text(200, "hello\n"), .json(200, #"{"snapshot": 3}"#)])
        defer { server.stop() }
        let client = AgentClient("127.0.0.1:\(server.port)")
        assertError(
            try client.status(), .operationFailed,
            "the agent at 127.0.0.1:\(server.port) answered something that is not a status")
        assertError(
            try client.snapshot(workload: "redis"), .operationFailed,
            "the agent at 127.0.0.1:\(server.port) answered something that is not a snapshot report")
    }

    func testReadyzAndLivez() throws {
        let server = try CannedServer([
            .text(503, "workload redis is recovering\n"), .text(200, "ok\n"), .text(200, "ok\n"), .text(500, "down\n"),
        ])
        defer { server.stop() }
        let client = AgentClient("127.0.0.1:\(server.port)")
        XCTAssertEqual(
            try client.readyz(), AgentClient.Readiness(ready: false, message: "workload redis is recovering"))
        XCTAssertEqual(try client.readyz(), AgentClient.Readiness(ready: true, message: "ok"))
        XCTAssertNoThrow(try client.livez())
        XCTAssertThrowsError(try client.livez())
        XCTAssertEqual(server.requests.map(\.line), ["GET /readyz", "GET /readyz", "GET /livez", "GET /livez"])
    }

    func testAnAgentThatIsNotThereIsOneLine() throws {
        let port = try CannedServer.closedPort()
        assertError(
            try AgentClient("127.0.0.1:\(port)").status(), .operationFailed,
            prefix: "cannot reach the agent at http://127.0.0.1:\(port): ",
            suffix: "; is lifeboatd running and listening there?")
    }

    /// An agent that accepts the connection but never answers (a host that hangs) costs the
    /// timeout, not URLSession's minute.
    func testAnAgentThatNeverAnswersCostsTheTimeout() throws {
        let silent = try CannedServer.silent()
        defer { close(silent.socket) }
        let started = Date()
        assertError(
            try AgentClient("127.0.0.1:\(silent.port)").status(timeout: 1), .operationFailed,
            prefix: "", suffix: "")
        XCTAssertLessThan(Date().timeIntervalSince(started), 3, "bounded by the 1 s timeout")
    }

    func testOverviewAsksEveryPeerAndKeepsTheOnesThatDoNotAnswer() throws {
        let closed = try CannedServer.closedPort()
        let peer = try CannedServer([.json(200, standaloneJSON)])
        defer { peer.stop() }
        var own = Fixtures.cluster
        own.peers = [
            .init(host: "h3", api: "http://127.0.0.1:\(peer.port)", address: "127.0.0.1:1"),
            .init(host: "h1", api: "http://127.0.0.1:\(closed)", address: "127.0.0.1:1"),
        ]
        let server = try CannedServer([.json(200, String(decoding: try AgentJSON.encode(own), as: UTF8.self))])
        defer { server.stop() }
        let overview = try AgentClient("127.0.0.1:\(server.port)").overview()
        XCTAssertEqual(overview.hosts.map(\.host), ["h2", "h3", "h1"])
        XCTAssertEqual(overview.hosts.map(\.reachable), [true, true, false])
        XCTAssertEqual(overview.hosts[0].status, .cluster(own))
        XCTAssertEqual(overview.hosts[1].status, .standalone(Fixtures.standalone))
        XCTAssertNil(overview.hosts[2].status)
        XCTAssertTrue(
            overview.hosts[2].error?.hasPrefix("cannot reach the agent at http://127.0.0.1:\(closed): ") == true,
            overview.hosts[2].error ?? "no error")
    }

    private func assertError<T>(
        _ call: @autoclosure () throws -> T, _ kind: FailureKind, _ message: String? = nil, prefix: String = "",
        suffix: String = "", file: StaticString = #filePath, line: UInt = #line
    ) {
        do {
            _ = try call()
            XCTFail("no error", file: file, line: line)
        } catch let error as LifeboatError {
            XCTAssertEqual(error.kind, kind, "\(error)", file: file, line: line)
            if let message { XCTAssertEqual(error.description, message, file: file, line: line) }
            XCTAssertTrue(error.description.hasPrefix(prefix), error.description, file: file, line: line)
            XCTAssertTrue(error.description.hasSuffix(suffix), error.description, file: file, line: line)
            XCTAssertFalse(error.description.contains("\n"), "one line: \(error)", file: file, line: line)
        } catch {
            XCTFail("not a LifeboatError: \(error)", file: file, line: line)
        }
    }
}

/// An HTTP/1.1 server on 127.0.0.1 that answers one canned response per connection, in order,
/// and records each request's line and body.
final class CannedServer: Sendable {
    struct Answer: Sendable {
        var status: Int
        var contentType: String
        var body: String

        static func json(_ status: Int, _ body: String) -> Answer {
            Answer(status: status, contentType: "application/json", body: body + "\n")
        }
        static func text(_ status: Int, _ body: String) -> Answer {
            Answer(status: status, contentType: "text/plain", body: body)
        }
    }

    struct Request: Sendable {
        var line: String
        var body: String
    }

    let port: Int
    private let socket: Int32
    private let received = Mutex<[Request]>([])

    init(_ answers: [Answer]) throws {
        let (fd, port) = try Self.listen()
        self.socket = fd
        self.port = port
        let thread = Thread { [self] in serve(answers) }
        thread.start()
    }

    /// The requests answered so far.
    var requests: [Request] { received.withLock { $0 } }

    /// Stops accepting; a serving thread waiting in accept returns.
    func stop() {
        shutdown(socket, Int32(SHUT_RDWR))
        close(socket)
    }

    /// A socket that listens but never accepts: connections complete (the kernel's backlog)
    /// and no answer ever comes.
    static func silent() throws -> (socket: Int32, port: Int) {
        let (fd, port) = try bound()
        Glibc.listen(fd, 8)
        return (fd, port)
    }

    /// A loopback port nothing listens on (bound once, then closed).
    static func closedPort() throws -> Int {
        let (fd, port) = try bound()
        close(fd)
        return port
    }

    private static func bound() throws -> (Int32, Int) {
        let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard ok else {
            close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    private static func listen() throws -> (Int32, Int) {
        let (fd, port) = try bound()
        guard Glibc.listen(fd, 8) == 0 else {
            close(fd)
            throw POSIXError(.EIO)
        }
        return (fd, port)
    }

    private func serve(_ answers: [Answer]) {
        for answer in answers {
            let connection = accept(socket, nil, nil)
            guard connection >= 0 else { return }
            defer { close(connection) }
            guard let request = read(connection) else { return }
            received.withLock { $0.append(request) }
            let body = Array(answer.body.utf8)
            let head =
                "HTTP/1.1 \(answer.status) Canned\r\nContent-Type: \(answer.contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
            let bytes = Array(head.utf8) + body
            var sent = 0
            while sent < bytes.count {
                let n = bytes[sent...].withUnsafeBytes { send(connection, $0.baseAddress, $0.count, 0) }
                guard n > 0 else { return }
                sent += n
            }
        }
    }

    /// Reads one request: its head up to the blank line, then `Content-Length` bytes of body.
    private func read(_ connection: Int32) -> Request? {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        func headEnd() -> Int? {
            guard bytes.count >= 4 else { return nil }
            return (0...(bytes.count - 4)).first { bytes[$0..<$0 + 4].elementsEqual([13, 10, 13, 10]) }
        }
        func more() -> Bool {
            let n = buffer.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { return false }
            bytes += buffer[0..<n]
            return true
        }
        while headEnd() == nil { guard more() else { return nil } }
        let end = headEnd()!
        let head = String(decoding: bytes[0..<end], as: UTF8.self).components(separatedBy: "\r\n")
        let length =
            head.dropFirst().compactMap { field -> Int? in
                let parts = field.split(separator: ":", maxSplits: 1)
                guard parts.count == 2, parts[0].lowercased() == "content-length" else { return nil }
                return Int(parts[1].trimmingCharacters(in: .whitespaces))
            }.first ?? 0
        while bytes.count < end + 4 + length { guard more() else { return nil } }
        let parts = head[0].split(separator: " ")
        return Request(
            line: parts.prefix(2).joined(separator: " "),
            body: String(decoding: bytes[(end + 4)..<(end + 4 + length)], as: UTF8.self))
    }
}
