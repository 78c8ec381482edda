/// What a risk tier implies for the workers that serve it, as the sandbox needs it. The gateway
/// builds one from the policy that decided a call; a warm worker started under one value never
/// serves a call decided under another (a policy change of its tier retires it).
public struct WorkerTier: Sendable, Hashable {
    /// Worker lifetime.
    public enum Isolation: String, Sendable, Hashable, Codable {
        /// A fresh worker per call, destroyed after it; it never serves a second call.
        case call
        /// One warm worker per (session, lease, tier), spawned on first use.
        case session
    }

    /// The tier's name.
    public var name: String
    /// Worker lifetime.
    public var isolation: Isolation
    /// The seccomp profile, which also decides the mounts (only `exec` sees system directories).
    public var profile: SeccompProfileName
    /// Resource limits.
    public var limits: WorkerLimits
    /// Limits (by their policy names: `memory_mib`, `processes`, `cpu_weight`) the tier lets run
    /// unenforced on a host that cannot enforce them on the whole worker; any other limit that
    /// cannot be enforced keeps the tier from running (``LimitEnforcement``).
    public var bestEffort: Set<String>

    /// Creates a tier description.
    public init(
        name: String, isolation: Isolation, profile: SeccompProfileName, limits: WorkerLimits,
        bestEffort: Set<String> = []
    ) {
        self.name = name
        self.isolation = isolation
        self.profile = profile
        self.limits = limits
        self.bestEffort = bestEffort
    }
}

/// Resource limits of one worker; every value is enforced from outside the worker (its cgroup,
/// rlimits, the runner's wall-clock timer, the runner's cap on response bytes) and told to it in
/// `hello`. Memory, processes and CPU weight hold for the worker's whole process tree where the
/// host gives the runner cgroups (``WorkerCgroups``, ``LimitEnforcement``). It is also the policy's
/// type (`RiskTier.Limits`): `limits:` of a tier in tiers.yaml is read straight into it (`wall_ms`,
/// `cpu_seconds`, `memory_mib`, `file_size_mib`, `processes`, `output_bytes`, `cpu_weight`; the open
/// descriptors follow the tier's profile).
public struct WorkerLimits: Sendable, Hashable {
    /// Wall clock per call, milliseconds.
    public var wallMs: Int
    /// CPU seconds per call.
    public var cpuSeconds: Int
    /// Memory of the whole worker, MiB (its cgroup); also each process's address space (rlimit).
    public var memoryMiB: Int
    /// Largest file the worker may write, MiB (0: none).
    public var fileSizeMiB: Int
    /// Processes the worker may have at once (itself included).
    public var processes: Int
    /// Content bytes one response may carry.
    public var outputBytes: Int
    /// Open descriptors.
    public var openFiles: Int
    /// CPU weight of the worker among its tenant's workers (1-10000, 100 the default), when the
    /// tier sets one.
    public var cpuWeight: Int?

    /// Creates limits; defaults are the strict end of the shipped policy.
    public init(
        wallMs: Int = 10_000, cpuSeconds: Int = 10, memoryMiB: Int = 256, fileSizeMiB: Int = 0, processes: Int = 1,
        outputBytes: Int = 1 << 20, openFiles: Int = 256, cpuWeight: Int? = nil
    ) {
        self.cpuWeight = cpuWeight
        self.wallMs = wallMs
        self.cpuSeconds = cpuSeconds
        self.memoryMiB = memoryMiB
        self.fileSizeMiB = fileSizeMiB
        self.processes = processes
        self.outputBytes = outputBytes
        self.openFiles = openFiles
    }
}

/// The limits as tiers.yaml writes them (the admin API's policy view shows a tier so): the open
/// descriptors are not a policy key, and `cpu_weight` is absent when the tier sets none.
extension WorkerLimits: Encodable {
    enum CodingKeys: String, CodingKey {
        case wallMs = "wall_ms"
        case cpuSeconds = "cpu_seconds"
        case memoryMiB = "memory_mib"
        case fileSizeMiB = "file_size_mib"
        case processes
        case outputBytes = "output_bytes"
        case cpuWeight = "cpu_weight"
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(wallMs, forKey: .wallMs)
        try container.encode(cpuSeconds, forKey: .cpuSeconds)
        try container.encode(memoryMiB, forKey: .memoryMiB)
        try container.encode(fileSizeMiB, forKey: .fileSizeMiB)
        try container.encode(processes, forKey: .processes)
        try container.encode(outputBytes, forKey: .outputBytes)
        try container.encodeIfPresent(cpuWeight, forKey: .cpuWeight)
    }
}
