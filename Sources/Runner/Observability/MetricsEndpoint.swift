import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ServiceLifecycle

/// `GET /metrics`: the Prometheus text exposition of a runner's ``LeaseholdMetrics``, with the
/// gauges that are read rather than counted (connections, sessions, pending approvals, upstream
/// servers) brought up to date first.
public enum MetricsEndpoint {
    /// Reads the scrape-time gauges and renders every metric.
    static func response(gateway: Gateway) async -> Response {
        let (connections, sessions) = await gateway.connections.counts()
        // At most 10 000 counted: a pending approval is a row a human has to read; more than that
        // is an incident, and the gauge saying 10 000 is enough to see it.
        let pending = try? await gateway.store.approvals(tenantID: nil, sessionID: nil, status: .pending, limit: 10_000)
            .count
        gateway.metrics.observe(
            connections: connections, sessions: sessions, pendingApprovals: pending,
            upstreams: gateway.upstreams.status.map { ($0.id, $0.state) })
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: gateway.metrics.exposition())))
    }

    /// A listener that serves only `/metrics`, without a key (`--metrics HOST:PORT`, config
    /// `metrics.listen`): for a scraper on a private interface. Anyone who reaches it reads tool
    /// names, tiers, refusal codes and volumes (and tenant ids with per-tenant labels); no claim,
    /// argument or file content is ever in a metric.
    public static func application(
        gateway: Gateway, host: String, port: Int, onServerRunning: @escaping @Sendable (any Channel) async -> Void,
        logger: Logger
    ) -> some Service {
        let router = Router()
        router.get("/metrics") { _, _ in await response(gateway: gateway) }
        return Application(
            router: router,
            configuration: .init(address: .hostname(host, port: port), serverName: "leasehold-metrics"),
            onServerRunning: onServerRunning, logger: logger)
    }
}
