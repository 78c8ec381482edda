/// How many live sessions (not revoked, lease not over) each tenant may hold
/// (`tenant_limits.sessions`, with per-tenant overrides). Sessions are rows every call reads and
/// claims bind to; without a cap one tenant's orchestrator could create them without end.
public struct TenantSessionLimits: Sendable, Hashable {
    /// The default when the config says nothing.
    public static let defaultLimit = 10_000
    /// The largest value the config may set.
    public static let maximum = 1_000_000

    /// Every tenant's cap unless overridden.
    public var standard: Int
    /// Per-tenant caps.
    public var overrides: [String: Int]

    /// Creates limits.
    public init(standard: Int = TenantSessionLimits.defaultLimit, overrides: [String: Int] = [:]) {
        self.standard = standard
        self.overrides = overrides
    }

    /// `tenant`'s cap.
    public func limit(for tenant: String) -> Int { overrides[tenant] ?? standard }
}
