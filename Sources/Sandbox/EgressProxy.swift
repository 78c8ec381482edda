import Failures
import Logging
import NIOCore
import NIOPosix
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The egress proxy of one worker whose upstream server holds a network grant: the only way out
/// of the worker's network namespace.
///
/// The worker's spawn child listens on 127.0.0.1:``port`` inside that namespace and hands the
/// listening socket to the runner (`csb_spawn`), so the runner accepts every connection the
/// server opens to its `HTTP(S)_PROXY`. Each one sends a request head (bounded in size and time):
/// `CONNECT host:port` (answered `200`, then bytes are spliced both ways) or an absolute-form
/// `http://host:port/...` request (forwarded with its request line in origin form, `Host` set to
/// the target and `Connection: close`). Only a target in the grant is connected, by the runner,
/// which resolves the name itself; anything else is answered `403` with a body naming the refusal
/// (`egress_denied: ...`) and logged. Connections are capped per worker and closed when idle; the
/// listener is closed when the worker is reaped.
final class EgressProxy: Sendable {
    /// The proxy's port on 127.0.0.1 inside every granted worker's network namespace.
    static let port = EgressTarget.proxyPort

    /// Bounds of one worker's proxy.
    struct Limits: Sendable {
        /// Connections open at once (each holds two descriptors in the runner).
        var connections = 16
        /// Bytes of a request head.
        var headBytes = 16 << 10
        /// Time to send the request head.
        var headTimeout: TimeAmount = .seconds(10)
        /// Time to connect to the target.
        var connectTimeout: TimeAmount = .seconds(10)
        /// A connection with nothing read or written for this long is closed.
        var idleTimeout: TimeAmount = .seconds(60)
    }

    /// Who the proxy serves, for refusals and logs.
    struct Owner: Sendable {
        var server: String
        var worker: String
        var tenant: String
    }

    private let listener: any Channel
    /// Connections it forwarded and refused.
    let counters: EgressCounters

    private init(listener: any Channel, counters: EgressCounters) {
        self.listener = listener
        self.counters = counters
    }

    /// Starts accepting on `descriptor` (a listening TCP socket, now owned by the proxy).
    static func start(
        descriptor: Int32, grant: [EgressTarget], owner: Owner, limits: Limits = Limits(), group: any EventLoopGroup,
        logger: Logger
    ) async throws -> EgressProxy {
        let allowed = Set(grant)
        let counters = EgressCounters()
        let channel = try await ServerBootstrap(group: group)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { child in
                let admitted = counters.open(limit: limits.connections)
                if admitted { child.closeFuture.whenComplete { _ in counters.closed() } }
                return child.eventLoop.makeCompletedFuture {
                    try child.pipeline.syncOperations.addHandler(
                        EgressHeadHandler(
                            grant: allowed, owner: owner, counters: counters, limits: limits, logger: logger,
                            admitted: admitted))
                }
            }
            .withBoundSocket(descriptor).get()
        return EgressProxy(listener: channel, counters: counters)
    }

    /// Stops accepting (connections in flight end on their own, bounded by the idle timeout).
    func close() {
        listener.close(promise: nil)
    }
}

/// Connections one egress proxy allowed and refused (reported when its worker is destroyed).
final class EgressCounters: Sendable {
    private let counts = Mutex((allowed: 0, denied: 0, open: 0))

    /// Connections forwarded to a granted target, and connections refused.
    var snapshot: (allowed: Int, denied: Int) { counts.withLock { ($0.allowed, $0.denied) } }

    /// Counts a new connection unless `limit` are open already.
    func open(limit: Int) -> Bool {
        counts.withLock { counts in
            guard counts.open < limit else { return false }
            counts.open += 1
            return true
        }
    }

    func closed() { counts.withLock { $0.open -= 1 } }

    func allowed() { counts.withLock { $0.allowed += 1 } }
    func denied() { counts.withLock { $0.denied += 1 } }
}

/// Reads one request head, decides it, and either refuses or connects and glues the two channels.
private final class EgressHeadHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let grant: Set<EgressTarget>
    private let owner: EgressProxy.Owner
    private let counters: EgressCounters
    private let limits: EgressProxy.Limits
    private let logger: Logger
    private let admitted: Bool
    private var head: [UInt8] = []
    private var deadline: Scheduled<Void>?
    private var decided = false

    init(
        grant: Set<EgressTarget>, owner: EgressProxy.Owner, counters: EgressCounters, limits: EgressProxy.Limits,
        logger: Logger, admitted: Bool
    ) {
        self.grant = grant
        self.owner = owner
        self.counters = counters
        self.limits = limits
        self.logger = logger
        self.admitted = admitted
    }

    func channelActive(context: ChannelHandlerContext) {
        context.fireChannelActive()
        guard admitted else {
            counters.denied()
            logger.warning(
                "egress refused",
                metadata: [
                    "server": "\(owner.server)", "worker": "\(owner.worker)", "tenant": "\(owner.tenant)",
                    "reason": "egress_limit: \(limits.connections) connections open",
                ])
            refuse(
                context, status: "503 Service Unavailable",
                "egress_limit: server \(owner.server) already has \(limits.connections) connections open; close one first"
            )
            return
        }
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: limits.headTimeout) {
            guard !self.decided else { return }
            self.refuse(
                context, status: "408 Request Timeout",
                "egress_denied: no complete request head within \(self.limits.headTimeout.nanoseconds / 1_000_000_000) s"
            )
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // After a refusal nothing more is read; once glued this handler is gone.
        guard !decided else { return }
        var buffer = unwrapInboundIn(data)
        head += buffer.readBytes(length: buffer.readableBytes) ?? []
        guard let end = Self.headEnd(head) else {
            if head.count > limits.headBytes {
                refuse(
                    context, status: "431 Request Header Fields Too Large",
                    "egress_denied: the request head is larger than \(limits.headBytes) bytes")
            }
            return
        }
        guard end <= limits.headBytes else {
            refuse(
                context, status: "431 Request Header Fields Too Large",
                "egress_denied: the request head is larger than \(limits.headBytes) bytes")
            return
        }
        decided = true
        deadline?.cancel()
        let rest = Array(head[end...])
        let text = String(decoding: head[..<end], as: UTF8.self)
        head = []
        decide(context, head: text, rest: rest)
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    /// The index just past the blank line that ends the head, nil while it has not arrived.
    private static func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for index in 3..<bytes.count
        where bytes[index] == 0x0A && bytes[index - 1] == 0x0D && bytes[index - 2] == 0x0A && bytes[index - 3] == 0x0D {
            return index + 1
        }
        return nil
    }

    /// What the head asks for: the target, and the bytes to send it first (nil for CONNECT).
    private func decide(_ context: ChannelHandlerContext, head: String, rest: [UInt8]) {
        var lines = head.components(separatedBy: "\r\n").filter { !$0.isEmpty }
        let requestLine = lines.isEmpty ? "" : lines.removeFirst()
        let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else {
            deny(context, "egress_denied: not an HTTP/1.x request line: \(Self.shown(requestLine))")
            return
        }
        let method = String(parts[0])
        let requestTarget = String(parts[1])
        if method == "CONNECT" {
            guard let target = try? EgressTarget(parsing: requestTarget) else {
                deny(context, "egress_denied: CONNECT needs host:port, got \(Self.shown(requestTarget))")
                return
            }
            guard grant.contains(target) else {
                deny(context, refusal(target))
                return
            }
            connect(context, to: target, first: nil, rest: rest)
            return
        }
        guard requestTarget.lowercased().hasPrefix("http://") else {
            deny(
                context,
                "egress_denied: only CONNECT host:port and absolute-form http:// requests go through this proxy, got \(Self.shown(method + " " + requestTarget))"
            )
            return
        }
        let afterScheme = requestTarget.dropFirst("http://".count)
        let authorityEnd = afterScheme.firstIndex { $0 == "/" || $0 == "?" || $0 == "#" } ?? afterScheme.endIndex
        let authority = afterScheme[..<authorityEnd]
        var path = String(afterScheme[authorityEnd...])
        if path.isEmpty || path.hasPrefix("?") { path = "/" + path }
        if let hash = path.firstIndex(of: "#") { path = String(path[..<hash]) }
        let hasPort = authority.hasPrefix("[") ? authority.contains("]:") : authority.contains(":")
        guard !authority.contains("@"),
            let target = try? EgressTarget(parsing: hasPort ? String(authority) : authority + ":80")
        else {
            deny(context, "egress_denied: \(Self.shown(requestTarget)) does not name a host (and port)")
            return
        }
        guard grant.contains(target) else {
            deny(context, refusal(target))
            return
        }
        // Origin form, to the target only, one request per connection.
        var forwarded = "\(method) \(path) \(parts[2])\r\n"
        for line in lines {
            let name = line.prefix { $0 != ":" }.lowercased()
            if ["host", "connection", "keep-alive", "proxy-connection", "proxy-authorization"].contains(name) {
                continue
            }
            forwarded += line + "\r\n"
        }
        forwarded += "Host: \(authority)\r\nConnection: close\r\n\r\n"
        connect(context, to: target, first: Array(forwarded.utf8), rest: rest)
    }

    private func refusal(_ target: EgressTarget) -> String {
        let granted = grant.map(\.description).sorted().joined(separator: ", ")
        return "egress_denied: \(target) is not granted to server \(owner.server) (its network: \(granted))"
    }

    private func connect(_ context: ChannelHandlerContext, to target: EgressTarget, first: [UInt8]?, rest: [UInt8]) {
        // Paused until glued: nothing more is read from the worker meanwhile.
        context.channel.setOption(.autoRead, value: false).whenComplete { _ in }
        let loop = context.eventLoop
        let idle = limits.idleTimeout
        let connecting = ClientBootstrap(group: loop)
            .connectTimeout(limits.connectTimeout)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: idle))
                    try channel.pipeline.syncOperations.addHandler(CloseOnIdle())
                }
            }
            .connect(host: target.host, port: target.port)
        connecting.assumeIsolated().whenComplete { result in
            switch result {
            case .failure(let error):
                self.counters.denied()
                self.logger.warning(
                    "egress connection failed",
                    metadata: [
                        "server": "\(self.owner.server)", "worker": "\(self.owner.worker)",
                        "tenant": "\(self.owner.tenant)", "target": "\(target)",
                        "error": "\(logDescription(of: error))",
                    ])
                self.refuse(
                    context, status: "502 Bad Gateway", "egress_unreachable: \(target) could not be reached: \(error)")
            case .success(let outbound):
                self.counters.allowed()
                self.logger.info(
                    "egress connection",
                    metadata: [
                        "server": "\(self.owner.server)", "worker": "\(self.owner.worker)",
                        "tenant": "\(self.owner.tenant)", "target": "\(target)",
                    ])
                self.glue(context, outbound: outbound, first: first, rest: rest)
            }
        }
    }

    private func glue(_ context: ChannelHandlerContext, outbound: any Channel, first: [UInt8]?, rest: [UInt8]) {
        let inbound = context.channel
        guard inbound.isActive else {
            outbound.close(promise: nil)
            return
        }
        do {
            let (mine, theirs) = GlueHandler.matchedPair()
            if first == nil {
                var answer = context.channel.allocator.buffer(capacity: 64)
                answer.writeString("HTTP/1.1 200 Connection established\r\n\r\n")
                context.writeAndFlush(wrapOutboundOut(answer), promise: nil)
            }
            var opening = outbound.allocator.buffer(capacity: (first?.count ?? 0) + rest.count)
            opening.writeBytes(first ?? [])
            opening.writeBytes(rest)
            // The worker's side first: its reads are paused, so neither side reads before both
            // handlers are in place.
            let pipeline = inbound.pipeline.syncOperations
            try pipeline.addHandler(IdleStateHandler(allTimeout: limits.idleTimeout))
            try pipeline.addHandler(CloseOnIdle())
            try pipeline.addHandler(mine)
            try outbound.pipeline.syncOperations.addHandler(theirs)
            if opening.readableBytes > 0 { outbound.writeAndFlush(opening, promise: nil) }
            // Removed before reads resume: a handler left here would swallow the tunnel's bytes.
            let removed = context.eventLoop.makePromise(of: Void.self)
            context.pipeline.syncOperations.removeHandler(context: context, promise: removed)
            removed.futureResult.whenComplete { result in
                guard case .success = result else {
                    inbound.close(promise: nil)
                    return
                }
                inbound.setOption(.autoRead, value: true).whenComplete { _ in }
            }
        } catch {
            outbound.close(promise: nil)
            context.close(promise: nil)
        }
    }

    private func deny(_ context: ChannelHandlerContext, _ message: String) {
        counters.denied()
        logger.warning(
            "egress refused",
            metadata: [
                "server": "\(owner.server)", "worker": "\(owner.worker)", "tenant": "\(owner.tenant)",
                "reason": "\(message)",
            ])
        refuse(context, status: "403 Forbidden", message)
    }

    private func refuse(_ context: ChannelHandlerContext, status: String, _ message: String) {
        decided = true
        deadline?.cancel()
        let body = message + "\n"
        var buffer = context.channel.allocator.buffer(capacity: body.utf8.count + 128)
        buffer.writeString(
            "HTTP/1.1 \(status)\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
                + body)
        context.writeAndFlush(wrapOutboundOut(buffer)).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }

    /// At most 200 printable characters of what a worker sent, for a refusal.
    private static func shown(_ text: String) -> String {
        String(
            String(text.unicodeScalars.map { $0.value >= 0x20 && $0.value < 0x7F ? Character($0) : "?" }).prefix(200))
    }
}

/// Closes a channel that was idle for the proxy's idle timeout.
private final class CloseOnIdle: ChannelInboundHandler {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }
}

/// One of two handlers that splice two channels on the same event loop: what one reads the other
/// writes, with backpressure (a side reads only while its partner is writable) and half-closure
/// passed through (swift-nio's connect-proxy example).
private final class GlueHandler: ChannelDuplexHandler {
    typealias InboundIn = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    private var partner: GlueHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false

    private init() {}

    static func matchedPair() -> (GlueHandler, GlueHandler) {
        let first = GlueHandler()
        let second = GlueHandler()
        first.partner = second
        second.partner = first
        return (first, second)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        partner?.context?.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.context?.flush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.context?.close(promise: nil)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event {
            partner?.context?.close(mode: .output, promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        partner?.context?.close(promise: nil)
        context.close(promise: nil)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable, let partner, partner.pendingRead {
            partner.pendingRead = false
            partner.context?.read()
        }
        context.fireChannelWritabilityChanged()
    }

    func read(context: ChannelHandlerContext) {
        if let partner, let other = partner.context, other.channel.isWritable {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
