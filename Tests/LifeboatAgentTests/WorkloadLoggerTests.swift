import InMemoryLogging
import LifeboatCore
import Logging
import XCTest

@testable import LifeboatAgent

/// Every log line of a workload names the host, the workload, its epoch and its role as they
/// are when the line is written.
final class WorkloadLoggerTests: XCTestCase {
    func testLinesCarryHostWorkloadEpochAndRoleAsTheyChange() {
        let log = LogLines()
        var base = log.logger
        base[metadataKey: "host"] = "h1"
        let context = WorkloadLogContext(role: .peer)
        let epoch = EpochBox(3)
        context.readEpoch { epoch.value }
        let logger = context.logger(base, workload: "db")

        logger.info("following")
        epoch.value = 4
        context.set(role: .primary)
        logger.warning("took over")

        let entries = log.handler.entries
        XCTAssertEqual(entries.count, 2)
        XCTAssertEqual(entries[0].metadata["host"], "h1")
        XCTAssertEqual(entries[0].metadata["workload"], "db")
        XCTAssertEqual(entries[0].metadata["epoch"], "3")
        XCTAssertEqual(entries[0].metadata["role"], "peer")
        XCTAssertEqual(entries[1].metadata["epoch"], "4")
        XCTAssertEqual(entries[1].metadata["role"], "primary")
        XCTAssertEqual(entries[1].level, .warning)
    }

    func testEveryRoleRoundTripsThroughTheContext() {
        let context = WorkloadLogContext(role: .standalone)
        for role in WorkloadRole.allCases {
            context.set(role: role)
            XCTAssertEqual(context.role, role)
        }
        XCTAssertEqual(context.epoch, 0, "no epoch source yet: epoch 0")
    }
}

/// An epoch a test moves by hand.
private final class EpochBox: @unchecked Sendable {
    var value: UInt64
    init(_ value: UInt64) { self.value = value }
}
