import Logging
import NIOCore
import Synchronization

/// Open HTTP connections per client address (``ClientAddress``), capped: one client cannot hold
/// the connections (and so the descriptors) every other client needs.
final class ConnectionsPerAddress: Sendable {
    /// Connections one address may hold; 0 = no cap.
    let limit: Int
    private let counts = Mutex<[String: Int]>([:])

    init(limit: Int) {
        self.limit = limit
    }

    /// Counts a new connection from `key`; false (nothing counted) when `key` is at the cap.
    func admit(_ key: String) -> Bool {
        counts.withLock { counts in
            let open = counts[key, default: 0]
            guard limit == 0 || open < limit else { return false }
            counts[key] = open + 1
            return true
        }
    }

    /// Forgets a connection counted by ``admit(_:)``.
    func release(_ key: String) {
        counts.withLock { counts in
            guard let open = counts[key] else { return }
            counts[key] = open > 1 ? open - 1 : nil
        }
    }

    /// Open connections from `key`.
    func open(_ key: String) -> Int {
        counts.withLock { $0[key, default: 0] }
    }
}

/// The first handler of every HTTP connection: counts it against its address, and answers a
/// connection over the cap with 429 and closes it before anything of it is read.
final class AddressCapHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let connections: ConnectionsPerAddress
    private let logger: Logger
    /// The key this connection was counted under, until it closes.
    private var counted: String?
    private var refused = false

    init(connections: ConnectionsPerAddress, logger: Logger) {
        self.connections = connections
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { admit(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        admit(context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        release()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        release()
    }

    private func admit(_ context: ChannelHandlerContext) {
        guard counted == nil, !refused else { return }
        let key = ClientAddress.key(context.channel.remoteAddress)
        if connections.admit(key) {
            counted = key
            return
        }
        refused = true
        logger.debug("refused a connection over the per-address cap", metadata: ["address": "\(key)"])
        let answer = RawHTTPAnswer.bytes(
            status: 429, reason: "Too Many Requests",
            message:
                "too_many_connections: \(key) already holds \(connections.limit) open connections "
                + "(http.max_connections_per_address); close one before opening another")
        context.writeAndFlush(wrapOutboundOut(answer), promise: nil)
        context.close(promise: nil)
    }

    private func release() {
        guard let key = counted else { return }
        counted = nil
        connections.release(key)
    }
}
