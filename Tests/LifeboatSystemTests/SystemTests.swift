import Foundation
import Glibc
import LifeboatCore
import SystemPackage
import XCTest

@testable import LifeboatSystem

final class FileIOTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        var template = Array("/tmp/lifeboat-system-XXXXXX".utf8CString)
        directory = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func contents(_ path: String) throws -> [UInt8]? { try FileIO.real.readFileIfPresent(path) }

    func testWriteAllRetriesInterruptsAndShortWrites() throws {
        let faults = FaultyCalls([.init(.write, EINTR, times: 2), .init(.pwrite, EINTR, times: 2)])
        let io = FileIO(faults)
        let path = directory + "/f"
        let fd = try io.open(path, O_RDWR | O_CREAT, call: "create")
        defer { close(fd) }
        let bytes = [UInt8](repeating: 9, count: 100_000)
        try bytes.withUnsafeBytes { buffer in
            try Result { () throws(SystemError) in try io.writeAll(fd, buffer, path: path) }.get()
            try Result { () throws(SystemError) in try io.pwriteAll(fd, buffer, at: 200_000, path: path) }.get()
        }
        XCTAssertEqual(faults.injected(.write), 2)
        XCTAssertEqual(faults.injected(.pwrite), 2)
        let read = try XCTUnwrap(try contents(path))
        XCTAssertEqual(read.count, 300_000)
        XCTAssertEqual(Array(read[0..<100_000]), bytes)
        XCTAssertEqual(Array(read[200_000...]), bytes)
    }

    func testFailuresCarryTheCallThePathAndTheErrno() throws {
        let io = FileIO(FaultyCalls([.init(.write, ENOSPC), .init(.fsync, EIO)]))
        let path = directory + "/f"
        let fd = try io.open(path, O_RDWR | O_CREAT, call: "create")
        defer { close(fd) }
        do {
            try [UInt8](repeating: 1, count: 10).withUnsafeBytes { buffer in
                try Result { () throws(SystemError) in try io.writeAll(fd, buffer, path: path) }.get()
            }
            XCTFail("the write should fail")
        } catch let error as SystemError {
            XCTAssertEqual(error, SystemError("write", path, .noSpace))
            XCTAssertTrue(error.isNoSpace)
            let shown = LifeboatError(error, action: "writing journal segment in", path: directory)
            XCTAssertEqual(shown.message, "no space left on device while writing journal segment in \(directory)")
            XCTAssertEqual((shown.underlying as? SystemError)?.errno, .noSpace)
        }
        XCTAssertThrowsError(try io.fsync(fd, path: path)) { error in
            XCTAssertEqual(error as? SystemError, SystemError("fsync", path, .ioError))
        }
    }

    func testWriteFileAtomicallyLeavesNothingPartialOnFailure() throws {
        try FileIO.real.writeFileAtomically(directory: directory, name: "x", bytes: Array("old\n".utf8))
        for rule in [
            FaultyCalls.Rule(.write, ENOSPC), .init(.fsync, EIO), .init(.rename, EIO),
            .init(.fsync, EIO, where: { [directory] in $0 == directory }),
        ] {
            let io = FileIO(FaultyCalls([rule]))
            XCTAssertThrowsError(
                try io.writeFileAtomically(directory: directory, name: "x", bytes: Array("new\n".utf8))
            ) { error in
                XCTAssertEqual((error as? SystemError)?.code, rule.errno, "\(rule.call): \(error)")
            }
            let names = try FileIO.real.listNames(directory)
            XCTAssertEqual(names, ["x"], "\(rule.call): no temp file is left behind")
            if rule.call != .fsync || rule.matches("/not/the/dir") {
                XCTAssertEqual(try contents(directory + "/x"), Array("old\n".utf8), "\(rule.call)")
            }
        }
        let faults = FaultyCalls([.init(.write, EINTR, times: 1), .init(.fsync, EINTR, times: 2)])
        try FileIO(faults).writeFileAtomically(directory: directory, name: "x", bytes: Array("new\n".utf8))
        XCTAssertEqual(try contents(directory + "/x"), Array("new\n".utf8))
        XCTAssertEqual(faults.injected(.fsync), 2)
    }

    func testListingAndExistenceNeverReadAFailureAsAbsent() throws {
        try FileIO.real.writeFileAtomically(directory: directory, name: "a", bytes: [1])
        XCTAssertEqual(try FileIO.real.listNames(directory), ["a"])
        XCTAssertThrowsError(try FileIO.real.listDirectory(directory + "/missing")) { error in
            XCTAssertEqual((error as? SystemError)?.isNotFound, true)
        }
        let failing = FileIO(FaultyCalls([.init(.listDirectory, EIO), .init(.access, EACCES)]))
        XCTAssertThrowsError(try failing.listDirectory(directory)) { error in
            XCTAssertEqual((error as? SystemError)?.errno, .ioError)
        }
        XCTAssertThrowsError(try failing.exists(directory + "/a")) { error in
            XCTAssertEqual((error as? SystemError)?.errno, .permissionDenied)
        }
        XCTAssertTrue(try FileIO.real.exists(directory + "/a"))
        XCTAssertFalse(try FileIO.real.exists(directory + "/b"))
        XCTAssertNil(try FileIO.real.status(directory + "/b"))
        XCTAssertNotNil(try FileIO.real.status(directory + "/a"))
        XCTAssertNil(try contents(directory + "/b"))
        XCTAssertThrowsError(try contents(directory)) { error in  // a directory cannot be read
            XCTAssertEqual((error as? SystemError)?.errno, .isDirectory)
        }
    }
}

final class SmallHelperTests: XCTestCase {
    func testHostPortParsing() {
        XCTAssertEqual(HostPort(parsing: "127.0.0.1:7440"), HostPort(host: "127.0.0.1", port: 7440))
        XCTAssertEqual(HostPort(parsing: "[::1]:80")?.host, "[::1]")
        XCTAssertEqual(HostPort(parsing: "host:0")?.port, 0)
        for bad in ["", "host", ":80", "host:", "host:x", "host:70000", "host:-1"] {
            XCTAssertNil(HostPort(parsing: bad), bad)
        }
    }

    struct BindFailure: Error, ErrnoCarrying { var errnoCode: Int32 }

    func testAddressInUseIsMatchedByErrno() {
        XCTAssertTrue(isAddressInUse(BindFailure(errnoCode: EADDRINUSE)))
        XCTAssertFalse(isAddressInUse(BindFailure(errnoCode: EACCES)))
        XCTAssertTrue(isAddressInUse(SystemError("bind", "127.0.0.1:1", .addressInUse)))
        XCTAssertFalse(isAddressInUse(LifeboatError(.operationFailed, "Address already in use")))
    }

    func testClockAndOmittedTime() {
        let first = monotonicNanoseconds()
        let seconds = monotonicSeconds()
        XCTAssertGreaterThanOrEqual(monotonicNanoseconds(), first)
        XCTAssertGreaterThanOrEqual(seconds, Double(first) / 1e9)
        XCTAssertEqual(FileTimes.omit, (1 << 30) - 2)
    }

    func testErrorWordingForOperators() {
        let denied = LifeboatError(SystemError("rename", "/r/x", .permissionDenied))
        XCTAssertEqual(denied.message, "permission denied while renaming to /r/x")
        let plain = LifeboatError(SystemError("fsync directory", "/r", .ioError))
        XCTAssertEqual(plain.message, "syncing directory /r failed: \(errnoText(EIO))")
        let journal = LifeboatError(SystemError("write", "/j", .permissionDenied), adviseAccess: false)
        XCTAssertEqual(journal.message, "writing /j failed: \(errnoText(EACCES))")
    }
}
