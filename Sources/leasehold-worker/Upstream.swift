import FoundationEssentials
import SandboxProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// An upstream MCP server this worker started, spoken to as an MCP client over its stdin and
/// stdout (newline-delimited JSON-RPC, the MCP stdio transport). The server inherits the worker's
/// confinement: its namespaces, cgroup, rlimits, Landlock and seccomp program. See
/// ``UpstreamLaunch`` for the exchange with the runner.
struct Upstream {
    /// The MCP version Leasehold asks upstream servers for.
    static let protocolVersion = "2025-06-18"

    let launch: UpstreamLaunch
    let process: Spawned
    /// Output of the server not yet a whole line.
    private var pending: [UInt8] = []
    /// The last bytes the server wrote to stderr, for messages when it fails.
    private var stderrTail: [UInt8] = []
    private var nextID = 1
    /// A `notifications/tools/list_changed` arrived since the runner was last told.
    private(set) var toolsChanged = false
    private var chunk = [UInt8](repeating: 0, count: 1 << 16)

    /// A failed request. A fatal one (the server exited or broke the protocol) is answered, then
    /// the worker exits; the runner starts a fresh one for the next call.
    struct Failure: Error {
        let error: ToolError
        var fatal = true

        static func once(_ error: ToolError) -> Failure { Failure(error: error, fatal: false) }
    }

    /// Starts the command in the workspace and initializes it.
    static func start(_ launch: UpstreamLaunch, context: Context, channel: inout Channel) throws(Failure) -> Upstream {
        guard let program = launch.command.first, !program.isEmpty else {
            throw Failure(error: ToolError(.upstreamUnavailable, "server \(launch.server) has no command"))
        }
        let environment = launch.environment.map { "\($0.key)=\($0.value)" }
        let process: Spawned
        do {
            process = try Spawned.start(
                path: program, argv: launch.command,
                searchPath: program.contains("/") ? nil : launch.environment["PATH"],
                environment: environment, cwd: context.workspace)
        } catch {
            throw Failure(
                error: ToolError(
                    .upstreamUnavailable, "server \(launch.server) could not be started: \(error.message)"))
        }
        var upstream = Upstream(launch: launch, process: process)
        let deadline = Spawned.nowMs() + max(1000, context.hello.wallMs)
        let params =
            #"{"protocolVersion":"\#(protocolVersion)","capabilities":{},"clientInfo":{"name":"leasehold","version":"1"}}"#
        _ = try upstream.request("initialize", params: Array(params.utf8), deadline: deadline, channel: &channel)
        try upstream.write(Array(#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.utf8))
        return upstream
    }

    /// Serves one runner request: the tool list, or a call. Throws only what is fatal.
    ///
    /// While a call is in flight the runner's channel is watched too: a `cancel` frame ends it
    /// (the server is told), and the server's progress under the token the runner put in the
    /// call's `_meta` goes to the runner as `progress` frames.
    mutating func serve(tool: String, arguments: ArraySlice<UInt8>, wallMs: Int, channel: inout Channel) throws(Failure)
        -> (Bool, [UInt8])
    {
        let deadline = Spawned.nowMs() + wallMs
        do throws(Failure) {
            if tool == UpstreamLaunch.listTools { return (false, try listTools(deadline: deadline, channel: &channel)) }
            if tool == UpstreamLaunch.callTool {
                let params = Array(arguments)
                var watch = Watch(progressToken: Self.progressToken(in: params))
                return (
                    false,
                    try request("tools/call", params: params, deadline: deadline, channel: &channel, watch: &watch)
                )
            }
            let params =
                Array(#"{"name":"#.utf8) + Self.jsonString(tool) + Array(#","arguments":"#.utf8)
                + (arguments.isEmpty ? Array("{}".utf8) : Array(arguments)) + [UInt8(ascii: "}")]
            var watch = Watch(progressToken: nil)
            return (
                false, try request("tools/call", params: params, deadline: deadline, channel: &channel, watch: &watch)
            )
        } catch {
            if error.fatal { throw error }
            return (true, Results.error(error.error))
        }
    }

    /// What a call in flight watches besides the server's answer.
    struct Watch {
        /// The JSON of `_meta.progressToken` in the call's params (nil: the client asked for none).
        var progressToken: [UInt8]?
        /// Progress frames sent for the call.
        var progressSent = 0
    }

    /// The bytes of `_meta.progressToken` in a call's params.
    static func progressToken(in params: [UInt8]) -> [UInt8]? {
        guard let meta = JSONSpan.member("_meta", in: params) else { return nil }
        let object = Array(params[meta])
        return JSONSpan.member("progressToken", in: object).map { Array(object[$0]) }
    }

    /// Whether the server said its tools changed; cleared once read.
    mutating func takeToolsChanged() -> Bool {
        defer { toolsChanged = false }
        return toolsChanged
    }

    /// Every tool of every page, as one JSON array of the server's own tool objects.
    private mutating func listTools(deadline: Int, channel: inout Channel) throws(Failure) -> [UInt8] {
        var tools: [UInt8] = [UInt8(ascii: "[")]
        var cursor: [UInt8]? = nil
        for _ in 0..<1000 {
            let params = cursor.map { Array(#"{"cursor":"#.utf8) + $0 + [UInt8(ascii: "}")] } ?? Array("{}".utf8)
            let result = try request("tools/list", params: params, deadline: deadline, channel: &channel)
            guard let span = JSONSpan.member("tools", in: result) else {
                throw Failure(
                    error: ToolError(
                        .upstreamProtocol, "server \(launch.server) answered tools/list without a tools array"))
            }
            var inner = Array(result[span])
            guard inner.first == UInt8(ascii: "["), inner.last == UInt8(ascii: "]") else {
                throw Failure(error: ToolError(.upstreamProtocol, "server \(launch.server)'s tools is not an array"))
            }
            inner = Array(inner.dropFirst().dropLast())
            if inner.contains(where: { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }) {
                if tools.count > 1 { tools.append(UInt8(ascii: ",")) }
                tools += inner
            }
            guard let next = JSONSpan.member("nextCursor", in: result), result[next.lowerBound] == UInt8(ascii: "\"")
            else {
                tools.append(UInt8(ascii: "]"))
                return tools
            }
            cursor = Array(result[next])
        }
        throw Failure(
            error: ToolError(.upstreamProtocol, "server \(launch.server) listed more than 1000 pages of tools"))
    }

    /// Sends a request and waits for its response, answering what the server asks meanwhile.
    /// Returns the `result` bytes; a JSON-RPC error is `upstream_error`, no answer by `deadline`
    /// `upstream_timeout`, a `cancel` from the runner (with `watch`) `cancelled`: the request is
    /// cancelled then. Fatal: the server exited or broke the protocol, or the runner broke its own.
    private mutating func request(
        _ method: String, params: [UInt8], deadline: Int, channel: inout Channel, watch: inout Watch
    ) throws(Failure) -> [UInt8] {
        let id = nextID
        nextID += 1
        try write(
            Array(#"{"jsonrpc":"2.0","id":\#(id),"method":"#.utf8) + Self.jsonString(method)
                + Array(#","params":"#.utf8) + params + [UInt8(ascii: "}")])
        while true {
            let line: [UInt8]
            switch try readLine(deadline: deadline, channel: &channel) {
            case .line(let read):
                line = read
            case .timedOut:
                try write(
                    Array(
                        #"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":\#(id),"reason":"timeout"}}"#
                            .utf8))
                throw Failure.once(
                    ToolError(
                        .upstreamTimeout,
                        "server \(launch.server) did not answer \(method) in time; the request was cancelled"))
            case .cancelled:
                try write(
                    Array(
                        #"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":\#(id),"reason":"cancelled by the client"}}"#
                            .utf8))
                throw Failure.once(
                    ToolError(.cancelled, "the client cancelled the call; server \(launch.server) was told"))
            }
            guard let envelope = try? JSONDecoder().decode(Envelope.self, from: Data(line)) else {
                throw Failure(
                    error: ToolError(.upstreamProtocol, "server \(launch.server) wrote a line that is not JSON-RPC"))
            }
            if let incoming = envelope.method {
                if envelope.id == nil {
                    if incoming == "notifications/tools/list_changed" { toolsChanged = true }
                    if incoming == "notifications/progress" { relayProgress(line, channel: &channel, watch: &watch) }
                } else if let raw = JSONSpan.member("id", in: line) {
                    // Sampling, roots, elicitation: nothing of the caller's is offered upstream.
                    try write(
                        Array(#"{"jsonrpc":"2.0","id":"#.utf8) + line[raw]
                            + Array(
                                #","error":{"code":-32601,"message":"Leasehold does not offer this to upstream servers"}}"#
                                    .utf8))
                }
                continue
            }
            guard envelope.id == .number(id) else { continue }
            if let error = JSONSpan.member("error", in: line) {
                let detail = String(decoding: line[error].prefix(500), as: UTF8.self)
                throw Failure.once(
                    ToolError(.upstreamError, "server \(launch.server) answered \(method) with an error: \(detail)"))
            }
            guard let result = JSONSpan.member("result", in: line), line[result.lowerBound] == UInt8(ascii: "{") else {
                throw Failure(
                    error: ToolError(
                        .upstreamProtocol, "server \(launch.server) answered \(method) without a result object"))
            }
            return Array(line[result])
        }
    }

    /// A request outside a call (initialize, tools/list): nothing but the server is watched.
    private mutating func request(_ method: String, params: [UInt8], deadline: Int, channel: inout Channel)
        throws(Failure)
        -> [UInt8]
    {
        var watch = Watch(progressToken: nil)
        return try request(method, params: params, deadline: deadline, channel: &channel, watch: &watch)
    }

    /// Passes on a `notifications/progress` under the call's own token: its `params` as they are,
    /// bounded in size and number (the rest are dropped; progress is advisory).
    private func relayProgress(_ line: [UInt8], channel: inout Channel, watch: inout Watch) {
        guard let token = watch.progressToken, watch.progressSent < WorkerMessage.maximumProgressFrames,
            let span = JSONSpan.member("params", in: line), span.count <= WorkerMessage.maximumProgressBytes
        else { return }
        let params = Array(line[span])
        guard let said = JSONSpan.member("progressToken", in: params), params[said].elementsEqual(token) else { return }
        watch.progressSent += 1
        channel.send(Frame(kind: .progress, payload: params))
    }

    /// What waiting for the server's next line ended with.
    private enum Read {
        case line([UInt8])
        case timedOut
        /// The runner sent `cancel`.
        case cancelled
    }

    /// One line of the server's stdout, or the deadline, or the runner's `cancel`.
    private mutating func readLine(deadline: Int, channel: inout Channel) throws(Failure) -> Read {
        while true {
            if let newline = pending.firstIndex(of: 0x0A) {
                let line = Array(pending[..<newline])
                pending.removeSubrange(...newline)
                if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { continue }
                return .line(line)
            }
            guard pending.count <= UpstreamLaunch.maximumMessageBytes else {
                throw Failure(
                    error: ToolError(
                        .upstreamProtocol,
                        "server \(launch.server) wrote a message over \(UpstreamLaunch.maximumMessageBytes) bytes"))
            }
            if try runnerCancelled(&channel) { return .cancelled }
            let remaining = deadline - Spawned.nowMs()
            if remaining <= 0 { return .timedOut }
            var fds = [
                pollfd(fd: process.stdoutFD, events: Int16(POLLIN), revents: 0),
                pollfd(fd: process.stderrFD, events: Int16(POLLIN), revents: 0),
                pollfd(fd: channel.fd, events: Int16(POLLIN), revents: 0),
            ]
            _ = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, 3, Int32(min(remaining, Int(Int32.max)))) }
            if fds[1].revents != 0 { drainStderr() }
            if fds[2].revents != 0 {
                let open: Bool
                do {
                    open = try channel.fill()
                } catch {
                    throw Failure(error: ToolError(.badFrame, error.reason))
                }
                // The runner is gone: nobody is left to answer.
                if !open { exit(0) }
                continue
            }
            guard fds[0].revents != 0 else { continue }
            let count = chunk.withUnsafeMutableBytes { read(process.stdoutFD, $0.baseAddress, $0.count) }
            if count > 0 {
                pending += chunk[0..<count]
            } else if count == 0 || (errno != EAGAIN && errno != EINTR) {
                drainStderr()
                let said = String(decoding: stderrTail, as: UTF8.self).split(separator: "\n").suffix(3).joined(
                    separator: " | ")
                throw Failure(
                    error: ToolError(
                        .upstreamUnavailable,
                        "server \(launch.server) exited" + (said.isEmpty ? "" : " (stderr: \(said))")))
            }
        }
    }

    /// Whether the runner's channel holds a `cancel`; any other frame in the middle of a request
    /// breaks the protocol (fatal).
    private func runnerCancelled(_ channel: inout Channel) throws(Failure) -> Bool {
        let frame: Frame?
        do {
            frame = try channel.buffered()
        } catch {
            throw Failure(error: ToolError(.badFrame, error.reason))
        }
        guard let frame else { return false }
        guard frame.kind == .cancel else {
            throw Failure(
                error: ToolError(
                    .unexpectedFrame, "a frame of kind \(frame.kind.rawValue) arrived while a request was in flight"))
        }
        return true
    }

    private mutating func drainStderr() {
        while true {
            let count = chunk.withUnsafeMutableBytes { read(process.stderrFD, $0.baseAddress, $0.count) }
            guard count > 0 else { return }
            stderrTail += chunk[0..<count]
            if stderrTail.count > 2048 { stderrTail.removeFirst(stderrTail.count - 2048) }
        }
    }

    /// One message and its newline, all of it (the pipe is non-blocking: poll until written).
    private func write(_ message: [UInt8]) throws(Failure) {
        let bytes = message + [0x0A]
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(process.stdinFD, $0.baseAddress, $0.count) }
            if written > 0 {
                offset += written
                continue
            }
            if written < 0 && errno == EAGAIN {
                var fd = pollfd(fd: process.stdinFD, events: Int16(POLLOUT), revents: 0)
                _ = poll(&fd, 1, 1000)
                continue
            }
            if written < 0 && errno == EINTR { continue }
            throw Failure(error: ToolError(.upstreamUnavailable, "server \(launch.server) closed its input"))
        }
    }

    /// `text` as a JSON string, `/` unescaped (`tools\/list` is valid JSON, but servers that match
    /// the method's text, like examples/echo_server.sh, would not know it).
    static func jsonString(_ text: String) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        return (try? Array(encoder.encode(text))) ?? Array("\"\"".utf8)
    }

    /// The parts of a JSON-RPC message the relay looks at.
    private struct Envelope: Decodable {
        enum ID: Decodable, Equatable {
            case number(Int)
            case text(String)

            init(from decoder: any Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let number = try? container.decode(Int.self) {
                    self = .number(number)
                } else {
                    self = .text(try container.decode(String.self))
                }
            }
        }

        var id: ID?
        var method: String?
    }
}
