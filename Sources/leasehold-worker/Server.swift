import FoundationEssentials
import SandboxProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// What every tool needs: the hello's limits and the workspace descriptor.
struct Context {
    let hello: WorkerHello
    /// O_PATH descriptor of the workspace root; every path is resolved beneath it.
    let workspace: Int32

    var mayWrite: Bool { !hello.readOnly && hello.profile != "read" }
    var mayExec: Bool { hello.profile == "exec" }
    /// Content bytes one response may carry (at least 1 KiB so paging always progresses).
    var outputBytes: Int { max(1024, hello.outputBytes) }

    func requireWritable() throws(ToolError) {
        guard mayWrite else {
            throw ToolError(
                .readOnlyWorkspace, "the workspace is read-only for tier \(ToolError.quoted(hello.tier))")
        }
    }
}

/// The handshake and the request loop.
struct Server {
    var channel: Channel
    /// Reused across repo.search calls (one big buffer instead of one per file).
    var searchBuffer: [UInt8] = []

    init(channel: Channel) { self.channel = channel }

    /// Serves until EOF; returns the exit status.
    mutating func run() -> Int32 {
        let context: Context
        do {
            guard let hello = try channel.next() else { return 0 }
            guard let ready = handshake(hello) else { return 65 }
            context = ready
        } catch {
            channel.sendError(code: .badFrame, message: error.reason)
            return 65
        }
        if let launch = context.hello.upstream {
            return serveUpstream(launch, context: context)
        }
        channel.send(Frame(kind: .ready, payload: [Frame.protocolVersion]))
        Self.warmUp(context)
        while true {
            let (tool, arguments): (String, ArraySlice<UInt8>)
            switch nextRequest() {
            case .request(let name, let payload): (tool, arguments) = (name, payload)
            case .end(let status): return status
            }
            let (isError, result, killedBy) = dispatch(tool: tool, arguments: arguments, context: context)
            channel.send(
                Frame(
                    kind: .response,
                    payload: WorkerMessage.response(isError: isError, result: result, killedBy: killedBy)))
            Processes.reapAfterCall()
        }
    }

    /// The next request from the runner, or how the worker ends: 0 at EOF, 65 after a malformed
    /// or unexpected frame (an error frame has been sent).
    private enum Next {
        case request(String, ArraySlice<UInt8>)
        case end(Int32)
    }

    private mutating func nextRequest() -> Next {
        let frame: Frame
        do {
            guard let next = try channel.next() else { return .end(0) }
            frame = next
        } catch {
            channel.sendError(code: .badFrame, message: error.reason)
            return .end(65)
        }
        // A cancel that crossed its call's response on the way: the call is over, nothing to do.
        if frame.kind == .cancel { return nextRequest() }
        guard frame.kind == .request else {
            channel.sendError(code: .unexpectedFrame, message: "expected a request frame, got kind \(frame.kind.rawValue)")
            return .end(65)
        }
        guard let (tool, arguments) = WorkerMessage.parseRequest(frame.payload) else {
            channel.sendError(code: .badRequest, message: "a request payload needs a NUL after the tool name")
            return .end(65)
        }
        return .request(tool, arguments)
    }

    /// A worker serving an upstream MCP server: starts and initializes it before `ready`, then
    /// relays each request; exits after a fatal failure (answered first) or at EOF.
    private mutating func serveUpstream(_ launch: UpstreamLaunch, context: Context) -> Int32 {
        var upstream: Upstream
        do {
            upstream = try Upstream.start(launch, context: context, channel: &channel)
        } catch {
            channel.sendError(code: error.error.code, message: error.error.message)
            return 69
        }
        channel.send(Frame(kind: .ready, payload: [Frame.protocolVersion]))
        while true {
            let (tool, arguments): (String, ArraySlice<UInt8>)
            switch nextRequest() {
            case .request(let name, let payload): (tool, arguments) = (name, payload)
            case .end(let status): return status
            }
            do {
                let (isError, result) = try upstream.serve(
                    tool: tool, arguments: arguments, wallMs: context.hello.wallMs, channel: &channel)
                let changed = upstream.takeToolsChanged()
                channel.send(
                    Frame(kind: .response, payload: WorkerMessage.response(isError: isError, result: result, toolsChanged: changed)))
            } catch {
                channel.send(Frame(kind: .response, payload: WorkerMessage.response(isError: true, result: Results.error(error.error))))
                return 69
            }
        }
    }

    /// Decodes and encodes once, on made-up values, what an exec worker's call will: the Swift
    /// runtime builds the metadata and witness tables of the argument and result types on first
    /// use, which cost a per-call worker ~0.2 ms inside its one call. Done after `ready`, so a
    /// spare has paid it before it is taken; a request that arrives meanwhile waits in the socket.
    /// Touches nothing outside the process.
    static func warmUp(_ context: Context) {
        guard context.mayExec else { return }
        _ = try? ShellRun.Arguments.decode(Array(#"{"argv":["true"],"timeout_ms":1}"#.utf8)[...])
        _ = Results.encode(
            ShellRun.Result(
                exitCode: 0, signal: nil, stdout: "", stderr: "", stdoutTruncated: false, stderrTruncated: false,
                timedOut: false, durationMs: 0))
    }

    /// Checks `hello` and opens the workspace; nil after an error frame was sent.
    private func handshake(_ frame: Frame) -> Context? {
        guard frame.kind == .hello else {
            channel.sendError(code: .unexpectedFrame, message: "expected hello, got kind \(frame.kind.rawValue)")
            return nil
        }
        guard frame.payload.first == Frame.protocolVersion else {
            channel.sendError(
                code: .protocolMismatch,
                message: "worker speaks protocol \(Frame.protocolVersion), hello asked for \(frame.payload.first.map(String.init) ?? "none")")
            return nil
        }
        let hello: WorkerHello
        do {
            hello = try JSONDecoder().decode(WorkerHello.self, from: Data(frame.payload.dropFirst()))
        } catch {
            channel.sendError(code: .badHello, message: "the hello payload is not a valid WorkerHello")
            return nil
        }
        guard !hello.workspace.utf8.contains(0) else {
            channel.sendError(code: .badHello, message: "the workspace path contains a NUL byte")
            return nil
        }
        let fd = open(hello.workspace, Paths.oPath | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            channel.sendError(code: .workspaceUnavailable, message: "cannot open the workspace (errno \(errno))")
            return nil
        }
        return Context(hello: hello, workspace: fd)
    }

    /// Runs one tool; a failure becomes an error result, never a crash. A command a tier limit
    /// killed is reported with that limit, typed.
    private mutating func dispatch(
        tool: String, arguments: ArraySlice<UInt8>, context: Context
    ) -> (Bool, [UInt8], WorkerMessage.LimitKill?) {
        do throws(ToolError) {
            switch tool {
            case "repo.read_file": return (false, try ReadFile.run(arguments, context), nil)
            case "repo.list_dir": return (false, try ListDir.run(arguments, context), nil)
            case "repo.stat": return (false, try StatTool.run(arguments, context), nil)
            case "repo.search": return (false, try Search.run(arguments, context, buffer: &searchBuffer), nil)
            case "repo.write_file": return (false, try WriteFile.run(arguments, context), nil)
            case "repo.apply_patch": return (false, try ApplyPatch.run(arguments, context), nil)
            case "shell.run":
                let ran = try ShellRun.run(arguments, context)
                return (false, ran.result, ran.killedBy)
            default:
                throw ToolError(.unknownTool, "this worker does not implement tool \(ToolError.quoted(tool))")
            }
        } catch {
            return (true, Results.error(error), nil)
        }
    }
}
