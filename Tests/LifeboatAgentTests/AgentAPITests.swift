import Foundation
import Glibc
import Hummingbird
import HummingbirdTesting
import LifeboatAPI
import LifeboatCore
import NIOCore
import XCTest

@testable import LifeboatAgent

/// The agent's HTTP API in-process, through HummingbirdTesting's router client: what
/// `lifeboat` and an operator's curl or Prometheus see. The agents are built but not started
/// (nothing is mounted), except in the test that needs a real mount.
final class AgentAPITests: XCTestCase {
    var root = ""
    /// Agents a test started: stopped (unmounted) in tearDown, also when the test failed.
    var started: [Agent] = []

    override func setUpWithError() throws {
        root = NSTemporaryDirectory() + "lifeboat-api-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        for agent in started { agent.stop() }
        started = []
        if !root.isEmpty {
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
                umount2(root + "/" + entry + "/data", Int32(MNT_DETACH))
            }
            try? FileManager.default.removeItem(atPath: root)
        }
    }

    // MARK: - agents for the tests

    /// A workload whose dirs are under `root/dir`.
    func workload(_ name: String, dir: String) throws -> WorkloadConfiguration {
        let base = root + "/" + dir
        try FileManager.default.createDirectory(atPath: base + "/backing", withIntermediateDirectories: true)
        return WorkloadConfiguration(
            name: name, capture: .fuse, dataDir: base + "/data", backingDir: base + "/backing",
            journalDir: base + "/journal")
    }

    /// An agent without a cluster: its workload is standalone.
    func standaloneAgent(host: String = "h1", workload name: String = "db", dir: String = "a") throws -> Agent {
        let configuration = AgentConfiguration(
            host: host, listen: "127.0.0.1:1", repository: root + "/repo", workloads: [try workload(name, dir: dir)])
        return try Agent(configuration: configuration, logger: .quiet)
    }

    /// An agent of a cluster with `peers`: its workload is a peer until the lease says more.
    func clusteredAgent(host: String = "h1", peers: [String] = ["h2"], dir: String = "c") throws -> Agent {
        let cluster = ClusterConfiguration(
            peerListen: "127.0.0.1:1", backend: .local, coordinatorPath: root + "/coordinator",
            peers: peers.map { PeerConfiguration(host: $0, api: "127.0.0.1:1", address: "127.0.0.1:1") })
        let configuration = AgentConfiguration(
            host: host, listen: "127.0.0.1:1", repository: root + "/repo", workloads: [try workload("db", dir: dir)],
            cluster: cluster)
        return try Agent(configuration: configuration, logger: .quiet)
    }

    struct Answer {
        var status: HTTPResponse.Status
        var contentType: String?
        var body: String
        var data: Data { Data(body.utf8) }
    }

    /// One request to the agent's router.
    func request(_ agent: Agent, _ uri: String, method: HTTPRequest.Method = .get) async throws -> Answer {
        let app = Application(router: AgentAPI.router(for: agent))
        return try await app.test(.router) { client in
            try await client.execute(uri: uri, method: method) { response in
                Answer(
                    status: response.status, contentType: response.headers[.contentType],
                    body: String(buffer: response.body))
            }
        }
    }

    // MARK: - routes

    func testLivezAnswersOK() async throws {
        let answer = try await request(try standaloneAgent(), "/livez")
        XCTAssertEqual(answer.status, .ok)
        XCTAssertEqual(answer.body, "ok\n")
    }

    func testReadyzIs503AndNamesTheWorkloadThatIsNotMounted() async throws {
        let answer = try await request(try standaloneAgent(workload: "orders"), "/readyz")
        XCTAssertEqual(answer.status, .serviceUnavailable)
        XCTAssertEqual(answer.body, "workload orders is not mounted\n")
    }

    /// A peer whose coordinator does not answer says so in `/readyz` and in its status.
    func testReadyzAndStatusSayWhyWhenTheCoordinatorIsUnreachable() async throws {
        let cluster = ClusterConfiguration(
            peerListen: "127.0.0.1:1", backend: .etcd, coordinatorPath: "/lifeboat-test",
            peers: [PeerConfiguration(host: "h2", api: "127.0.0.1:1", address: "127.0.0.1:1")],
            etcdEndpoints: ["http://127.0.0.1:1"], etcdDialTimeout: 0.5)
        let configuration = AgentConfiguration(
            host: "h1", listen: "127.0.0.1:1", repository: root + "/repo", workloads: [try workload("db", dir: "e")],
            cluster: cluster)
        let agent = try Agent(configuration: configuration, logger: .quiet)
        defer { agent.close() }
        let supervisor = try XCTUnwrap(agent.supervisor("db"))
        XCTAssertNil(supervisor.coordinatorError)
        supervisor.controlTick()
        let problem = try XCTUnwrap(supervisor.coordinatorError, "a failed lease read is kept")
        XCTAssertTrue(problem.hasPrefix("cannot read the lease: "), problem)
        XCTAssertTrue(problem.contains("127.0.0.1:1"), "names the endpoint: \(problem)")

        let ready = try await request(agent, "/readyz")
        XCTAssertEqual(ready.status, .serviceUnavailable)
        XCTAssertEqual(ready.body, "workload db is peer and cannot reach the coordinator: \(problem)\n")
        let status = try AgentJSON.decode(ClusterStatus.self, from: try await request(agent, "/v1/status").data)
        XCTAssertEqual(status.workloads.first?.coordinatorError, problem)
    }

    func testStatusDecodesWithTheAPIModelsAndNamesTheWorkload() async throws {
        let answer = try await request(try standaloneAgent(host: "h7", workload: "orders"), "/v1/status")
        XCTAssertEqual(answer.status, .ok)
        XCTAssertEqual(answer.contentType, "application/json")
        let status = try AgentJSON.decode(StandaloneStatus.self, from: answer.data)
        XCTAssertEqual(status.host, "h7")
        XCTAssertEqual(status.repository, root + "/repo")
        XCTAssertEqual(status.workloads.map(\.name), ["orders"])
        XCTAssertEqual(status.workloads.first?.mounted, false)
        XCTAssertEqual(status.workloads.first?.dataDir, root + "/a/data")
    }

    func testClusterStatusDecodesAndShowsTheWorkloadAsAPeer() async throws {
        let answer = try await request(try clusteredAgent(peers: ["h2", "h3"]), "/v1/status")
        XCTAssertEqual(answer.status, .ok)
        let status = try AgentJSON.decode(ClusterStatus.self, from: answer.data)
        XCTAssertEqual(status.peers.map(\.host), ["h2", "h3"])
        XCTAssertEqual(status.workloads.map(\.name), ["db"])
        XCTAssertEqual(status.workloads.first?.role, .peer)
    }

    func testSnapshotOfAnUnknownWorkloadIs404WithAnErrorBody() async throws {
        let answer = try await request(try standaloneAgent(), "/v1/workloads/nope/snapshot", method: .post)
        XCTAssertEqual(answer.status, .notFound)
        XCTAssertEqual(
            try AgentJSON.decode(ErrorBody.self, from: answer.data),
            ErrorBody(error: "no workload named nope on this agent", exitCode: 2))
    }

    // MARK: - metrics

    func testMetricsHaveHelpAndTypeForEveryFamily() async throws {
        for agent in [try standaloneAgent(), try clusteredAgent()] {
            let answer = try await request(agent, "/metrics")
            XCTAssertEqual(answer.status, .ok)
            XCTAssertEqual(answer.contentType, "text/plain; version=0.0.4; charset=utf-8")
            let exposition = try Exposition(answer.body)
            XCTAssertFalse(exposition.families.isEmpty)
            for family in exposition.families {
                let known = try XCTUnwrap(MetricFamily(rawValue: family), "\(family) is not in MetricFamily")
                XCTAssertEqual(exposition.help[family], known.help, family)
                XCTAssertEqual(exposition.type[family], known.kind.rawValue, family)
            }
        }
        let clustered = try Exposition(try await request(try clusteredAgent(dir: "d"), "/metrics").body)
        let expected: [MetricFamily] = [
            .journalSeq, .journalDurableSeq, .journalOldestSeq, .epoch, .role, .bytesReceived, .recordsReceived,
            .syncTimeouts, .dataFsyncSeconds, .snapshotDurationSeconds, .replicationAckSeconds,
        ]
        XCTAssertEqual(clustered.families.intersection(expected.map(\.name)).count, expected.count, "\(clustered)")
        // The series the scripts read, as they read them.
        XCTAssertEqual(clustered.samples[#"lifeboat_sync_timeouts_total{host="h1",workload="db"}"#], "0")
        XCTAssertEqual(clustered.samples[#"lifeboat_bytes_received_total{host="h1",workload="db"}"#], "0")
        XCTAssertEqual(clustered.samples[#"lifeboat_role{host="h1",workload="db",role="peer"}"#], "1.0")
        XCTAssertEqual(clustered.samples[#"lifeboat_role{host="h1",workload="db",role="primary"}"#], "0.0")
    }

    func testLabelValuesAreEscaped() async throws {
        let host = "h\"1\\x\ny"
        let answer = try await request(try standaloneAgent(host: host), "/metrics")
        let exposition = try Exposition(answer.body)
        XCTAssertEqual(exposition.samples[#"lifeboat_epoch{host="h\"1\\x\ny",workload="db"}"#], "1.0", answer.body)
        XCTAssertFalse(answer.body.contains(host), "a label value went out unescaped")
    }

    func testHistogramsShowBucketsSumAndCountAfterObservations() async throws {
        let agent = try clusteredAgent(peers: ["h2"])
        let metrics = try XCTUnwrap(agent.supervisor("db")).metrics
        metrics.fsynced(.microseconds(30))
        metrics.fsynced(.milliseconds(3))
        metrics.fsynced(.seconds(20))
        metrics.snapshotted(.seconds(45))
        metrics.acknowledged(by: "h2", after: .milliseconds(2))
        metrics.acknowledged(by: "h9", after: .milliseconds(2))
        let answer = try await request(agent, "/metrics")
        let samples = try Exposition(answer.body).samples
        let fsync = "lifeboat_data_fsync_seconds"
        let labels = #"host="h1",workload="db""#
        XCTAssertEqual(samples["\(fsync)_bucket{\(labels),le=\"0.00005\"}"], "1", answer.body)
        XCTAssertEqual(samples["\(fsync)_bucket{\(labels),le=\"0.0025\"}"], "1")
        XCTAssertEqual(samples["\(fsync)_bucket{\(labels),le=\"0.005\"}"], "2")
        XCTAssertEqual(samples["\(fsync)_bucket{\(labels),le=\"10.0\"}"], "2")
        XCTAssertEqual(samples["\(fsync)_bucket{\(labels),le=\"+Inf\"}"], "3")
        XCTAssertEqual(samples["\(fsync)_sum{\(labels)}"], "20.00303")
        XCTAssertEqual(samples["\(fsync)_count{\(labels)}"], "3")
        XCTAssertEqual(samples["lifeboat_snapshot_duration_seconds_bucket{\(labels),le=\"30.0\"}"], "0")
        XCTAssertEqual(samples["lifeboat_snapshot_duration_seconds_bucket{\(labels),le=\"60.0\"}"], "1")
        XCTAssertEqual(samples["lifeboat_snapshot_duration_seconds_count{\(labels)}"], "1")
        XCTAssertEqual(samples["lifeboat_replication_ack_seconds_count{\(labels),peer=\"h2\"}"], "1")
        XCTAssertEqual(samples["lifeboat_replication_ack_seconds_sum{\(labels),peer=\"h2\"}"], "0.002")
        XCTAssertFalse(answer.body.contains("h9"), "an acknowledgement of a peer the config does not name")
    }

    /// Each agent has its own registry: two in one process do not see each other's series.
    func testTwoAgentsInOneProcessKeepTheirOwnMetrics() async throws {
        let first = try standaloneAgent(host: "h1", dir: "a")
        let second = try standaloneAgent(host: "h2", dir: "b")
        try XCTUnwrap(first.supervisor("db")).metrics.fsynced(.milliseconds(1))
        let one = try Exposition(try await request(first, "/metrics").body).samples
        let two = try Exposition(try await request(second, "/metrics").body).samples
        XCTAssertEqual(one[#"lifeboat_data_fsync_seconds_count{host="h1",workload="db"}"#], "1")
        XCTAssertEqual(two[#"lifeboat_data_fsync_seconds_count{host="h2",workload="db"}"#], "0")
        XCTAssertNil(two[#"lifeboat_data_fsync_seconds_count{host="h1",workload="db"}"#])
    }

    /// A real mount: the service's fsyncs and an on-demand snapshot land in their histograms.
    func testAMountedWorkloadsFsyncsAndSnapshotsLandInTheHistograms() async throws {
        try XCTSkipUnless(getuid() == 0 && access("/dev/fuse", R_OK | W_OK) == 0, "needs root and /dev/fuse")
        let agent = try standaloneAgent()
        try agent.start()
        started.append(agent)
        let ready = try await request(agent, "/readyz")
        XCTAssertEqual(ready.status, .ok, ready.body)

        let fd = open(root + "/a/data/file", O_CREAT | O_RDWR, 0o640)
        XCTAssertGreaterThanOrEqual(fd, 0)
        for index in 0..<3 {
            XCTAssertEqual(pwrite(fd, "abc", 3, off_t(index * 3)), 3)
            XCTAssertEqual(fsync(fd), 0)
        }
        close(fd)
        let snapshot = try await request(agent, "/v1/workloads/db/snapshot", method: .post)
        XCTAssertEqual(snapshot.status, .ok, snapshot.body)
        XCTAssertEqual(try AgentJSON.decode(SnapshotReport.self, from: snapshot.data).workload, "db")

        let labels = #"host="h1",workload="db""#
        // The fsync observer runs after its answer, on a FUSE thread: give the last one a moment.
        var samples: [String: String] = [:]
        for _ in 0..<50 {
            samples = try Exposition(try await request(agent, "/metrics").body).samples
            if samples["lifeboat_data_fsync_seconds_count{\(labels)}"] == "3" { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        XCTAssertEqual(samples["lifeboat_data_fsync_seconds_count{\(labels)}"], "3")
        XCTAssertGreaterThan(Double(samples["lifeboat_data_fsync_seconds_sum{\(labels)}"] ?? "") ?? 0, 0)
        XCTAssertEqual(samples["lifeboat_snapshot_duration_seconds_count{\(labels)}"], "1")
        XCTAssertGreaterThan(Double(samples["lifeboat_snapshot_duration_seconds_sum{\(labels)}"] ?? "") ?? 0, 0)
    }
}

/// What one scrape sets is what the next one shows: a series not set again is gone, a counter
/// shows the total it was given (also a smaller one: a new primary term starts from 0).
final class MetricsScrapeTests: XCTestCase {
    func testASeriesTheNextScrapeDoesNotSetIsGoneAndCountersShowTheirTotal() throws {
        let metrics = AgentMetrics(host: "h1")
        let first = try Exposition(
            String(
                decoding: metrics.scrape { scrape in
                    scrape.gauge(.snapshotSeconds, workload: "db", 1.5)
                    scrape.counter(.peerBytesSent, workload: "db", labels: [("peer", "h2")], total: 500)
                }, as: UTF8.self))
        XCTAssertEqual(first.samples[#"lifeboat_snapshot_seconds{host="h1",workload="db"}"#], "1.5")
        XCTAssertEqual(first.samples[#"lifeboat_peer_bytes_sent_total{host="h1",workload="db",peer="h2"}"#], "500")
        let second = try Exposition(
            String(
                decoding: metrics.scrape { scrape in
                    scrape.counter(.peerBytesSent, workload: "db", labels: [("peer", "h2")], total: 20)
                }, as: UTF8.self))
        XCTAssertNil(second.samples[#"lifeboat_snapshot_seconds{host="h1",workload="db"}"#], second.text)
        XCTAssertNil(second.help["lifeboat_snapshot_seconds"], "an empty family kept its HELP line")
        XCTAssertEqual(second.samples[#"lifeboat_peer_bytes_sent_total{host="h1",workload="db",peer="h2"}"#], "20")
    }
}

/// A Prometheus text exposition, read as a scraper reads it: HELP and TYPE per family, and
/// every sample line `NAME{LABELS} VALUE`. Throws on a line that is neither.
struct Exposition: CustomStringConvertible {
    var help: [String: String] = [:]
    var type: [String: String] = [:]
    /// Value text by `NAME{LABELS}`, exactly as written.
    var samples: [String: String] = [:]
    let text: String

    struct Malformed: Error, CustomStringConvertible {
        var line: String
        var description: String { "not a line of the Prometheus text format: \(line)" }
    }

    init(_ text: String) throws {
        self.text = text
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) where !line.isEmpty {
            let words = line.split(separator: " ", maxSplits: 3)
            if line.hasPrefix("# HELP "), words.count == 4 {
                guard help.updateValue(String(words[3]), forKey: String(words[2])) == nil else {
                    throw Malformed(line: "second HELP: \(line)")
                }
            } else if line.hasPrefix("# TYPE "), words.count == 4 {
                guard type.updateValue(String(words[3]), forKey: String(words[2])) == nil else {
                    throw Malformed(line: "second TYPE: \(line)")
                }
            } else if let space = line.lastIndex(of: " "), !line.hasPrefix("#"),
                line[..<space].range(of: #"^[a-z_]+(\{.*\})?$"#, options: .regularExpression) != nil
            {
                samples[String(line[..<space])] = String(line[line.index(after: space)...])
            } else {
                throw Malformed(line: String(line))
            }
        }
    }

    /// The families the samples belong to (a histogram's `_bucket`, `_sum` and `_count` are one).
    var families: Set<String> {
        Set(
            samples.keys.map { key in
                let name = String(key.prefix { $0 != "{" })
                for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
                    let base = String(name.dropLast(suffix.count))
                    if type[base] == "histogram" { return base }
                }
                return name
            })
    }

    var description: String { text }
}
