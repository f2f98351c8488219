import Foundation
import Glibc
import XCTest

/// A test case with a real FUSE mount point: `root/data` (the mount point) and `root/backing`
/// in a fresh temp dir. Skips without root and /dev/fuse; unmounts and removes everything
/// afterwards, also when the test failed.
class MountTestCase: XCTestCase {
    var root = ""

    /// The prefix of the temp dir's name.
    class var rootPrefix: String { "lifeboat-capture-" }

    override func setUpWithError() throws {
        try XCTSkipUnless(getuid() == 0 && access("/dev/fuse", R_OK | W_OK) == 0, "needs root and /dev/fuse")
        root = NSTemporaryDirectory() + Self.rootPrefix + UUID().uuidString
        for sub in ["data", "backing"] {
            try FileManager.default.createDirectory(atPath: root + "/" + sub, withIntermediateDirectories: true)
        }
    }

    override func tearDownWithError() throws {
        if !root.isEmpty {
            umount2(root + "/data", Int32(MNT_DETACH))
            try? FileManager.default.removeItem(atPath: root)
        }
    }
}
