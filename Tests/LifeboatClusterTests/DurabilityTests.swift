import Foundation
import Glibc
import LifeboatCore
import LifeboatJournal
import LifeboatSystem
import Logging
import XCTest

@testable import LifeboatCluster

/// Faults injected into the local coordinator and the replica journal's epoch file.
final class DurabilityTests: XCTestCase {
    private var root = ""

    override func setUpWithError() throws {
        var template = Array("/tmp/lifeboat-cluster-faults-XXXXXX".utf8CString)
        root = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: root)
    }

    private let lease = Lease(workload: "w", holder: "a", epoch: 1, expiresAt: 10, version: 0, history: [])

    /// A lease whose rename is not yet durable is not taken: the directory fsync's failure
    /// fails the swap. (Before the fix its result was ignored and the swap returned the lease.)
    func testFailedDirectoryFsyncFailsTheCompareAndSwap() throws {
        let directory = root + "/coord"
        let faults = FaultyCalls([.init(.fsync, EIO, where: { $0 == directory })])
        let coordinator = try LocalCoordinator(directory: directory, calls: faults)
        XCTAssertThrowsError(try coordinator.compareAndSwap("w", expectedVersion: nil, lease)) { error in
            XCTAssertEqual(((error as? LifeboatError)?.underlying as? SystemError)?.code, EIO, "\(error)")
            XCTAssertTrue("\(error)".contains("cannot write lease \(directory)/w.lease"), "\(error)")
        }
        XCTAssertEqual(faults.injected(.fsync), 1)
    }

    func testWriteFailuresFailTheSwapAndInterruptsAreRetried() throws {
        let directory = root + "/coord"
        for code in [ENOSPC, EIO] {
            let coordinator = try LocalCoordinator(directory: directory, calls: FaultyCalls([.init(.write, code)]))
            XCTAssertThrowsError(try coordinator.compareAndSwap("w", expectedVersion: nil, lease)) { error in
                XCTAssertEqual(((error as? LifeboatError)?.underlying as? SystemError)?.code, code)
            }
            XCTAssertNil(try LocalCoordinator(directory: directory).lease("w"))
        }
        let faults = FaultyCalls([.init(.write, EINTR, times: 2), .init(.fsync, EINTR, times: 2)])
        let coordinator = try LocalCoordinator(directory: directory, calls: faults)
        XCTAssertEqual(try coordinator.compareAndSwap("w", expectedVersion: nil, lease)?.version, 1)
        XCTAssertEqual(try LocalCoordinator(directory: directory).lease("w")?.holder, "a")
        XCTAssertEqual(try FileIO.real.listNames(directory).filter { $0.hasPrefix(".tmp-") }, [])
    }

    /// The accepted epoch is renamed into place through a unique temp file and its directory
    /// is fsynced. (Before the fix: a fixed `accepted-epoch.tmp`, no directory fsync.)
    func testAcceptedEpochIsDurableThroughAUniqueTempFile() throws {
        let directory = root + "/journal"
        let writer = try JournalWriter(directory: directory)
        // A leftover at the old fixed temp name no longer blocks the write.
        XCTAssertEqual(mkdir(directory + "/accepted-epoch.tmp", 0o700), 0)
        let faults = FaultyCalls([.init(.fsync, EIO, where: { $0 == directory })])
        let failing = try ReplicaJournal(workload: "w", writer: writer, calls: faults, logger: quietLogger)
        XCTAssertThrowsError(try failing.accept(epoch: 2)) { error in
            XCTAssertEqual(((error as? LifeboatError)?.underlying as? SystemError)?.code, EIO, "\(error)")
        }
        XCTAssertEqual(failing.acceptedEpoch, 0, "an epoch whose write failed is not taken as accepted")
        let replica = try ReplicaJournal(workload: "w", writer: writer, logger: quietLogger)
        try replica.accept(epoch: 3)
        XCTAssertEqual(replica.acceptedEpoch, 3)
        XCTAssertEqual(try ReplicaJournal(workload: "w", writer: writer, logger: quietLogger).acceptedEpoch, 3)
        XCTAssertThrowsError(try replica.accept(epoch: 2))
    }

    /// An `accepted-epoch` that cannot be read, or holds no epoch, stops the start: read as 0
    /// it would let a primary this host already saw fenced stream to it again.
    func testAnUnreadableOrGarbledAcceptedEpochIsNotTakenForZero() throws {
        let directory = root + "/journal"
        let writer = try JournalWriter(directory: directory)
        try Data("garbage\n".utf8).write(to: URL(fileURLWithPath: directory + "/accepted-epoch"))
        XCTAssertThrowsError(try ReplicaJournal(workload: "w", writer: writer, logger: quietLogger)) { error in
            XCTAssertTrue("\(error)".contains("accepted-epoch does not hold an epoch (it reads 'garbage')"), "\(error)")
        }
        // a directory in its place: open works, the read fails (EISDIR)
        XCTAssertEqual(unlink(directory + "/accepted-epoch"), 0)
        XCTAssertEqual(mkdir(directory + "/accepted-epoch", 0o700), 0)
        XCTAssertThrowsError(try ReplicaJournal(workload: "w", writer: writer, logger: quietLogger)) { error in
            XCTAssertTrue("\(error)".contains("cannot read \(directory)/accepted-epoch: "), "\(error)")
        }
        XCTAssertEqual(rmdir(directory + "/accepted-epoch"), 0)
        try Data("7\n".utf8).write(to: URL(fileURLWithPath: directory + "/accepted-epoch"))
        XCTAssertEqual(try ReplicaJournal(workload: "w", writer: writer, logger: quietLogger).acceptedEpoch, 7)
    }
}
