import Foundation
import Glibc
import LifeboatAgent
import LifeboatCapture
import LifeboatCore
import Logging
import ServiceLifecycle
import ServiceLifecycleTestKit
import XCTest

/// The agent as a service group: a graceful shutdown stops the API, then each workload's
/// service, which unmounts the data dir and leaves the journal and the backing dir agreeing
/// (a clean stop, so the next start rebuilds nothing). Real FUSE mounts: needs root and
/// /dev/fuse.
final class AgentShutdownTests: XCTestCase {
    var root = ""

    override func setUpWithError() throws {
        try XCTSkipUnless(getuid() == 0 && access("/dev/fuse", R_OK | W_OK) == 0, "needs root and /dev/fuse")
        root = NSTemporaryDirectory() + "lifeboat-shutdown-" + UUID().uuidString
        for sub in ["data", "backing", "journal"] {
            try FileManager.default.createDirectory(atPath: root + "/" + sub, withIntermediateDirectories: true)
        }
    }

    override func tearDownWithError() throws {
        if !root.isEmpty {
            umount2(root + "/data", Int32(MNT_DETACH))
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    func makeAgent() throws -> Agent {
        let workload = WorkloadConfiguration(
            name: "w", capture: .fuse, dataDir: root + "/data", backingDir: root + "/backing",
            journalDir: root + "/journal")
        let configuration = AgentConfiguration(
            host: "h1", listen: "127.0.0.1:\(try freePort())", repository: root + "/repo", workloads: [workload])
        return try Agent(configuration: configuration, logger: .quiet)
    }

    var isMounted: Bool { LifeboatCapture.MountTable.isMountPoint(root + "/data") }

    func testAGracefulShutdownStopsTheAPIAndUnmountsCleanly() async throws {
        let agent = try makeAgent()
        try agent.start()
        XCTAssertTrue(isMounted)
        XCTAssertTrue(FileManager.default.createFile(atPath: root + "/data/kept", contents: Data("kept".utf8)))
        let api = try AgentAPI.service(agent) {}
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: agent.services(api: api), logger: .quiet))
        try await testGracefulShutdown { trigger in
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                try await waitForAPI(agent.configuration.listen)
                trigger.triggerGracefulShutdown()
                try await tasks.next()
            }
        }
        XCTAssertFalse(isMounted, "the data dir is unmounted")
        XCTAssertEqual(try String(contentsOfFile: root + "/backing/kept", encoding: .utf8), "kept")
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: root + "/journal/running"),
            "a clean stop: no running marker, so the next start rebuilds nothing")
        XCTAssertThrowsError(try connect(agent.configuration.listen), "the API no longer accepts connections")
        await agent.pool.shutdown()
    }

    /// When another service fails, the group cancels the workload's service: it still stops
    /// the workload cleanly (unmounted, no running marker), although its task is cancelled.
    func testACancelledWorkloadServiceStillStopsTheWorkloadCleanly() async throws {
        let agent = try makeAgent()
        try agent.start()
        let service = try XCTUnwrap(agent.services(api: NeverService()).first)
        let task = Task { try await service.run() }
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        _ = try? await task.value
        XCTAssertFalse(isMounted, "the data dir is unmounted")
        XCTAssertFalse(
            FileManager.default.fileExists(atPath: root + "/journal/running"), "a clean stop: no running marker")
        await agent.pool.shutdown()
    }

    func testAWorkloadUnmountedFromOutsideEndsTheGroupWithItsError() async throws {
        let agent = try makeAgent()
        try agent.start()
        let service = try XCTUnwrap(agent.services(api: NeverService()).first)
        umount2(root + "/data", Int32(MNT_DETACH))
        do {
            try await service.run()
            XCTFail("the workload's service returned instead of failing")
        } catch let error as LifeboatError {
            XCTAssertEqual(error.kind, .operationFailed)
            XCTAssertTrue(error.description.contains("was unmounted from outside the agent"), error.description)
        }
        await agent.pool.shutdown()
    }
}

/// A service that runs until cancelled.
private struct NeverService: Service {
    func run() async throws { try await gracefulShutdown() }
}

/// A TCP port nothing listens on now.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
        }
    }
    guard bound else { throw POSIXError(.EADDRNOTAVAIL) }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Opens (and closes) a TCP connection to `HOST:PORT`; throws when nothing accepts it.
func connect(_ listen: String) throws {
    let parts = listen.split(separator: ":")
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr(String(parts[0]))
    address.sin_port = UInt16(parts[1])!.bigEndian
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    if result != 0 { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .ECONNREFUSED) }
}

/// Waits up to 10 s for the API to accept connections.
func waitForAPI(_ listen: String) async throws {
    for _ in 0..<200 {
        if (try? connect(listen)) != nil { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    try connect(listen)
}
