/// What one tenant may hold of a runner's workers and calls, so no tenant can exhaust what the
/// others need: a default for every tenant and per-tenant overrides (`tenant_limits` in the
/// config).
public struct TenantShares: Sendable, Hashable {
    /// One tenant's caps.
    public struct Caps: Sendable, Hashable {
        /// Live workers (warm, spares and per-call) of the tenant's sessions at once.
        public var workers: Int
        /// Calls of the tenant's sessions in flight at once.
        public var callsInFlight: Int

        public init(workers: Int, callsInFlight: Int) {
            self.workers = workers
            self.callsInFlight = callsInFlight
        }
    }

    /// Every tenant's caps unless overridden.
    public var standard: Caps
    /// Caps by tenant id.
    public var overrides: [String: Caps]

    /// The default: a quarter of the runner's workers per tenant and 64 calls in flight.
    public init(maximumWorkers: Int = 512) {
        self.init(standard: Caps(workers: max(1, maximumWorkers / 4), callsInFlight: 64), overrides: [:])
    }

    public init(standard: Caps, overrides: [String: Caps] = [:]) {
        self.standard = standard
        self.overrides = overrides
    }

    /// The caps of `tenant`.
    public func caps(_ tenant: String) -> Caps { overrides[tenant] ?? standard }
}
