import Foundation
import Hummingbird
import LifeboatAPI
import LifeboatCapture
import LifeboatCore
import LifeboatJournal
import LifeboatSystem
import NIOCore
public import ServiceLifecycle

/// The agent's HTTP API (JSON), served on the config's `listen` address (Docs/agent.md).
///
/// - `GET /livez`: the process answers.
/// - `GET /readyz`: every workload's data dir is mounted and served (503 otherwise).
/// - `GET /v1/status`: host, workloads, epochs, journal positions, dirty map, last snapshot.
/// - `POST /v1/workloads/NAME/snapshot`: takes a snapshot now; answers its report.
public enum AgentAPI {
    /// The API as a service of the agent's group: it serves until a graceful shutdown, then
    /// stops accepting and finishes the requests in flight. Its run throws if the address
    /// cannot be bound.
    public static func service(_ agent: Agent, onRunning: @escaping @Sendable () -> Void) throws -> APIService {
        let (host, port) = try address(agent.configuration.listen)
        let app = Application(
            router: router(for: agent),
            configuration: .init(address: .hostname(host, port: port), serverName: "lifeboatd"),
            onServerRunning: { _ in onRunning() }, logger: agent.logger)
        return APIService(application: app, listen: agent.configuration.listen)
    }

    /// Every route of the API over `agent`: what `service` serves, and what in-process tests call.
    static func router(for agent: Agent) -> Router<BasicRequestContext> {
        let router = Router()
        router.get("livez") { _, _ in "ok\n" }
        router.get("readyz") { _, _ -> Response in
            if let lost = agent.lostMount {
                return text(.serviceUnavailable, "workload \(lost.configuration.name) is not mounted\n")
            }
            if let cut = agent.supervisors.first(where: { $0.coordinatorError != nil }),
                let problem = cut.coordinatorError
            {
                return text(
                    .serviceUnavailable,
                    "workload \(cut.configuration.name) is \(cut.role.rawValue) and cannot reach the coordinator: \(problem)\n"
                )
            }
            // In a cluster: ready when every workload has a settled role (not recovering or fenced).
            if let busy = agent.supervisors.first(where: {
                $0.role != .primary && $0.role != .peer && $0.role != .standalone
            }) {
                return text(
                    .serviceUnavailable, "workload \(busy.configuration.name) is \(busy.role.rawValue)\n")
            }
            return text(.ok, "ok\n")
        }
        router.get("v1/status") { _, _ -> Response in
            if agent.configuration.cluster != nil { return try json(.ok, clusterStatus(agent)) }
            return try json(.ok, status(agent))
        }
        router.get("metrics") { _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: Metrics.render(agent))))
        }
        router.post("v1/workloads/:name/failover") { request, context -> Response in
            let name = context.parameters.get("name") ?? ""
            guard let controller = agent.controller(name) else {
                return try json(
                    .notFound, ErrorBody(error: "no clustered workload named \(name) on this agent", exitCode: 2))
            }
            let body = try? await request.body.collect(upTo: 1 << 16)
            let target = body.flatMap {
                try? AgentJSON.decode(FailoverRequest.self, from: Data($0.readableBytesView))
            }?.to
            do {
                let started = Date()
                let chosen = try await agent.pool.run { try controller.switchover(to: target) }
                return try json(
                    .ok,
                    FailoverAnswer(
                        workload: name, from: agent.configuration.host, to: chosen,
                        handoverSeconds: Date().timeIntervalSince(started)))
            } catch let error as LifeboatError {
                return try json(
                    error.kind == .badInput ? .conflict : .internalServerError,
                    ErrorBody(error: error.description, exitCode: error.kind.exitCode))
            }
        }
        router.post("v1/workloads/:name/snapshot") { _, context -> Response in
            let name = context.parameters.get("name") ?? ""
            guard let snapshots = agent.snapshots(of: name) else {
                if let controller = agent.controller(name) {
                    return try json(
                        .conflict,
                        ErrorBody(
                            error:
                                "workload \(name) is \(controller.role.rawValue) on \(agent.configuration.host); snapshots are taken by its primary\(controller.status.leaseHolder.map { " (\($0))" } ?? "")",
                            exitCode: 2))
                }
                return try json(.notFound, ErrorBody(error: "no workload named \(name) on this agent", exitCode: 2))
            }
            do {
                let report = try await agent.pool.run { try snapshots.snapshotNow() }
                return try json(.ok, report)
            } catch let error as LifeboatError {
                return try json(
                    .internalServerError, ErrorBody(error: error.description, exitCode: error.kind.exitCode))
            } catch {
                return try json(.internalServerError, ErrorBody(error: "\(error)", exitCode: 1))
            }
        }
        return router
    }

    static func clusterStatus(_ agent: Agent) -> ClusterStatus {
        let cluster = agent.configuration.cluster!
        return ClusterStatus(
            host: agent.configuration.host, repository: agent.configuration.repository,
            coordinator: "\(cluster.backend.rawValue):\(cluster.coordinatorPath)",
            peers: cluster.peers,
            workloads: agent.supervisors.map(\.status))
    }

    static func status(_ agent: Agent) -> StandaloneStatus {
        StandaloneStatus(
            host: agent.configuration.host, repository: agent.configuration.repository,
            workloads: agent.supervisors.compactMap(\.runtime).map { workload in
                let dirty = workload.mount.dirtySummary
                return StandaloneStatus.Workload(
                    name: workload.configuration.name, dataDir: workload.configuration.dataDir,
                    backingDir: workload.configuration.backingDir, journalDir: workload.configuration.journalDir,
                    epoch: workload.journal.epoch, position: workload.journal.writer.lastPosition.map { "\($0)" },
                    durablePosition: workload.journal.writer.durablePosition.map { "\($0)" }, dirtyFiles: dirty.files,
                    dirtyBytes: dirty.bytes, mounted: workload.mount.isServing,
                    lastSnapshot: agent.snapshots(of: workload.configuration.name)?.lastReport)
            })
    }

    static func address(_ listen: String) throws -> (String, Int) {
        guard let parsed = HostPort(parsing: listen) else {
            throw LifeboatError(.badInput, "listen address \(listen) is not HOST:PORT")
        }
        return (parsed.host, parsed.port)
    }

    static func json<Value: Encodable>(_ status: HTTPResponse.Status, _ value: Value) throws -> Response {
        var data = try AgentJSON.encode(value)
        data.append(0x0a)
        return Response(
            status: status, headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func text(_ status: HTTPResponse.Status, _ body: String) -> Response {
        Response(
            status: status, headers: [.contentType: "text/plain"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: body)))
    }
}

/// The HTTP API as a service: a bind failure becomes one clear error.
public struct APIService: Service {
    let application: any Service
    let listen: String

    public func run() async throws {
        do {
            try await application.run()
        } catch {
            let reason = isAddressInUse(error) ? "the address is already in use" : "\(error)"
            throw LifeboatError(
                .operationFailed, "the API cannot listen on \(listen): \(reason)",
                hint: "choose a free `listen` address")
        }
    }
}
