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

    /// A `running` marker that exists but cannot be read refuses the start: it may hide a
    /// crash of the host. (Before the fix it counted as a clean start.)
    func testUnreadableMarkerRefusesToStart() throws {
        XCTAssertEqual(mkdir(root + "/journal/running", 0o700), 0)  // exists, read fails (EISDIR)
        XCTAssertThrowsError(
            try Checkpoints.checkCleanStart(workload, journalEnd: Position(epoch: 1, seq: 5))
        ) { error in
            XCTAssertTrue("\(error)".contains("cannot read the clean-start marker \(root)/journal/running"), "\(error)")
        }
    }

    func testMissingMarkerIsACleanStartAndMarkersRoundTrip() throws {
        XCTAssertNoThrow(try Checkpoints.checkCleanStart(workload, journalEnd: Position(epoch: 1, seq: 5)))
        try Checkpoints.markRunning(workload)
        // The same boot: the agent died, the host did not.
        XCTAssertNoThrow(try Checkpoints.checkCleanStart(workload, journalEnd: Position(epoch: 1, seq: 5)))
        // Another boot with the backing dir flushed only through seq 3: refused.
        try Checkpoints.writeAtomically(root + "/journal", "running", "another-boot\n")
        try Checkpoints.flush(workload, through: Position(epoch: 1, seq: 3))
        XCTAssertEqual(Checkpoints.read(root + "/journal"), Position(epoch: 1, seq: 3))
        XCTAssertThrowsError(try Checkpoints.checkCleanStart(workload, journalEnd: Position(epoch: 1, seq: 5)))
        XCTAssertNoThrow(try Checkpoints.checkCleanStart(workload, journalEnd: Position(epoch: 1, seq: 3)))
        Checkpoints.markStopped(workload)
        XCTAssertNoThrow(try Checkpoints.checkCleanStart(workload, journalEnd: Position(epoch: 1, seq: 5)))
        let names = try FileManager.default.contentsOfDirectory(atPath: root + "/journal").sorted()
        XCTAssertEqual(names, ["checkpoint"], "no temp files are left behind")
    }
}
