import Foundation
import SandboxProtocol

/// The unprivileged host user and group a root runner's workers of one tenant run as (and that
/// owns that tenant's workspaces). Workers of a root runner are never host root.
public struct WorkerHostIdentity: Sendable, Hashable, CustomStringConvertible {
    /// Host uid (never 0).
    public var uid: UInt32
    /// Host gid (never 0).
    public var gid: UInt32

    /// Creates an identity.
    public init(uid: UInt32, gid: UInt32) {
        self.uid = uid
        self.gid = gid
    }

    /// `uid:gid`.
    public var description: String { "\(uid):\(gid)" }
}

/// Everything a confined execution needs, resolved on the server side: the workspace root comes
/// from the registry, never from the arguments.
public struct ToolInvocation: Sendable, Hashable {
    /// The fully qualified tool name, e.g. `repo.read_file`.
    public var tool: String
    /// What the tier that decided the call implies for its worker.
    public var tier: WorkerTier
    /// The tool arguments as canonical JSON bytes (paths inside are relative to the root).
    public var arguments: [UInt8]
    /// The tenant the call belongs to.
    public var tenantID: String
    /// The workspace id the call belongs to.
    public var workspaceID: String
    /// The workspace root resolved by the registry.
    public var workspaceRoot: String
    /// The workspace is registered read-only: it is mounted read-only for every tier.
    public var workspaceReadOnly: Bool
    /// The session the call belongs to.
    public var sessionID: String
    /// The session's actor; a warm worker never serves the next actor of a handed-off session.
    public var actorID: String
    /// The lease under which the call runs.
    public var leaseID: String
    /// When that lease ends: the session's warm workers are destroyed then, by a timer.
    public var leaseExpiresAt: Date
    /// The version (content hash) of the policy that decided the call; audit records carry it.
    public var policyVersion: String
    /// When the gateway read the session that authorized the call. A retirement of its session,
    /// lease or workspace at or after this moment voids the call, even one already waiting.
    public var authorizedAt: ContinuousClock.Instant
    /// The tenant's unprivileged host ids when the runner is root (required then); nil when the
    /// runner is unprivileged.
    public var hostIdentity: WorkerHostIdentity?
    /// Set when the tool belongs to an upstream MCP server: which, and how its process is shared.
    public var upstream: UpstreamCall?
    /// Where the server's progress goes, when the client asked for it (upstream calls only).
    public var progress: ProgressSink? = nil
    /// The client's cancellation of the call (upstream calls only; other tools run to the end).
    public var cancellation: CallCancellation? = nil

    /// Creates an invocation.
    public init(
        tool: String, tier: WorkerTier, arguments: [UInt8], tenantID: String, workspaceID: String,
        workspaceRoot: String, workspaceReadOnly: Bool = false, sessionID: String, actorID: String, leaseID: String,
        leaseExpiresAt: Date, policyVersion: String, authorizedAt: ContinuousClock.Instant = .now,
        hostIdentity: WorkerHostIdentity? = nil, upstream: UpstreamCall? = nil
    ) {
        self.hostIdentity = hostIdentity
        self.upstream = upstream
        self.tool = tool
        self.tier = tier
        self.arguments = arguments
        self.tenantID = tenantID
        self.workspaceID = workspaceID
        self.workspaceRoot = workspaceRoot
        self.workspaceReadOnly = workspaceReadOnly
        self.sessionID = sessionID
        self.actorID = actorID
        self.leaseID = leaseID
        self.leaseExpiresAt = leaseExpiresAt
        self.policyVersion = policyVersion
        self.authorizedAt = authorizedAt
    }
}

/// A call of an upstream MCP server's tool: the server's process, where it lives, and the tool's
/// own name there.
public struct UpstreamCall: Sendable, Hashable {
    /// Who shares one server process.
    public enum Scope: Sendable, Hashable {
        /// One per session and lease, destroyed with them (like a warm worker).
        case session
        /// One per tenant, or per tenant and workspace when the server mounts the workspace.
        case tenant(workspace: Bool)
        /// One for every tenant (servers the operator marks multi-tenant); no workspace.
        case shared
    }

    /// How the worker starts the server.
    public var launch: UpstreamLaunch
    /// Host paths the server's program needs, mounted read-only at the same path.
    public var mounts: [String]
    /// Who shares its process.
    public var scope: Scope
    /// The tool's name on the server (without Leasehold's `<server>.` prefix); ``UpstreamLaunch/listTools``
    /// lists them.
    public var tool: String
    /// The server's network grant: the only places its processes may reach, through the runner's
    /// egress proxy (``EgressProxy``). Empty: no network at all.
    public var network: [EgressTarget]

    /// Creates a call description.
    public init(launch: UpstreamLaunch, mounts: [String], scope: Scope, tool: String, network: [EgressTarget] = []) {
        self.launch = launch
        self.mounts = mounts
        self.scope = scope
        self.tool = tool
        self.network = network
    }
}

/// What became of an invocation. A tool that fails, or a worker killed by its limits, is an
/// outcome reported to the caller and the audit trail, not a thrown error.
public enum ToolOutcome: Sendable, Hashable {
    /// The tool ran; its JSON result and whether it reports an error.
    case completed(result: [UInt8], isError: Bool)
    /// The call exceeded a limit of its tier and what exceeded it was killed (the worker, or the
    /// command `shell.run` started); `limit` names it (`wall_ms`, `cpu_seconds`, `file_size_mib`,
    /// `output_bytes`). `partial` is the tool's own result when the worker lived to report one
    /// (a command's output up to the kill).
    case limitExceeded(limit: String, message: String, partial: [UInt8]? = nil)
    /// The worker could not be started, crashed, or was destroyed mid-call; `code` is stable
    /// (`worker_unavailable`, `worker_crashed`, `worker_destroyed`).
    case failed(code: String, message: String)
}

/// An outcome and the worker that produced it, for the audit trail.
public struct ToolExecution: Sendable, Hashable {
    /// What happened.
    public var outcome: ToolOutcome
    /// The worker that served the call, nil when none could be started.
    public var workerID: String?
    /// `call` or `session`.
    public var isolation: WorkerTier.Isolation
    /// An upstream server said its tools changed (the runner lists them again).
    public var upstreamToolsChanged = false
    /// How long the call waited for its worker (a spare, its session's lane, a spawn) before it
    /// ran there; nil when it never got one (traces: `leasehold.worker.acquire`).
    public var acquired: Duration? = nil

    /// Creates an execution record.
    public init(outcome: ToolOutcome, workerID: String?, isolation: WorkerTier.Isolation) {
        self.outcome = outcome
        self.workerID = workerID
        self.isolation = isolation
    }
}

/// Why workers are destroyed; each destruction is audited with one of these.
public enum WorkerRetirement: String, Sendable, Hashable {
    /// A per-call worker after its call.
    case callFinished = "call_finished"
    /// The upstream server it ran was reconfigured or removed (`servers:` reloaded).
    case upstreamChanged = "upstream_changed"
    /// The lease ended (a timer, not the next call).
    case leaseExpired = "lease_expired"
    /// The lease was renewed (a new lease id) or revoked.
    case leaseReplaced = "lease_replaced"
    /// The session was revoked.
    case sessionRevoked = "session_revoked"
    /// The session was handed to another actor or workspace.
    case handOff = "hand_off"
    /// A policy change altered the worker's tier.
    case tierChanged = "tier_changed"
    /// The workspace was removed from the registry.
    case workspaceRemoved = "workspace_removed"
    /// No call for the idle timeout.
    case idle = "idle_timeout"
    /// A limit was exceeded.
    case limitExceeded = "limit_exceeded"
    /// The worker died on its own or broke the protocol.
    case crashed = "crashed"
    /// The runner is shutting down.
    case shutdown = "shutdown"
}

/// The seam between the gateway (which decides) and the sandbox (which executes).
public protocol ToolExecutor: Sendable {
    /// Executes one authorized invocation.
    func execute(_ invocation: ToolInvocation) async -> ToolExecution

    /// A new policy changed what these tiers imply (or which tier some tool has): warm workers
    /// serving them cross a trust boundary and must be destroyed.
    func tiersChanged(_ tiers: Set<String>) async

    /// Destroys every worker of `sessionID` (all leases), e.g. on revoke or hand-off.
    func retire(session sessionID: String, reason: WorkerRetirement) async

    /// Destroys every worker of `sessionID` whose lease is not `currentLease`.
    func retire(session sessionID: String, exceptLease currentLease: String?, reason: WorkerRetirement) async

    /// Destroys every worker bound to the workspace.
    func retire(tenant tenantID: String, workspace workspaceID: String, reason: WorkerRetirement) async

    /// Destroys every worker (runner shutdown).
    func shutdown() async

    /// Which tier limits hold on a whole worker here (a tier that needs one that does not is refused).
    var limitEnforcement: LimitEnforcement { get }

    /// Destroys every process of the upstream server `server` (its configuration changed or it
    /// was removed).
    func retire(upstream server: String) async

    /// Warm workers held for each session (a session's own workers, spares excluded), for the
    /// console's live sessions.
    func warmWorkersBySession() async -> [String: Int]

    /// Calls `onEnd` once when the lease ends, whether or not its session holds a worker: the
    /// executor's timer is the runner's one timer (leases end at a time, not at an event).
    func watchLease(
        session sessionID: String, lease leaseID: String, endsAt expiresAt: Date,
        onEnd: @escaping @Sendable (_ sessionID: String, _ leaseID: String) async -> Void) async
}

extension ToolExecutor {
    /// An executor that starts no processes has no worker limits at stake.
    public var limitEnforcement: LimitEnforcement { .inProcess }

    /// An executor that starts no processes has none to destroy.
    public func retire(upstream server: String) async {}

    /// An executor that starts no processes holds no warm workers.
    public func warmWorkersBySession() async -> [String: Int] { [:] }

    /// An executor without a timer (tests' fakes) watches no lease: a lease that ends is then
    /// found over at the session's next request.
    public func watchLease(
        session sessionID: String, lease leaseID: String, endsAt expiresAt: Date,
        onEnd: @escaping @Sendable (_ sessionID: String, _ leaseID: String) async -> Void
    ) async {}
}
