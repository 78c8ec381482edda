import Foundation

/// `metrics:` in leasehold.yaml: where `/metrics` is served besides the main listener (with the
/// operator key there), and whether tenant ids label series. Unknown keys are refused.
///
/// ```yaml
/// metrics:
///   listen: 127.0.0.1:9464     # a listener serving only /metrics, without a key (default: none)
///   per_tenant_labels: false   # add `tenant` to operation, refusal and worker series (default false)
/// ```
public struct MetricsConfig: Decodable, Sendable, Hashable {
    /// `HOST:PORT` of the key-less metrics listener (`--metrics` overrides it).
    public var listen: String?
    /// Tenant ids as a label: one series per tenant and tool, so off by default.
    public var perTenantLabels: Bool?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case listen
        case perTenantLabels = "per_tenant_labels"
    }

    /// Every default.
    public init(listen: String? = nil, perTenantLabels: Bool? = nil) {
        self.listen = listen
        self.perTenantLabels = perTenantLabels
    }

    public init(from decoder: any Decoder) throws {
        try StrictKeys.check(decoder, known: CodingKeys.allCases.map(\.rawValue), in: "metrics")
        let container = try decoder.container(keyedBy: CodingKeys.self)
        listen = try container.decodeIfPresent(String.self, forKey: .listen)
        perTenantLabels = try container.decodeIfPresent(Bool.self, forKey: .perTenantLabels)
    }
}
