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
/// 4. worker -> `response`: ``WorkerMessage/response(isError:result:)``. A tool failure is a
///    response with an error result, never a crash; the worker then serves the next request.
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

    /// Creates a hello.
    public init(
        tier: String, profile: String, workspace: String = WorkerProtocol.workspacePath, readOnly: Bool,
        outputBytes: Int, wallMs: Int, cpuSeconds: Int, fileSizeBytes: Int, environment: [String: String]
    ) {
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
        case tier, profile, workspace, environment
        case readOnly = "read_only"
        case outputBytes = "output_bytes"
        case wallMs = "wall_ms"
        case cpuSeconds = "cpu_seconds"
        case fileSizeBytes = "file_size_bytes"
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

    /// A `response` payload: one byte (1 = the tool reports an error), then the result JSON object.
    /// An error result is `{"error": {"code": "...", "message": "..."}}` plus any detail keys.
    public static func response(isError: Bool, result: [UInt8]) -> [UInt8] {
        [isError ? 1 : 0] + result
    }

    /// Splits a `response` payload; nil when empty.
    public static func parseResponse(_ payload: [UInt8]) -> (isError: Bool, result: ArraySlice<UInt8>)? {
        guard let first = payload.first else { return nil }
        return (first != 0, payload.dropFirst())
    }
}
