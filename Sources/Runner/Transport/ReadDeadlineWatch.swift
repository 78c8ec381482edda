import HTTPTypes
import Logging
import NIOCore
import NIOHTTPTypes

/// One connection's ``ReadDeadlines`` and its timer, fed by two handlers: ``RawReadWatch`` below
/// the HTTP decoder (bytes, so a head trickled in byte by byte is seen as it starts) and
/// ``PartWatch`` above it (heads, ends, responses). One owner for the one timer.
///
/// Bound to the connection's event loop: created in the channel's initializer and touched only by
/// its handlers and its scheduled task, all on that loop.
final class ReadDeadlineWatch {
    private var state: ReadDeadlines<ContinuousClock.Instant>
    private var scheduled: (task: Scheduled<Void>, at: ContinuousClock.Instant)?
    /// The raw handler's context: writes from it go straight to the socket, below the codec.
    private var context: ChannelHandlerContext?
    private let logger: Logger

    init(settings: HTTPSettings, logger: Logger) {
        self.state = ReadDeadlines(
            openedAt: .now, headerTimeout: settings.headerTimeout, bodyTimeout: settings.bodyTimeout,
            keepAliveTimeout: settings.keepAliveTimeout)
        self.logger = logger
    }

    func attach(_ context: ChannelHandlerContext) {
        self.context = context
        rearm()
    }

    func detach() {
        scheduled?.task.cancel()
        scheduled = nil
        context = nil
    }

    func update(_ change: (inout ReadDeadlines<ContinuousClock.Instant>) -> Void) {
        change(&state)
        rearm()
    }

    /// Moves the timer to the state's deadline (nothing to do when it is already there).
    private func rearm() {
        guard let context else { return }
        let next = state.deadline
        if let scheduled, scheduled.at == next?.at { return }
        scheduled?.task.cancel()
        scheduled = nil
        guard let next else { return }
        let task = context.eventLoop.assumeIsolatedUnsafeUnchecked().scheduleTask(in: TimeAmount(next.at - .now)) {
            self.fire()
        }
        scheduled = (task, next.at)
    }

    private func fire() {
        scheduled = nil
        guard let context else { return }
        guard let action = state.expired(at: .now) else {
            rearm()
            return
        }
        let address = ClientAddress.key(context.channel.remoteAddress)
        switch action {
        case .answerAndClose(let reason):
            logger.debug(
                "closing a connection: \(reason.rawValue) deadline passed", metadata: ["address": "\(address)"])
            let timeout = reason == .head ? state.headerTimeout : state.bodyTimeout
            let answer = RawHTTPAnswer.bytes(
                status: 408, reason: "Request Timeout",
                message:
                    "request_timeout: the request \(reason == .head ? "head" : "body") was not complete within "
                    + "\(timeout.secondsText) (http.\(reason == .head ? "header" : "body")_timeout_seconds)")
            context.writeAndFlush(NIOAny(answer), promise: nil)
            context.close(promise: nil)
        case .close(let reason):
            logger.debug(
                "closing a connection: \(reason.rawValue) deadline passed", metadata: ["address": "\(address)"])
            context.close(promise: nil)
        }
        detach()
    }
}

/// Below the HTTP decoder: every read's bytes, before they are decoded.
final class RawReadWatch: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let watch: ReadDeadlineWatch

    init(_ watch: ReadDeadlineWatch) {
        self.watch = watch
    }

    func handlerAdded(context: ChannelHandlerContext) {
        watch.attach(context)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        watch.detach()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        watch.update { $0.bytesRead(at: .now) }
        context.fireChannelRead(data)
    }

    func channelInactive(context: ChannelHandlerContext) {
        watch.detach()
        context.fireChannelInactive()
    }
}

/// Above the HTTP codec: request heads and ends in, response heads and ends out.
///
/// It also ends an event stream whose client has gone. Hummingbird allows half-closed
/// connections, so a client that closes while an SSE response is open leaves the connection (a
/// descriptor, and the session's stream slot) open until the server next writes to it, which for
/// a quiet GET stream may be never. A client does not half-close to wait for events: the end of
/// its input while an event stream is open means it left.
final class PartWatch: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let watch: ReadDeadlineWatch
    /// A `text/event-stream` response is being written.
    private var streaming = false
    /// The client closed its side of the connection.
    private var inputClosed = false

    init(_ watch: ReadDeadlineWatch) {
        self.watch = watch
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head: watch.update { $0.headRead(at: .now) }
        case .end: watch.update { $0.endRead() }
        case .body: break
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head):
            streaming = head.headerFields[.contentType]?.hasPrefix("text/event-stream") == true
            watch.update { $0.responseStarted() }
        case .end:
            streaming = false
            watch.update { $0.responseEnded(at: .now) }
        case .body: break
        }
        context.write(data, promise: promise)
        if streaming && inputClosed { context.close(promise: nil) }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .some(ChannelEvent.inputClosed) = event as? ChannelEvent {
            inputClosed = true
            if streaming {
                context.close(promise: nil)
                return
            }
        }
        context.fireUserInboundEventTriggered(event)
    }
}
