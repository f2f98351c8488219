import Metrics
import Prometheus
import Synchronization

/// One agent's metrics: a Prometheus registry of its own (no process-wide bootstrap, so one
/// process may hold several agents, as the tests do), the histograms its workloads feed as
/// things happen (`WorkloadMetrics`), and the scrape that reads every counter and gauge from
/// the agent's state (`Metrics.render`).
final class AgentMetrics: Sendable {
    let host: String
    let registry = PrometheusCollectorRegistry()
    let factory: AgentMetricsFactory
    /// The counters and gauges the last scrape set. One scrape at a time holds it.
    private let scraped = Mutex<[SeriesKey: Series]>([:])

    init(host: String) {
        self.host = host
        factory = AgentMetricsFactory(registry: registry)
    }

    /// The histograms of `workload`, with one acknowledgement histogram per peer host.
    func workload(_ workload: String, peers: [String]) -> WorkloadMetrics {
        WorkloadMetrics(host: host, workload: workload, peers: peers, factory: factory)
    }

    /// One scrape: `collect` sets every counter and gauge that exists now; a series the last
    /// scrape set and this one does not is removed (a role or a report that is gone). Returns
    /// the Prometheus text exposition of everything, histograms included.
    func scrape(_ collect: (inout Scrape) -> Void) -> [UInt8] {
        scraped.withLock { previous in
            var scrape = Scrape(host: host, factory: factory, previous: previous)
            collect(&scrape)
            for (key, series) in previous where scrape.series[key] == nil { series.destroy() }
            previous = scrape.series
            return registry.emitToBuffer()
        }
    }

    /// One series: a family and its label values in order.
    struct SeriesKey: Hashable, Sendable {
        var family: MetricFamily
        var labels: [String]
    }

    enum Series: Sendable {
        case meter(CoreMetrics.Meter)
        case counter(CoreMetrics.Counter)

        func destroy() {
            switch self {
            case .meter(let meter): meter.destroy()
            case .counter(let counter): counter.destroy()
            }
        }
    }

    /// What one scrape sets: every series labelled `host` and `workload`, then `extra`.
    struct Scrape {
        let host: String
        let factory: AgentMetricsFactory
        let previous: [SeriesKey: Series]
        fileprivate(set) var series: [SeriesKey: Series] = [:]

        init(host: String, factory: AgentMetricsFactory, previous: [SeriesKey: Series]) {
            self.host = host
            self.factory = factory
            self.previous = previous
        }

        mutating func gauge(
            _ family: MetricFamily, workload: String, labels extra: [(String, String)] = [], _ value: Double
        ) {
            let (key, labels) = identify(family, workload, extra)
            let meter: CoreMetrics.Meter
            if case .meter(let known) = series[key] ?? previous[key] {
                meter = known
            } else {
                meter = CoreMetrics.Meter(label: family.name, dimensions: labels, factory: factory)
            }
            meter.set(value)
            series[key] = .meter(meter)
        }

        /// Sets a counter to `total`, a count the agent keeps itself (it only grows, or starts
        /// again from 0 with a new primary term, which Prometheus reads as a counter reset).
        mutating func counter(
            _ family: MetricFamily, workload: String, labels extra: [(String, String)] = [], total: UInt64
        ) {
            let (key, labels) = identify(family, workload, extra)
            let counter: CoreMetrics.Counter
            if case .counter(let known) = series[key] ?? previous[key] {
                counter = known
            } else {
                counter = CoreMetrics.Counter(label: family.name, dimensions: labels, factory: factory)
            }
            counter.reset()
            counter.increment(by: Int64(clamping: total))
            series[key] = .counter(counter)
        }

        private func identify(
            _ family: MetricFamily, _ workload: String, _ extra: [(String, String)]
        ) -> (SeriesKey, [(String, String)]) {
            let labels = [("host", host), ("workload", workload)] + extra
            return (SeriesKey(family: family, labels: labels.flatMap { [$0.0, $0.1] }), labels)
        }
    }
}

/// The histograms one workload feeds as things happen: the fsyncs on its data dir, its
/// snapshots, its peers' acknowledgements. Each record is one histogram update (a lock held
/// for a pass over the buckets), with no allocation: cheap enough for the FUSE fsync path.
public struct WorkloadMetrics: Sendable {
    let fsyncs: CoreMetrics.Timer
    let snapshots: CoreMetrics.Timer
    /// By peer host.
    let acknowledgements: [String: CoreMetrics.Timer]

    init(host: String, workload: String, peers: [String], factory: any MetricsFactory) {
        let labels = [("host", host), ("workload", workload)]
        fsyncs = CoreMetrics.Timer(label: MetricFamily.dataFsyncSeconds.name, dimensions: labels, factory: factory)
        snapshots = CoreMetrics.Timer(
            label: MetricFamily.snapshotDurationSeconds.name, dimensions: labels, factory: factory)
        acknowledgements = Dictionary(
            peers.map { peer in
                (
                    peer,
                    CoreMetrics.Timer(
                        label: MetricFamily.replicationAckSeconds.name, dimensions: labels + [("peer", peer)],
                        factory: factory)
                )
            }, uniquingKeysWith: { first, _ in first })
    }

    /// Records nowhere: for a workload whose metrics nobody reads (unit tests of its parts).
    static let discarded = WorkloadMetrics(
        host: "", workload: "", peers: [], factory: NOOPMetricsHandler.instance)

    /// One fsync, fdatasync or directory fsync on the data dir, from its request to its answer.
    func fsynced(_ latency: Duration) { fsyncs.record(duration: latency) }

    /// One committed snapshot.
    func snapshotted(_ duration: Duration) { snapshots.record(duration: duration) }

    /// One record batch `peer` acknowledged, `latency` after it was sent. Unknown peers are
    /// not recorded (the config names every peer).
    func acknowledged(by peer: String, after latency: Duration) {
        acknowledgements[peer]?.record(duration: latency)
    }
}
