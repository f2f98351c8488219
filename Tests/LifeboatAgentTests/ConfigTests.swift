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
    }
}
