import LifeboatAgent
import LifeboatCore
import XCTest

final class ConfigTests: XCTestCase {
    func testParsesAWorkload() throws {
        let config = try ConfigLoader.parse(
            """
            host: a
            listen: 127.0.0.1:7000
            repository: /v/repo
            workloads:
              - name: db
                data_dir: /d/data/
                backing_dir: /d/backing
                journal_dir: /d/journal
            """, file: "a.yaml")
        XCTAssertEqual(config.host, "a")
        XCTAssertEqual(config.workloads.first?.dataDir, "/d/data")
        XCTAssertEqual(config.workloads.first?.capture, .fuse)
        XCTAssertEqual(config.logLevel, .info, "info unless log_level says otherwise")
    }
}

final class ConfigErrorTests: XCTestCase {
    /// The annotated example in Docs/ loads: it cannot go stale.
    func testTheDocumentedExampleLoads() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let config = try ConfigLoader.load(path: root.appendingPathComponent("Docs/examples/agent.yaml").path)
        XCTAssertEqual(config.host, "db-host-1")
        XCTAssertEqual(config.listen, "127.0.0.1:7440")
        XCTAssertEqual(config.logLevel, .info)
        XCTAssertEqual(config.workloads.map(\.name), ["postgres"])
        XCTAssertEqual(config.workloads.first?.journalDir, "/var/lib/lifeboat/journal/postgres")
    }

    func testTheThreeHostClusterExampleLoads() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        for index in 1...3 {
            let config = try ConfigLoader.load(
                path: root.appendingPathComponent("Docs/examples/cluster/host-\(index).yaml").path)
            XCTAssertEqual(config.host, "host-\(index)")
            let cluster = try XCTUnwrap(config.cluster)
            XCTAssertEqual(cluster.peers.count, 2)
            XCTAssertFalse(cluster.peers.contains { $0.host == config.host })
            XCTAssertEqual(cluster.peerListen, "10.0.0.\(index):7441")
            let workload = try XCTUnwrap(config.workloads.first)
            XCTAssertEqual(workload.replication.mode, .sync)
            XCTAssertEqual(workload.replication.leaseTTL, 10)
            XCTAssertEqual(workload.replication.syncTimeout, 5)
            XCTAssertEqual(workload.snapshotEvery, 300)
            XCTAssertEqual(workload.standby, .warm, "the redis workload keeps warm copies on its peers")
            XCTAssertEqual(workload.service?.health, "redis-cli -p 6379 ping")
            XCTAssertEqual(cluster.backend, .etcd, "real hosts keep their leases in etcd")
            XCTAssertEqual(
                cluster.etcdEndpoints, ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"])
            XCTAssertEqual(cluster.coordinatorPath, "/lifeboat")
            let postgres = try XCTUnwrap(config.workloads.last)
            XCTAssertEqual(postgres.name, "postgres")
            XCTAssertTrue(postgres.service?.start.contains("setpriv --reuid=postgres") ?? false)
            XCTAssertTrue(postgres.service?.start.contains("listen_addresses=10.0.0.\(index)") ?? false)
        }
    }

    func testClusterKeysAreCheckedTogether() {
        XCTAssertTrue(
            message(valid + "\npeer_listen: 127.0.0.1:7441\n").contains("coordinator is missing"),
            message(valid + "\npeer_listen: 127.0.0.1:7441\n"))
        let cluster = valid + "\npeer_listen: 127.0.0.1:7441\ncoordinator:\n  path: /c\npeers: []\n"
        XCTAssertEqual(message(cluster), "no error")
        XCTAssertTrue(
            message(cluster.replacingOccurrences(of: "name: db", with: "name: db\n    lease_ttl: soon"))
                .contains("lease_ttl must be a duration"))
        XCTAssertTrue(
            message(cluster.replacingOccurrences(of: "name: db", with: "name: db\n    replication: sync"))
                .contains("min_sync_peers is 1 but only 0 peers"))
    }

    func testTheStandbyKey() throws {
        let cluster = valid + "\npeer_listen: 127.0.0.1:7441\ncoordinator:\n  path: /c\npeers: []\n"
        XCTAssertEqual(try ConfigLoader.parse(cluster, file: "agent.yaml").workloads[0].standby, .cold, "the default")
        let warm = cluster.replacingOccurrences(of: "name: db", with: "name: db\n    standby: warm")
        XCTAssertEqual(try ConfigLoader.parse(warm, file: "agent.yaml").workloads[0].standby, .warm)
        let bad = message(cluster.replacingOccurrences(of: "name: db", with: "name: db\n    standby: hot"))
        XCTAssertTrue(
            bad.contains("agent.yaml:4: workloads[0].standby 'hot' is not a standby (known: cold, warm)"), bad)
        let alone = message(valid.replacingOccurrences(of: "name: db", with: "name: db\n    standby: warm"))
        XCTAssertTrue(alone.contains("warm needs peers"), alone)
    }

    private func message(_ yaml: String) -> String {
        do {
            _ = try ConfigLoader.parse(yaml, file: "agent.yaml")
            return "no error"
        } catch let error as LifeboatError {
            XCTAssertEqual(error.kind, .badInput)
            return error.description
        } catch {
            return "unexpected \(error)"
        }
    }

    private let valid = """
        repository: /v/repo
        workloads:
          - name: db
            data_dir: /d/data
            backing_dir: /d/backing
            journal_dir: /d/journal
        """

    func testTheEtcdCoordinatorKeys() throws {
        let etcd =
            valid + """

                peer_listen: 127.0.0.1:7441
                coordinator:
                  backend: etcd
                  endpoints: [http://10.0.0.1:2379, 10.0.0.2:2379]
                  prefix: /lb/
                  dial_timeout: 500ms
                peers: []
                """
        let cluster = try XCTUnwrap(try ConfigLoader.parse(etcd, file: "agent.yaml").cluster)
        XCTAssertEqual(cluster.backend, .etcd)
        XCTAssertEqual(cluster.etcdEndpoints, ["http://10.0.0.1:2379", "10.0.0.2:2379"])
        XCTAssertEqual(cluster.coordinatorPath, "/lb", "the key prefix, without a trailing slash")
        XCTAssertEqual(cluster.etcdDialTimeout, 0.5)
        let defaults = try ConfigLoader.parse(
            etcd.replacingOccurrences(of: "  prefix: /lb/\n  dial_timeout: 500ms\n", with: ""), file: "agent.yaml")
        XCTAssertEqual(defaults.cluster?.coordinatorPath, "/lifeboat")
        XCTAssertEqual(defaults.cluster?.etcdDialTimeout, 2)

        XCTAssertEqual(
            message(etcd.replacingOccurrences(of: "backend: etcd", with: "backend: consul")),
            "agent.yaml:9: coordinator.backend 'consul' is not a coordinator backend (known: local, etcd)")
        XCTAssertEqual(
            message(etcd.replacingOccurrences(of: "prefix: /lb/", with: "path: /c")),
            "agent.yaml:11: coordinator.path does not apply to backend etcd")
        XCTAssertEqual(
            message(etcd.replacingOccurrences(of: "backend: etcd", with: "backend: local\n  path: /c")),
            "agent.yaml:11: coordinator.endpoints does not apply to backend local")
        XCTAssertEqual(
            message(etcd.replacingOccurrences(of: "10.0.0.2:2379", with: "ftp://x")),
            "agent.yaml:10: coordinator.endpoints[1] must be an etcd client URL such as http://10.0.0.1:2379")
        XCTAssertEqual(
            message(etcd.replacingOccurrences(of: "[http://10.0.0.1:2379, 10.0.0.2:2379]", with: "[]")),
            "agent.yaml:10: coordinator.endpoints must be a list of etcd client URLs (http://HOST:PORT)")
        XCTAssertTrue(
            message(etcd.replacingOccurrences(of: "  endpoints: [http://10.0.0.1:2379, 10.0.0.2:2379]\n", with: ""))
                .contains("coordinator.endpoints is missing"))
        XCTAssertEqual(
            message(etcd.replacingOccurrences(of: "prefix: /lb/", with: "prefix: lb")),
            "agent.yaml:11: coordinator.prefix must be a key path starting with /, e.g. /lifeboat")
        XCTAssertEqual(
            message(etcd.replacingOccurrences(of: "500ms", with: "0s")),
            "agent.yaml:12: coordinator.dial_timeout must be more than 0")
    }

    func testErrorsNameTheFileTheLineAndTheKey() {
        let unknown = message(valid + "\n    dta_dir: /x\n")
        XCTAssertTrue(unknown.contains("agent.yaml:7:"), unknown)
        XCTAssertTrue(unknown.contains("unknown key workloads[0].dta_dir"), unknown)

        let missing = message(valid.replacingOccurrences(of: "    data_dir: /d/data\n", with: ""))
        XCTAssertTrue(missing.contains("workloads[0].data_dir is missing"), missing)

        let relative = message(
            valid.replacingOccurrences(of: "backing_dir: /d/backing", with: "backing_dir: d/backing"))
        XCTAssertTrue(relative.contains("agent.yaml:5: workloads[0].backing_dir must be an absolute path"), relative)

        let capture = message(valid + "\n    capture: nfs\n")
        XCTAssertTrue(capture.contains("'nfs' is not a capture mode"), capture)

        let listen = message("listen: nonsense\n" + valid)
        XCTAssertTrue(listen.contains("agent.yaml:1: listen must be HOST:PORT"), listen)

        let level = message("log_level: verbose\n" + valid)
        XCTAssertTrue(
            level.contains(
                "agent.yaml:1: log_level 'verbose' is not a log level (known: trace, debug, info, notice, warning, error, critical)"
            ), level)

        let topLevel = message("repositry: /v\n" + valid)
        XCTAssertTrue(topLevel.contains("unknown key repositry"), topLevel)

        let typo = message(valid.replacingOccurrences(of: "data_dir:", with: "dta_dir:"))
        XCTAssertTrue(typo.contains("agent.yaml:4: unknown key workloads[0].dta_dir"), typo)

        XCTAssertTrue(message("").contains("empty"), message(""))
        XCTAssertTrue(message("workloads: [\n").contains("not valid YAML"), message("workloads: [\n"))
        XCTAssertTrue(
            message(valid + "\n  - name: db\n    data_dir: /a\n    backing_dir: /b\n    journal_dir: /c\n").contains(
                "used by two workloads"))
    }
}
