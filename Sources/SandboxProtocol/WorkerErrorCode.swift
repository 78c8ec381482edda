import Failures

/// The codes a worker reports: in a tool's error result (`{"error": {"code", "message", ...}}`,
/// passed to the caller as the tool's own result) and in `error` frames that end a handshake or a
/// channel. A closed set shared by both sides, so neither spells a code by hand and
/// docs/operations.md's table is checked against every one.
public struct WorkerErrorCode: ErrorCode {
    /// The wire form.
    public let rawValue: String
    private init(_ rawValue: String) { self.rawValue = rawValue }

    /// The arguments are not what the tool accepts (the message names the field).
    public static let invalidArguments = WorkerErrorCode("invalid_arguments")
    /// The worker has no tool of that name.
    public static let unknownTool = WorkerErrorCode("unknown_tool")
    /// The tool cannot run in this tier (a program in a tier that mounts none).
    public static let toolNotSupportedByTier = WorkerErrorCode("tool_not_supported_by_tier")
    /// The path resolves outside the workspace (`..`, a symlink, another filesystem).
    public static let pathOutsideWorkspace = WorkerErrorCode("path_outside_workspace")
    /// The path does not exist.
    public static let notFound = WorkerErrorCode("not_found")
    /// A component of the path is not a directory.
    public static let notADirectory = WorkerErrorCode("not_a_directory")
    /// The path is a directory where a file is wanted.
    public static let isADirectory = WorkerErrorCode("is_a_directory")
    /// The path is too long.
    public static let pathTooLong = WorkerErrorCode("path_too_long")
    /// The workspace's permissions refuse the access.
    public static let permissionDenied = WorkerErrorCode("permission_denied")
    /// The path is not a regular file (a device, a FIFO, a socket).
    public static let notRegularFile = WorkerErrorCode("not_regular_file")
    /// The path already exists where the call creates it.
    public static let alreadyExists = WorkerErrorCode("already_exists")
    /// The workspace is mounted read-only.
    public static let readOnlyWorkspace = WorkerErrorCode("read_only_workspace")
    /// The filesystem or a quota of it is full.
    public static let noSpace = WorkerErrorCode("no_space")
    /// The tier's file size limit, or the tool's own, was reached.
    public static let fileTooLarge = WorkerErrorCode("file_too_large")
    /// The path is busy (a running executable).
    public static let busy = WorkerErrorCode("busy")
    /// Another I/O failure; the message names the errno.
    public static let ioError = WorkerErrorCode("io_error")
    /// The file has more than one hard link, so another name of it may lie outside the workspace.
    public static let hardLink = WorkerErrorCode("hard_link")
    /// The file is not UTF-8 text; read it as base64.
    public static let binaryFile = WorkerErrorCode("binary_file")
    /// The file changed while it was read.
    public static let changedDuringRead = WorkerErrorCode("changed_during_read")
    /// A patch does not apply (the error names the file and the hunk).
    public static let patchFailed = WorkerErrorCode("patch_failed")
    /// The program to run was not found.
    public static let commandNotFound = WorkerErrorCode("command_not_found")
    /// A program (a command, an upstream server) could not be started.
    public static let spawnFailed = WorkerErrorCode("spawn_failed")
    /// The call was cancelled.
    public static let cancelled = WorkerErrorCode("cancelled")
    /// The upstream server did not start or exited.
    public static let upstreamUnavailable = WorkerErrorCode("upstream_unavailable")
    /// The upstream server broke MCP (not JSON-RPC, too large, no result).
    public static let upstreamProtocol = WorkerErrorCode("upstream_protocol")
    /// The upstream server did not answer in time; the request was cancelled.
    public static let upstreamTimeout = WorkerErrorCode("upstream_timeout")
    /// The upstream server answered with a JSON-RPC error.
    public static let upstreamError = WorkerErrorCode("upstream_error")
    /// The result could not be encoded.
    public static let internalError = WorkerErrorCode("internal_error")
    /// (error frame) The runner sent a malformed frame.
    public static let badFrame = WorkerErrorCode("bad_frame")
    /// (error frame) The runner sent a frame of the wrong kind.
    public static let unexpectedFrame = WorkerErrorCode("unexpected_frame")
    /// (error frame) A request payload lacks its tool name.
    public static let badRequest = WorkerErrorCode("bad_request")
    /// (error frame) The hello asked for another protocol version.
    public static let protocolMismatch = WorkerErrorCode("protocol_mismatch")
    /// (error frame) The hello payload is not a valid hello.
    public static let badHello = WorkerErrorCode("bad_hello")
    /// (error frame) The tier's seccomp program could not be installed.
    public static let seccompFailed = WorkerErrorCode("seccomp_failed")
    /// (error frame) The workspace could not be opened.
    public static let workspaceUnavailable = WorkerErrorCode("workspace_unavailable")

    /// Every code a worker reports.
    public static let allCases: [WorkerErrorCode] = [
        .invalidArguments, .unknownTool, .toolNotSupportedByTier, .pathOutsideWorkspace, .notFound, .notADirectory,
        .isADirectory, .pathTooLong, .permissionDenied, .notRegularFile, .alreadyExists, .readOnlyWorkspace,
        .noSpace, .fileTooLarge, .busy, .ioError, .hardLink, .binaryFile, .changedDuringRead, .patchFailed,
        .commandNotFound, .spawnFailed, .cancelled, .upstreamUnavailable, .upstreamProtocol, .upstreamTimeout,
        .upstreamError, .internalError, .badFrame, .unexpectedFrame, .badRequest, .protocolMismatch, .badHello,
        .seccompFailed, .workspaceUnavailable,
    ]
}
