import HummingbirdCore
import Logging
import NIOCore

/// Hummingbird's HTTP/1 child channel with the connection guards around it: the per-address cap
/// (``AddressCapHandler``) and the read deadlines (``RawReadWatch`` below the decoder,
/// ``PartWatch`` above it), plus the decoder's head limits. The total cap is the server's
/// `availableConnectionsDelegate` (see ``HTTPServer/application(router:settings:maximumConnections:onServerRunning:logger:)``).
///
/// Hummingbird's own `idleTimeout` is left off: it sees only whole HTTP parts, so a head sent a
/// byte at a time never counts as activity there, and its timer would be a second owner of the
/// same job.
struct BoundedHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value

    let inner: HTTP1Channel
    let settings: HTTPSettings
    let perAddress: ConnectionsPerAddress
    let logger: Logger

    init(
        responder: @escaping HTTPChannelHandler.Responder, settings: HTTPSettings, perAddress: ConnectionsPerAddress,
        logger: Logger
    ) {
        self.inner = HTTP1Channel(
            responder: responder,
            configuration: .init(
                idleTimeout: nil,
                httpDecoderConfiguration: .init(
                    maxHeaderFieldSize: settings.maximumHeaderBytes, maxHeaderListSize: settings.maximumHeaderBytes,
                    maxHeaderFieldCount: settings.maximumHeaderFields)))
        self.settings = settings
        self.perAddress = perAddress
        self.logger = logger
    }

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let watch = ReadDeadlineWatch(settings: settings, logger: self.logger)
        do {
            let pipeline = channel.pipeline.syncOperations
            if perAddress.limit > 0 {
                try pipeline.addHandler(AddressCapHandler(connections: perAddress, logger: self.logger))
            }
            try pipeline.addHandler(RawReadWatch(watch))
        } catch {
            return channel.eventLoop.makeFailedFuture(error)
        }
        return inner.setup(channel: channel, logger: logger).assumeIsolated().flatMapThrowing { value in
            // Above the codec, just before Hummingbird's connection state handler: it sees
            // request parts and response parts as the application reads and writes them.
            let pipeline = channel.pipeline.syncOperations
            let state = try pipeline.handler(type: HTTPConnectionStateHandler.self)
            try pipeline.addHandler(PartWatch(watch), position: .before(state))
            return value
        }.nonisolated()
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}
