import Foundation
import LifeboatAPI
import LifeboatCore
import XCTest

/// The API models write exactly today's JSON, and read it back into the same values.
final class APIModelTests: XCTestCase {
    private func assertToday<Value: Codable & Equatable>(
        _ value: Value, _ today: String, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let written = String(decoding: try AgentJSON.encode(value), as: UTF8.self)
        XCTAssertEqual(written, today, file: file, line: line)
        let read = try AgentJSON.decode(Value.self, from: Data(today.utf8))
        XCTAssertEqual(read, value, "reading today's JSON gives the value back", file: file, line: line)
    }

    func testSnapshotReportIsTodaysJSON() throws {
        try assertToday(Fixtures.snapshot, snapshotJSON)
        XCTAssertTrue(snapshotJSON.contains(#""stall_ms" : 3.25"#))
    }

    func testRecoveryReportIsTodaysJSON() throws { try assertToday(Fixtures.recovery, recoveryJSON) }

    func testClusterStatusIsTodaysJSON() throws {
        try assertToday(Fixtures.cluster, clusterJSON)
        try assertToday(AgentStatus.cluster(Fixtures.cluster), clusterJSON)
    }

    func testStandaloneStatusIsTodaysJSON() throws {
        try assertToday(Fixtures.standalone, standaloneJSON)
        try assertToday(AgentStatus.standalone(Fixtures.standalone), standaloneJSON)
    }

    func testFailoverRequestAndAnswerAreTodaysJSON() throws {
        try assertToday(FailoverRequest(to: "h3"), failoverRequestJSON)
        try assertToday(FailoverRequest(), emptyFailoverRequestJSON)
        try assertToday(Fixtures.failoverAnswer, failoverAnswerJSON)
        // What `lifeboat failover` sent before (compact, from JSONSerialization) still reads.
        XCTAssertEqual(try AgentJSON.decode(FailoverRequest.self, from: Data(#"{"to":"h3"}"#.utf8)).to, "h3")
        XCTAssertNil(try AgentJSON.decode(FailoverRequest.self, from: Data("{}".utf8)).to)
    }

    func testErrorBodyIsTodaysJSON() throws {
        try assertToday(Fixtures.error, errorJSON)
        XCTAssertEqual(ErrorBody(error: "boom").exitCode, 1, "an error answer without a code means exit 1")
    }

    func testStatusDecodesAsTheKindTheAgentSent() throws {
        guard case .cluster = try AgentJSON.decode(AgentStatus.self, from: Data(clusterJSON.utf8)) else {
            return XCTFail("a clustered status read as standalone")
        }
        guard case .standalone = try AgentJSON.decode(AgentStatus.self, from: Data(standaloneJSON.utf8)) else {
            return XCTFail("a standalone status read as clustered")
        }
        XCTAssertThrowsError(try AgentJSON.decode(AgentStatus.self, from: Data(#"{"host": "h1"}"#.utf8)))
        XCTAssertEqual(AgentStatus.cluster(Fixtures.cluster).peers.map(\.host), ["h1", "h3"])
        XCTAssertEqual(AgentStatus.standalone(Fixtures.standalone).peers, [])
    }

    func testStatusListIsTodaysLifeboatStatusJSON() throws {
        XCTAssertEqual(String(decoding: try Fixtures.overview.json(), as: UTF8.self), statusListJSON)
        XCTAssertEqual(
            String(decoding: try Fixtures.standaloneOverview.json(), as: UTF8.self), standaloneStatusListJSON)
        let read = try AgentJSON.decode(ClusterOverview.self, from: Data(statusListJSON.utf8))
        XCTAssertEqual(read, Fixtures.overview)
    }

    func testTableIsTodaysLifeboatStatus() {
        XCTAssertEqual(Fixtures.overview.table(), statusTable + "\n")
        XCTAssertEqual(Fixtures.standaloneOverview.table(), standaloneStatusTable + "\n")
    }

    func testRolesAndKindsKeepTheirRawValues() {
        XCTAssertEqual(
            WorkloadRole.allCases.map(\.rawValue), ["standalone", "peer", "recovering", "primary", "fenced", "stopped"])
        XCTAssertEqual(
            [RecoveryKind.bootstrap, .failover, .switchover].map(\.rawValue), ["bootstrap", "failover", "switchover"])
    }
}
