/// Everything a confined execution needs, resolved on the server side: the workspace root comes
/// from the registry, never from the arguments.
public struct ToolInvocation: Sendable, Hashable {
    /// The fully qualified tool name, e.g. `repo.read_file`.
    public var tool: String
    /// The risk tier the policy assigned.
    public var tier: String
    /// The tool arguments as canonical JSON bytes (paths inside are relative to the root).
    public var arguments: [UInt8]
    /// The tenant the call belongs to.
    public var tenantID: String
    /// The workspace id the call belongs to.
    public var workspaceID: String
    /// The workspace root resolved by the registry.
    public var workspaceRoot: String
    /// The session the call belongs to.
    public var sessionID: String
    /// The lease under which the call runs.
    public var leaseID: String
    /// The version (content hash) of the policy that decided the call; audit records carry it,
    /// and a worker serves only calls decided under the policy it was started with.
    public var policyVersion: String

    /// Creates an invocation.
    public init(
        tool: String, tier: String, arguments: [UInt8], tenantID: String, workspaceID: String,
        workspaceRoot: String, sessionID: String, leaseID: String, policyVersion: String
    ) {
        self.tool = tool
        self.tier = tier
        self.arguments = arguments
        self.tenantID = tenantID
        self.workspaceID = workspaceID
        self.workspaceRoot = workspaceRoot
        self.sessionID = sessionID
        self.leaseID = leaseID
        self.policyVersion = policyVersion
    }
}

/// What became of an invocation. A tool that fails is an outcome, not a thrown error.
public enum ToolOutcome: Sendable, Hashable {
    /// The tool ran; its JSON result and whether it reports an error.
    case completed(result: [UInt8], isError: Bool)
    /// Execution is not possible on this runner; the reason says why in operator words.
    case unavailable(reason: String)
}

/// The seam between the gateway (which decides) and the sandbox (which executes).
public protocol ToolExecutor: Sendable {
    /// Executes one authorized invocation.
    func execute(_ invocation: ToolInvocation) async -> ToolOutcome

    /// A new policy changed what these tiers imply (or which tier some tool has): warm workers
    /// serving them cross a trust boundary and must be destroyed before the next call.
    func tiersChanged(_ tiers: Set<String>) async
}

/// The executor in use until confined workers exist: every authorized call reaches it, and it
/// says plainly that nothing was executed. It never fabricates a result.
public struct UnavailableExecutor: ToolExecutor {
    /// Creates the executor.
    public init() {}

    /// Nothing to destroy: this executor holds no workers.
    public func tiersChanged(_ tiers: Set<String>) async {}

    /// Refuses to execute, naming the missing capability.
    public func execute(_ invocation: ToolInvocation) async -> ToolOutcome {
        .unavailable(
            reason:
                "execution is not available yet: confined workers are not built into this runner, "
                + "so \(invocation.tool) was authorized but not executed"
        )
    }
}
