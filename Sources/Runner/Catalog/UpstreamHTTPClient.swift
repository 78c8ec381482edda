import AsyncHTTPClient
import NIOCore
import Synchronization

/// The runner's one HTTP client for `transport: http` servers, made on first use (a runner, or a
/// test, without such servers never makes one) and shut down once, at runner exit.
///
/// Redirects are refused: a server's configured headers (its credential) must never follow a
/// redirect to another host. Connections are not retried. Bodies are not decompressed, so the bytes counted against a cap are
/// the bytes received.
final class UpstreamHTTPClient: Sendable {
    private let state = Mutex<(client: HTTPClient?, shutDown: Bool)>((nil, false))

    /// The client; nil once the runner shut it down.
    var client: HTTPClient? {
        state.withLock { state in
            if state.shutDown { return nil }
            if let client = state.client { return client }
            var pool = HTTPClient.Configuration.ConnectionPool(
                // Every open GET stream and every streaming call holds a connection: a low
                // per-host limit would queue calls behind them.
                idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 256)
            // A server that refuses connections fails the call at once (`upstream_unavailable`),
            // instead of the client retrying until the call's deadline and reporting a timeout.
            pool.retryConnectionEstablishment = false
            let client = HTTPClient(
                eventLoopGroup: HTTPClient.defaultEventLoopGroup,
                configuration: HTTPClient.Configuration(
                    redirectConfiguration: .disallow, timeout: .init(connect: .seconds(10)), connectionPool: pool,
                    decompression: .disabled))
            state.client = client
            return client
        }
    }

    /// Shuts the client down (its connections close, requests in flight fail); later requests
    /// find no client.
    func shutdown() async {
        let client = state.withLock { state -> HTTPClient? in
            state.shutDown = true
            defer { state.client = nil }
            return state.client
        }
        try? await client?.shutdown()
    }
}
