import CWorker
import SandboxProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// `shell.run`: one command in the workspace (exec tiers only), with stdin, captured and capped
/// stdout/stderr, a wall-clock timeout and the tier's environment. posix_spawn, not fork: Swift
/// cannot fork safely, and posix_spawn with an fchdir file action never resolves the cwd by path.
enum ShellRun {
    struct Arguments: ToolArguments {
        static let fields: Set<String> = ["command", "argv", "cwd", "stdin", "timeout_ms", "env"]
        let command: String?
        let argv: [String]?
        let cwd: String?
        let stdin: String?
        let timeoutMs: Int?
        let env: [String: String]?

        enum CodingKeys: String, CodingKey {
            case command, argv, cwd, stdin, env
            case timeoutMs = "timeout_ms"
        }
    }

    struct Result: Encodable {
        let exitCode: Int?
        let signal: String?
        let stdout: String
        let stderr: String
        let stdoutTruncated: Bool
        let stderrTruncated: Bool
        let timedOut: Bool
        let durationMs: Int

        enum CodingKeys: String, CodingKey {
            case signal, stdout, stderr
            case exitCode = "exit_code"
            case stdoutTruncated = "stdout_truncated"
            case stderrTruncated = "stderr_truncated"
            case timedOut = "timed_out"
            case durationMs = "duration_ms"
        }

        // Explicit nulls: a caller tells "exited" from "killed" by which of the two is null.
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(exitCode, forKey: .exitCode)
            try container.encode(signal, forKey: .signal)
            try container.encode(stdout, forKey: .stdout)
            try container.encode(stderr, forKey: .stderr)
            try container.encode(stdoutTruncated, forKey: .stdoutTruncated)
            try container.encode(stderrTruncated, forKey: .stderrTruncated)
            try container.encode(timedOut, forKey: .timedOut)
            try container.encode(durationMs, forKey: .durationMs)
        }
    }

    static let maximumEnvironmentEntries = 64
    static let maximumValueBytes = 4096
    static let maximumArgumentBytes = 1 << 20
    /// Largest stdin a command may be given.
    static let maximumStdin = 16 << 20

    /// Runs the command; `killedBy` names the tier limit that killed it, if one did (a shorter
    /// `timeout_ms` the caller chose is an ordinary result).
    static func run(
        _ raw: ArraySlice<UInt8>, _ context: Context
    ) throws(ToolError) -> (result: [UInt8], killedBy: WorkerMessage.LimitKill?) {
        let args = try Arguments.decode(raw)
        guard context.mayExec else {
            throw ToolError(
                .toolNotSupportedByTier,
                "shell.run needs an exec tier; tier \(ToolError.quoted(context.hello.tier)) has profile \(ToolError.quoted(context.hello.profile))")
        }
        let (path, argv, searchPath) = try commandLine(args)
        let environment = try mergedEnvironment(context.hello.environment, args.env)
        let wall = max(1, context.hello.wallMs)
        let timeout = try checkRange(args.timeoutMs, "timeout_ms", 1...Int(Int32.max), default: wall)
        let stdinBytes = Array((args.stdin ?? "").utf8)
        guard stdinBytes.count <= maximumStdin else {
            throw ToolError.invalidArguments("argument 'stdin' is larger than \(maximumStdin) bytes")
        }
        let cwd = try Paths.open(context.workspace, try Paths.check(args.cwd ?? "", name: "cwd"), flags: O_RDONLY | O_DIRECTORY, action: "enter")
        defer { close(cwd) }

        let child = try Spawned.start(
            path: path, argv: argv, searchPath: searchPath ? environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin" : nil,
            environment: environment.map { "\($0.key)=\($0.value)" }.sorted(), cwd: cwd)
        let outcome = child.communicate(stdin: stdinBytes, cap: max(1, context.outputBytes / 2), timeoutMs: min(timeout, wall))
        // Nothing the command started may outlive the call.
        _ = kill(-child.pid, SIGKILL)
        Processes.reapAfterCall()

        let status = outcome.status
        let termSignal = status & 0x7f
        let exited = termSignal == 0
        let killedBy: WorkerMessage.LimitKill? =
            switch exited ? 0 : termSignal {
            case SIGXCPU: .cpuSeconds
            case SIGXFSZ: .fileSizeMiB
            // Stopped at the tier's wall clock, not at a shorter timeout the caller chose.
            default: outcome.timedOut && timeout >= wall ? .wallMs : nil
            }
        let result = Results.encode(
            Result(
                exitCode: exited ? Int((status >> 8) & 0xff) : nil,
                signal: exited ? nil : signalName(termSignal),
                stdout: String(decoding: outcome.stdout, as: UTF8.self),
                stderr: String(decoding: outcome.stderr, as: UTF8.self),
                stdoutTruncated: outcome.stdoutTruncated, stderrTruncated: outcome.stderrTruncated,
                timedOut: outcome.timedOut, durationMs: outcome.durationMs))
        return (result, killedBy)
    }

    /// The executable, its argv, and whether argv[0] is looked up in PATH.
    static func commandLine(_ args: Arguments) throws(ToolError) -> (String, [String], Bool) {
        switch (args.command, args.argv) {
        case (let command?, nil):
            guard !command.utf8.contains(0) else { throw ToolError.invalidArguments("argument 'command' contains a NUL byte") }
            guard command.utf8.count <= maximumArgumentBytes else { throw ToolError.invalidArguments("argument 'command' is too long") }
            return ("/bin/sh", ["sh", "-c", command], false)
        case (nil, let argv?):
            guard let first = argv.first, !first.isEmpty else {
                throw ToolError.invalidArguments("argument 'argv' must be a non-empty array whose first element names a program")
            }
            guard !argv.contains(where: { $0.utf8.contains(0) }) else {
                throw ToolError.invalidArguments("argument 'argv' contains a NUL byte")
            }
            guard argv.reduce(0, { $0 + $1.utf8.count }) <= maximumArgumentBytes else {
                throw ToolError.invalidArguments("argument 'argv' is too long")
            }
            return (first, argv, !first.contains("/"))
        default:
            throw ToolError.invalidArguments("exactly one of 'command' and 'argv' is required")
        }
    }

    /// The tier's environment plus the request's entries, each checked.
    static func mergedEnvironment(_ base: [String: String], _ extra: [String: String]?) throws(ToolError) -> [String: String] {
        var merged = base.filter { validName($0.key) && !$0.value.utf8.contains(0) }
        guard let extra else { return merged }
        guard extra.count <= maximumEnvironmentEntries else {
            throw ToolError.invalidArguments("argument 'env' has more than \(maximumEnvironmentEntries) entries")
        }
        for (name, value) in extra {
            guard validName(name) else {
                throw ToolError.invalidArguments("environment name \(ToolError.quoted(name)) must match [A-Za-z_][A-Za-z0-9_]*")
            }
            guard value.utf8.count <= maximumValueBytes, !value.utf8.contains(0) else {
                throw ToolError.invalidArguments("environment value of \(name) must be at most \(maximumValueBytes) bytes without NUL")
            }
            merged[name] = value
        }
        return merged
    }

    static func validName(_ name: String) -> Bool {
        guard let first = name.utf8.first, name.utf8.count <= 256 else { return false }
        func letter(_ byte: UInt8) -> Bool { (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte) || byte == 0x5F }
        return letter(first) && name.utf8.allSatisfy { letter($0) || (0x30...0x39).contains($0) }
    }

    static func signalName(_ number: Int32) -> String {
        let names: [Int32: String] = [
            SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP",
            SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGUSR1: "SIGUSR1",
            SIGSEGV: "SIGSEGV", SIGUSR2: "SIGUSR2", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM",
            SIGXCPU: "SIGXCPU", SIGXFSZ: "SIGXFSZ", SIGSYS: "SIGSYS",
        ]
        return names[number] ?? "SIG\(number)"
    }
}
