import Foundation
import LifeboatCore
import LifeboatJournal
public import LifeboatSystem
public import NIOCore
import NIOPosix

/// Splits the byte stream into peer messages and checks each one's checksum.
struct PeerMessageDecoder: ByteToMessageDecoder {
    typealias InboundOut = PeerMessage
    /// Largest message accepted: a batch of records is at most a few MiB.
    static let maxBody = 64 << 20

    mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard buffer.readableBytes >= 8,
            let length = buffer.getInteger(at: buffer.readerIndex, endianness: .little, as: UInt32.self),
            let crc = buffer.getInteger(at: buffer.readerIndex + 4, endianness: .little, as: UInt32.self)
        else { return .needMoreData }
        guard Int(length) <= PeerMessageDecoder.maxBody, length > 0 else {
            throw LifeboatError(.integrity, "peer message of \(length) bytes is out of bounds")
        }
        guard buffer.readableBytes >= 8 + Int(length) else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: 8)
        let body = buffer.readBytes(length: Int(length))!
        guard CRC32C.checksum(body) == crc else {
            throw LifeboatError(.integrity, "peer message fails its checksum")
        }
        context.fireChannelRead(wrapInboundOut(try PeerMessage.decode(body)))
        return .continue
    }
}

/// Frames outgoing peer messages.
struct PeerMessageEncoder: MessageToByteEncoder {
    typealias OutboundIn = PeerMessage

    func encode(data: PeerMessage, out: inout ByteBuffer) throws {
        let body = data.encoded()
        out.writeInteger(UInt32(body.count), endianness: .little)
        out.writeInteger(CRC32C.checksum(body), endianness: .little)
        out.writeBytes(body)
    }
}

/// Messages received on one connection, waiting for the thread that handles them. When more
/// than `highWater` bytes wait, the connection stops reading (TCP backpressure).
final class Inbox: @unchecked Sendable {
    private let condition = NSCondition()
    private var messages: [PeerMessage] = []
    private var head = 0
    private var bytes = 0
    private var closed: String?
    private var paused = false
    var channel: (any Channel)?
    static let highWater = 32 << 20

    func push(_ message: PeerMessage) {
        condition.lock()
        messages.append(message)
        if case .records(let frames) = message { bytes += frames.count }
        let pause = bytes > Inbox.highWater && !paused
        if pause { paused = true }
        condition.signal()
        condition.unlock()
        if pause { _ = channel?.setOption(ChannelOptions.autoRead, value: false) }
    }

    func close(_ reason: String) {
        condition.lock()
        if closed == nil { closed = reason }
        condition.broadcast()
        condition.unlock()
    }

    /// The next message; nil on timeout. Throws once the connection is closed and drained.
    func pop(timeout: Double) throws -> PeerMessage? {
        condition.lock()
        let deadline = Date(timeIntervalSinceNow: timeout)
        while head == messages.count {
            if let closed {
                condition.unlock()
                throw LifeboatError(.operationFailed, closed)
            }
            if !condition.wait(until: deadline) {
                condition.unlock()
                return nil
            }
        }
        let message = messages[head]
        head += 1
        if head > 1024 {
            messages.removeFirst(head)
            head = 0
        }
        if case .records(let frames) = message { bytes -= frames.count }
        let resume = paused && bytes < Inbox.highWater / 2
        if resume { paused = false }
        condition.unlock()
        if resume { _ = channel?.setOption(ChannelOptions.autoRead, value: true) }
        return message
    }
}

/// Hands every decoded message to the inbox and closes it when the connection ends.
final class InboxHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = PeerMessage
    let inbox: Inbox

    init(_ inbox: Inbox) { self.inbox = inbox }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        inbox.push(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        inbox.close("the peer closed the connection")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        inbox.close("peer connection failed: \(error)")
        context.close(promise: nil)
    }
}

/// One TCP connection between agents, used from ordinary threads: `send` and `receive`
/// block the calling thread, never an event loop.
public final class PeerConnection: Sendable {
    let channel: any Channel
    let inbox: Inbox

    init(channel: any Channel, inbox: Inbox) {
        self.channel = channel
        self.inbox = inbox
    }

    static func configure(_ channel: any Channel, _ inbox: Inbox) throws {
        inbox.channel = channel
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(PeerMessageDecoder()))
        try channel.pipeline.syncOperations.addHandler(MessageToByteHandler(PeerMessageEncoder()))
        try channel.pipeline.syncOperations.addHandler(InboxHandler(inbox))
    }

    /// Connects to `address` (`HOST:PORT`) within `timeout` seconds.
    public static func connect(to address: String, timeout: Double = 2) throws -> PeerConnection {
        let (host, port) = try splitAddress(address)
        let inbox = Inbox()
        let channel = try ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.milliseconds(Int64(timeout * 1000)))
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try configure(channel, inbox) }
            }
            .connect(host: host, port: port).wait()
        return PeerConnection(channel: channel, inbox: inbox)
    }

    /// Sends one message; returns once it is handed to the socket (so a slow reader slows
    /// the sender down).
    public func send(_ message: PeerMessage) throws {
        try channel.writeAndFlush(message).wait()
    }

    /// Sends without waiting for the socket.
    public func post(_ message: PeerMessage) {
        channel.writeAndFlush(message, promise: nil)
    }

    /// The next message, or nil after `timeout` seconds. Throws when the connection closed.
    public func receive(timeout: Double) throws -> PeerMessage? {
        try inbox.pop(timeout: timeout)
    }

    public func close() {
        channel.close(promise: nil)
    }
}

/// Splits `HOST:PORT` (`HostPort`), naming the address when it is not one.
public func splitAddress(_ address: String) throws -> (String, Int) {
    guard let parsed = HostPort(parsing: address) else {
        throw LifeboatError(.badInput, "address \(address) is not HOST:PORT")
    }
    return (parsed.host, parsed.port)
}

/// NIO's socket errors carry the errno: `isAddressInUse` matches them by it.
extension IOError: ErrnoCarrying {}

/// Listens for peer connections; each accepted connection is handed to `accept` on a
/// thread of its own.
public final class PeerListener: Sendable {
    let channel: any Channel

    public init(address: String, accept: @escaping @Sendable (PeerConnection) -> Void) throws {
        let (host, port) = try splitAddress(address)
        do {
            channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let inbox = Inbox()
                        try PeerConnection.configure(channel, inbox)
                        let connection = PeerConnection(channel: channel, inbox: inbox)
                        let thread = Thread { accept(connection) }
                        thread.name = "peer-connection"
                        thread.start()
                    }
                }
                .bind(host: host, port: port).wait()
        } catch {
            let reason = isAddressInUse(error) ? "the address is already in use" : "\(error)"
            throw LifeboatError(
                .operationFailed, "the peer protocol cannot listen on \(address): \(reason)",
                hint: "choose a free `peer_listen` address")
        }
    }

    public func close() {
        try? channel.close().wait()
    }
}
