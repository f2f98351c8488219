import Foundation
import Glibc
import LifeboatCore
import XCTest

@testable import LifeboatAgent

final class CheckpointTests: XCTestCase {
    private var root = ""

    override func setUpWithError() throws {
        var template = Array("/tmp/lifeboat-checkpoints-XXXXXX".utf8CString)
        root = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
        for sub in ["journal", "backing"] { XCTAssertEqual(mkdir(root + "/" + sub, 0o700), 0) }
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: root)
    }

    private var workload: WorkloadConfiguration {
        WorkloadConfiguration(
            name: "w", capture: .fuse, dataDir: root + "/data", backingDir: root + "/backing",
            journalDir: root + "/journal")
    }

    /// The markers round-trip through writeFileAtomically and leave no temp files behind.
    /// (Whether a start is clean is decided by UncleanStart, which scripts/tests/unclean-stop.sh
    /// drives against the real agent.)
    func testMarkersRoundTrip() throws {
        try Checkpoints.markRunning(workload)
        XCTAssertEqual(access(root + "/journal/running", F_OK), 0)
        try Checkpoints.flush(workload, through: Position(epoch: 1, seq: 3))
        XCTAssertEqual(Checkpoints.read(root + "/journal"), Position(epoch: 1, seq: 3))
        Checkpoints.markStopped(workload)
        let names = try FileManager.default.contentsOfDirectory(atPath: root + "/journal").sorted()
        XCTAssertEqual(names, ["checkpoint"], "no temp files are left behind")
    }
}
