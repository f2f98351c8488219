public import LifeboatCore
import LifeboatJournal

/// What agents say to each other over the peer protocol (Docs/replication.md).
///
/// On the wire every message is `length u32, crc32c(body) u32, body` with `body` = type u8
/// and the fields below; integers little-endian. Journal records travel as the journal's own
/// checksummed frames, so a peer checks each record before it keeps it.
public enum PeerMessage: Sendable, Equatable {
    /// Primary → peer, first on a stream connection.
    case hello(Hello)
    /// Peer → primary: accepted; what the peer holds durably.
    case welcome(durable: Position?)
    /// Either way: refused, with the reason; the connection closes after it.
    case refused(String)
    /// Primary → peer (stream), or peer → recovering host (fetch): whole journal frames.
    case records([UInt8])
    /// Peer → primary: everything through this position is durable here.
    case ack(Position)
    /// Primary → peer: start your journal over after this position (you are behind the
    /// primary's oldest record, or hold records its history does not have).
    case reset(after: Position)
    /// Primary → peer: a snapshot at this seq is committed; drop records through it.
    case retain(through: UInt64)
    /// Recovering host → peer: send every record from this seq on, then `end`.
    case fetch(workload: String, from: UInt64)
    /// Peer → recovering host: the fetch is complete through this position.
    case end(last: Position?)
    /// Anyone → peer: what do you hold of this workload?
    case query(workload: String)
    /// Peer → asker: its durable position, the highest epoch it accepted, its role, and
    /// whether its backing dir holds seed data (files no snapshot or journal covers, that a
    /// first primary must start from). `seeded` is one trailing byte: an older agent neither
    /// sends it (read as false) nor reads it.
    case position(durable: Position?, epoch: UInt64, role: String, seeded: Bool = false)

    public struct Hello: Sendable, Equatable {
        public var workload: String
        public var host: String
        public var epoch: UInt64
        public var history: [EpochStart]

        public init(workload: String, host: String, epoch: UInt64, history: [EpochStart]) {
            self.workload = workload
            self.host = host
            self.epoch = epoch
            self.history = history
        }
    }

    /// The body bytes (type and fields).
    func encoded() -> [UInt8] {
        var w = ByteWriter()
        switch self {
        case .hello(let hello):
            w.u8(1)
            w.data(Array(hello.workload.utf8))
            w.data(Array(hello.host.utf8))
            w.u64(hello.epoch)
            w.u32(UInt32(hello.history.count))
            for start in hello.history {
                w.u64(start.epoch)
                w.u64(start.firstSeq)
            }
        case .welcome(let durable):
            w.u8(2)
            PeerMessage.put(durable, &w)
        case .refused(let reason):
            w.u8(3)
            w.data(Array(reason.utf8))
        case .records(let frames):
            w.u8(4)
            w.raw(frames)
        case .ack(let position):
            w.u8(5)
            PeerMessage.put(position, &w)
        case .reset(let after):
            w.u8(6)
            PeerMessage.put(after, &w)
        case .retain(let through):
            w.u8(7)
            w.u64(through)
        case .fetch(let workload, let from):
            w.u8(8)
            w.data(Array(workload.utf8))
            w.u64(from)
        case .end(let last):
            w.u8(9)
            PeerMessage.put(last, &w)
        case .query(let workload):
            w.u8(10)
            w.data(Array(workload.utf8))
        case .position(let durable, let epoch, let role, let seeded):
            w.u8(11)
            PeerMessage.put(durable, &w)
            w.u64(epoch)
            w.data(Array(role.utf8))
            w.u8(seeded ? 1 : 0)
        }
        return w.bytes
    }

    static func decode(_ body: [UInt8]) throws -> PeerMessage {
        var r = ByteReader(body, context: "peer message")
        let type = try r.u8()
        func text() throws -> String { String(decoding: try r.data(), as: UTF8.self) }
        switch type {
        case 1:
            let workload = try text()
            let host = try text()
            let epoch = try r.u64()
            let count = Int(try r.u32())
            guard count <= 1 << 20 else { throw LifeboatError(.integrity, "peer message: history too long") }
            var history: [EpochStart] = []
            for _ in 0..<count { history.append(EpochStart(epoch: try r.u64(), firstSeq: try r.u64())) }
            return .hello(Hello(workload: workload, host: host, epoch: epoch, history: history))
        case 2: return .welcome(durable: try optionalPosition(&r))
        case 3: return .refused(try text())
        case 4: return .records(try r.raw(r.remaining))
        case 5: return .ack(try position(&r))
        case 6: return .reset(after: try position(&r))
        case 7: return .retain(through: try r.u64())
        case 8: return .fetch(workload: try text(), from: try r.u64())
        case 9: return .end(last: try optionalPosition(&r))
        case 10: return .query(workload: try text())
        case 11:
            let durable = try optionalPosition(&r)
            let epoch = try r.u64()
            let role = try text()
            let seeded = r.remaining > 0 ? try r.u8() == 1 : false
            return .position(durable: durable, epoch: epoch, role: role, seeded: seeded)
        default: throw LifeboatError(.integrity, "peer message of unknown type \(type)")
        }
    }

    private static func put(_ position: Position?, _ w: inout ByteWriter) {
        guard let position else {
            w.u8(0)
            return
        }
        w.u8(1)
        w.u64(position.epoch)
        w.u64(position.seq)
    }

    private static func position(_ r: inout ByteReader) throws -> Position {
        guard let position = try optionalPosition(&r) else {
            throw LifeboatError(.integrity, "peer message: a position is missing")
        }
        return position
    }

    private static func optionalPosition(_ r: inout ByteReader) throws -> Position? {
        guard try r.u8() == 1 else { return nil }
        return Position(epoch: try r.u64(), seq: try r.u64())
    }
}
