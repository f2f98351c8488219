import LifeboatAPI
import LifeboatCore

/// Filled values of every API model: every optional set somewhere and left out somewhere else.
enum Fixtures {
    static let snapshot = SnapshotReport(
        snapshot: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", workload: "redis",
        position: "2:1042", parent: "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
        method: "delta", stallMs: 3.25, changedBytesRead: 1_048_576, changedBytesReadDuringStall: 4096,
        baseBytesRead: 65536, scanBytesRead: 0, newBytes: 524_288, storedBytes: 131_072, files: 17,
        totalBytes: 10_485_760, seconds: 0.8125, journalSegmentsRemoved: 2)

    static let recovery = RecoveryReport(
        epoch: 2, kind: .failover, startedAt: 1_767_225_600.5, snapshot: snapshot.snapshot, snapshotPosition: "1:1000",
        snapshotBytes: 10_485_760, localRecords: 30, deltaRecords: 12, deltaBytes: 49152, deltaPeer: "h3",
        replayedRecords: 42, position: "1:1042", detectionSeconds: 1.5, leaseSeconds: 0.015625,
        snapshotLoadSeconds: 0.25, deltaSeconds: 0.125, replaySeconds: 0.0625, mountSeconds: 0.03125,
        serviceStartSeconds: 0.5, totalSeconds: 2.5)

    static let primary = ClusteredWorkloadStatus(
        name: "redis", role: .primary, epoch: 2, position: "2:1042", durablePosition: "2:1041", oldestSeq: 1000,
        leaseHolder: "h2", leaseExpiresIn: 4.75, replication: "sync",
        peers: [
            .init(host: "h1", connected: false, bytesSent: 0, lastError: "connection refused"),
            .init(host: "h3", connected: true, acked: "2:1040", lag: 2, bytesSent: 123_456),
            .init(host: "h4", connected: true, bytesSent: 512),
        ],
        service: .init(state: "running", pid: 4242),
        newestSnapshot: SnapshotReference(snapshot: snapshot.snapshot, position: "2:1042"), lastSnapshot: snapshot,
        lastRecovery: recovery, alert: "sync peers timed out; writes continue async", mounted: true)

    static let peer = ClusteredWorkloadStatus(
        name: "sqlite", role: .peer, epoch: 1, position: nil, durablePosition: nil, oldestSeq: 1, leaseHolder: nil,
        leaseExpiresIn: nil, replication: "async", peers: [], service: .init(state: "stopped"), newestSnapshot: nil,
        lastSnapshot: nil, lastRecovery: nil, alert: nil, mounted: false)

    static let cluster = ClusterStatus(
        host: "h2", repository: "/mnt/volume/repo", coordinator: "local:/mnt/volume/coordinator",
        peers: [
            .init(host: "h1", api: "http://10.0.0.1:7440", address: "10.0.0.1:7441"),
            .init(host: "h3", api: "http://10.0.0.3:7440", address: "10.0.0.3:7441"),
        ], workloads: [primary, peer])

    static let standalone = StandaloneStatus(
        host: "h1", repository: "/mnt/volume/repo",
        workloads: [
            .init(
                name: "redis", dataDir: "/srv/redis", backingDir: "/var/lib/lifeboat/redis/backing",
                journalDir: "/var/lib/lifeboat/redis/journal", epoch: 1, position: "1:7", durablePosition: "1:7",
                dirtyFiles: 3, dirtyBytes: 8192, mounted: true, lastSnapshot: snapshot),
            .init(
                name: "empty", dataDir: "/srv/empty", backingDir: "/srv/empty.backing",
                journalDir: "/srv/empty.journal", epoch: 1, position: nil, durablePosition: nil, dirtyFiles: 0,
                dirtyBytes: 0, mounted: false, lastSnapshot: nil),
        ])

    static let failoverAnswer = FailoverAnswer(workload: "redis", from: "h2", to: "h3", handoverSeconds: 1.375)

    static let error = ErrorBody(
        error: "workload redis is peer on h1; snapshots are taken by its primary (h2)", exitCode: 2)

    /// The clustered agent h2 answered, its peer h1 did not, h3 answered as a standalone agent.
    static let overview = ClusterOverview(hosts: [
        .init(host: "h2", status: .cluster(cluster)),
        .init(
            host: "h1",
            error:
                "cannot reach the agent at http://10.0.0.1:7440: Could not connect to the server.; is lifeboatd running and listening there?"
        ),
        .init(host: "h3", status: .standalone(standalone)),
    ])

    static let standaloneOverview = ClusterOverview(hosts: [.init(host: "h1", status: .standalone(standalone))])
}
