import LifeboatCore
import XCTest

final class CoreTests: XCTestCase {
    func testByteSizeFormatsAndParses() {
        XCTAssertEqual(ByteSize.format(512), "512 B")
        XCTAssertEqual(ByteSize.format(1536), "1.50 KiB")
        XCTAssertEqual(ByteSize.format(5 << 30), "5.00 GiB")
        XCTAssertEqual(ByteSize.parse("64K"), 64 << 10)
        XCTAssertEqual(ByteSize.parse("16MiB"), 16 << 20)
        XCTAssertNil(ByteSize.parse("12 parsecs"))
        XCTAssertNil(ByteSize.parse("99999999999999T"))
    }

    func testHexRoundTripAndRejectsGarbage() {
        XCTAssertEqual(Hex.encode([0x00, 0xab, 0xff]), "00abff")
        XCTAssertEqual(Hex.decode("00ABff"), [0x00, 0xab, 0xff])
        XCTAssertNil(Hex.decode("abc"))
        XCTAssertNil(Hex.decode("zz"))
    }

    func testPositionOrdersByEpochThenSeq() {
        XCTAssertLessThan(Position(epoch: 1, seq: 900), Position(epoch: 2, seq: 1))
        XCTAssertEqual(Position(parsing: "3:17"), Position(epoch: 3, seq: 17))
        XCTAssertNil(Position(parsing: "3"))
    }

    func testTimestampRoundTripsThroughText() {
        let time = Timestamp(seconds: 1_795_000_000, nanoseconds: 123_456_789)
        XCTAssertEqual(Timestamp(iso8601: time.iso8601), time)
        XCTAssertEqual(time.iso8601.count, 30)
    }

    func testErrorDescriptionIsOneLineWithHint() {
        let error = LifeboatError(.locked, "repository /r is locked", hint: "wait")
        XCTAssertEqual(error.description, "repository /r is locked; wait")
        XCTAssertEqual(error.kind.exitCode, 11)
    }
}
