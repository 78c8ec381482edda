/// The contract between the runner and any executable started inside a worker.
///
/// Descriptors the executable starts with:
/// - 0, 1, 2: `/dev/null`.
/// - ``channelDescriptor`` (3): a connected `AF_UNIX` stream socket to the runner carrying
///   ``Frame``s.
/// - ``filterDescriptor`` (4): a sealed memfd holding the tier's seccomp program (raw
///   `struct sock_filter` instructions, 8 bytes each). The executable installs it before it reads
///   anything from the channel, and closes the descriptor; everything it runs inherits it.
///
/// Exchange, strictly one request in flight:
/// 1. runner -> `hello`: ``Frame/protocolVersion`` as the first byte, then ``WorkerHello`` as JSON.
/// 2. worker -> `ready`: ``Frame/protocolVersion`` (one byte), once the filter is installed and
///    the workspace opened. Any failure before that: an `error` frame, then exit.
/// 3. runner -> `request`: ``WorkerMessage/request(tool:arguments:)``.
/// 4. worker -> `response`: ``WorkerMessage/response(isError:result:toolsChanged:killedBy:)``. A tool failure is a
///    response with an error result, never a crash; the worker then serves the next request.
///    Only for an upstream server's call: before the response, the worker may send `progress`
///    frames, and the runner may send one `cancel` frame (answered at once, error `cancelled`).
/// 5. A malformed frame from the runner: an `error` frame, then exit (the runner destroys it).
public enum WorkerProtocol {
    /// The channel to the runner.
    public static let channelDescriptor: Int32 = 3
    /// The tier's seccomp program, installed first.
    public static let filterDescriptor: Int32 = 4
    /// Where the workspace is mounted inside every worker.
    public static let workspacePath = "/workspace"
    /// Where the worker executable is mounted inside every worker.
    public static let executablePath = "/.leasehold/worker"
}

/// What the runner tells a worker in `hello` (JSON, snake_case keys). Every limit here is the
/// tier's; the runner enforces the same ones from outside too (rlimits, wall clock, output cap).
/// Codable from the standard library only, so both sides share it without Foundation.
public struct WorkerHello: Codable, Sendable, Hashable {
    /// The tier's name (for messages).
    public var tier: String
    /// `read`, `write` or `exec`: which tools this worker may serve.
    public var profile: String
    /// The workspace directory; always ``WorkerProtocol/workspacePath`` in production.
    public var workspace: String
    /// The workspace is mounted read-only: refuse writes with a clear code.
    public var readOnly: Bool
    /// Cap on the content bytes one response carries (file content, command output).
    public var outputBytes: Int
    /// Wall-clock limit per call, milliseconds (shell.run kills its command at this point).
    public var wallMs: Int
    /// CPU seconds per call.
    public var cpuSeconds: Int
    /// Largest file a write may produce, bytes.
    public var fileSizeBytes: Int
    /// The base environment of `shell.run` commands (the runner's allow-list; no runner secrets).
    public var environment: [String: String]
    /// Set when the worker serves an upstream MCP server: it starts the server's command and
    /// relays `tools/list` and `tools/call` to it (see ``UpstreamLaunch``).
    public var upstream: UpstreamLaunch?

    /// Creates a hello.
    public init(
        tier: String, profile: String, workspace: String = WorkerProtocol.workspacePath, readOnly: Bool,
        outputBytes: Int, wallMs: Int, cpuSeconds: Int, fileSizeBytes: Int, environment: [String: String],
        upstream: UpstreamLaunch? = nil
    ) {
        self.upstream = upstream
        self.tier = tier
        self.profile = profile
        self.workspace = workspace
        self.readOnly = readOnly
        self.outputBytes = outputBytes
        self.wallMs = wallMs
        self.cpuSeconds = cpuSeconds
        self.fileSizeBytes = fileSizeBytes
        self.environment = environment
    }

    enum CodingKeys: String, CodingKey {
        case tier, profile, workspace, environment, upstream
        case readOnly = "read_only"
        case outputBytes = "output_bytes"
        case wallMs = "wall_ms"
        case cpuSeconds = "cpu_seconds"
        case fileSizeBytes = "file_size_bytes"
    }
}

/// An upstream MCP server a worker runs and speaks to over its stdin and stdout.
///
/// The worker starts `command` (with exactly `environment`, in the workspace), initializes it as
/// an MCP client before it answers `ready` (a server that does not come up fails the spawn with
/// an `error` frame `upstream_unavailable`), then serves requests: the tool name
/// ``listTools`` answers a JSON array of every tool the server lists (all pages); any other name
/// is a `tools/call` of that tool with the request's arguments, answered with the server's
/// `result` object byte for byte. Failures are error results with the codes `upstream_error`
/// (a JSON-RPC error), `upstream_timeout` (no answer within `wall_ms`; the call is cancelled),
/// `upstream_unavailable` (the server exited) and `upstream_protocol` (it wrote something that is
/// not JSON-RPC, or more than ``maximumMessageBytes``); after the last two the worker exits.
public struct UpstreamLaunch: Codable, Sendable, Hashable {
    /// The request tool name that lists the server's tools.
    public static let listTools = "tools/list"
    /// The request tool name whose arguments are the whole `tools/call` params (name, arguments
    /// and `_meta`), sent as they are.
    public static let callTool = "tools/call"
    /// The longest line the worker reads from a server.
    public static let maximumMessageBytes = 16 << 20

    /// The server id (for messages).
    public var server: String
    /// argv; the first element is looked up in `PATH` of `environment` when it has no slash.
    public var command: [String]
    /// The whole environment of the server.
    public var environment: [String: String]

    /// Creates a launch description.
    public init(server: String, command: [String], environment: [String: String]) {
        self.server = server
        self.command = command
        self.environment = environment
    }
}

/// Request and response payload layouts. Plain bytes rather than a JSON envelope: the arguments
/// and results are already JSON, and wrapping them would encode them twice.
public enum WorkerMessage {
    /// A `request` payload: the tool name, one NUL byte, the arguments as a JSON object.
    public static func request(tool: String, arguments: [UInt8]) -> [UInt8] {
        Array(tool.utf8) + [0] + arguments
    }

    /// Splits a `request` payload; nil when it has no NUL separator.
    public static func parseRequest(_ payload: [UInt8]) -> (tool: String, arguments: ArraySlice<UInt8>)? {
        guard let separator = payload.firstIndex(of: 0) else { return nil }
        return (String(decoding: payload[..<separator], as: UTF8.self), payload[(separator + 1)...])
    }

    /// A `response` payload: one flag byte (bit 0: the tool reports an error; bit 1: an upstream
    /// server said its tools changed since the last response; bit 2: a limit of the tier killed
    /// what the call ran, and one byte of ``LimitKill`` follows), then the result JSON object. An
    /// error result is `{"error": {"code": "...", "message": "..."}}` plus any detail keys.
    public static func response(
        isError: Bool, result: [UInt8], toolsChanged: Bool = false, killedBy limit: LimitKill? = nil
    ) -> [UInt8] {
        let flags: UInt8 = (isError ? 1 : 0) | (toolsChanged ? 2 : 0) | (limit == nil ? 0 : 4)
        return [flags] + (limit.map { [$0.rawValue] } ?? []) + result
    }

    /// A split `response` payload.
    public struct Response {
        /// The tool reports an error.
        public var isError: Bool
        /// The tier limit that killed what the call ran (the command `shell.run` started), when
        /// one did; the result still holds what it produced until then.
        public var killedBy: LimitKill?
        /// The result JSON object.
        public var result: ArraySlice<UInt8>
    }

    /// Splits a `response` payload; nil when empty or when its limit byte is missing or unknown.
    public static func parseResponse(_ payload: [UInt8]) -> Response? {
        guard let first = payload.first else { return nil }
        guard first & 4 != 0 else { return Response(isError: first & 1 != 0, killedBy: nil, result: payload.dropFirst()) }
        guard payload.count >= 2, let limit = LimitKill(rawValue: payload[1]) else { return nil }
        return Response(isError: first & 1 != 0, killedBy: limit, result: payload.dropFirst(2))
    }

    /// A tier limit that killed what a call ran, as the worker saw it: typed in the response
    /// frame, so the runner never parses a tool's result to learn it.
    public enum LimitKill: UInt8, Sendable, Hashable, CaseIterable {
        /// SIGXCPU: the tier's CPU seconds.
        case cpuSeconds = 1
        /// SIGXFSZ: the tier's file size limit.
        case fileSizeMiB = 2
        /// Stopped at the tier's wall clock (not at a shorter `timeout_ms` the caller chose).
        case wallMs = 3

        /// The limit's name in `policies/tiers.yaml` and in `limit_exceeded` outcomes.
        public var policyName: String {
            switch self {
            case .cpuSeconds: "cpu_seconds"
            case .fileSizeMiB: "file_size_mib"
            case .wallMs: "wall_ms"
            }
        }
    }

    /// The most progress frames a worker sends for one call; later ones are dropped.
    public static let maximumProgressFrames = 10_000
    /// The largest `params` of a progress notification passed on; larger ones are dropped.
    public static let maximumProgressBytes = 4096

    /// Whether a `response` payload says an upstream's tools changed.
    public static func toolsChanged(_ payload: [UInt8]) -> Bool {
        (payload.first ?? 0) & 2 != 0
    }
}
