import CWorker

#if canImport(Glibc)
    import Glibc
#endif

/// A spawned command and its three pipes.
struct Spawned {
    let pid: pid_t
    let stdinFD: Int32
    let stdoutFD: Int32
    let stderrFD: Int32

    /// What the command did.
    struct Outcome {
        var status: Int32 = 0
        var stdout: [UInt8] = []
        var stderr: [UInt8] = []
        var stdoutTruncated = false
        var stderrTruncated = false
        var timedOut = false
        var durationMs = 0
    }

    /// posix_spawn with stdin/stdout/stderr on pipes, a new session (no controlling terminal, its
    /// own process group to kill), default signal dispositions and an empty signal mask, and the
    /// cwd entered through its descriptor. With `searchPath`, argv[0] is looked up there (the
    /// command's PATH, not the worker's).
    static func start(path: String, argv: [String], searchPath: String?, environment: [String], cwd: Int32) throws(ToolError) -> Spawned {
        var input: [Int32] = [-1, -1]
        var output: [Int32] = [-1, -1]
        var errors: [Int32] = [-1, -1]
        guard pipe(&input) == 0 else { throw ToolError(.spawnFailed, "cannot create pipes (errno \(errno))") }
        guard pipe(&output) == 0 else {
            closeAll(input)
            throw ToolError(.spawnFailed, "cannot create pipes (errno \(errno))")
        }
        guard pipe(&errors) == 0 else {
            closeAll(input + output)
            throw ToolError(.spawnFailed, "cannot create pipes (errno \(errno))")
        }
        // Originals close on exec; the child's 0/1/2 come from dup2, which clears CLOEXEC.
        for fd in input + output + errors { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        for fd in [input[1], output[0], errors[0]] { _ = fcntl(fd, F_SETFL, O_NONBLOCK) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, input[0], 0)
        posix_spawn_file_actions_adddup2(&actions, output[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errors[1], 2)
        _ = csbw_spawn_addfchdir(&actions, cwd)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t()
        sigfillset(&all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(
            &attributes, Int16(CSBW_POSIX_SPAWN_SETSID | Int(POSIX_SPAWN_SETSIGDEF) | Int(POSIX_SPAWN_SETSIGMASK)))

        let cArgv = argv.map { strdup($0) } + [nil]
        let cEnv = environment.map { strdup($0) } + [nil]
        defer {
            cArgv.forEach { free($0) }
            cEnv.forEach { free($0) }
        }
        var candidates: [String]
        if let searchPath {
            candidates = searchPath.split(separator: ":", omittingEmptySubsequences: false).map {
                ($0.isEmpty ? "." : String($0)) + "/" + path
            }
        } else {
            candidates = [path]
        }
        var pid: pid_t = 0
        var result: Int32 = ENOENT
        var sawAccess = false
        for candidate in candidates {
            // A PATH entry that holds no such file is skipped after one access(2), not a whole
            // posix_spawn (a vfork and a failed execve): `true`, `sh` and most commands live in
            // the second entry of the default PATH, so a per-call `shell.run` paid for two
            // spawns. Existence only (F_OK): whether it may be executed is still execve's answer.
            // Absolute entries only: a relative one names a directory under the command's cwd,
            // which only the child enters.
            if searchPath != nil, candidate.hasPrefix("/"), access(candidate, F_OK) != 0 {
                let missing = errno
                if missing == ENOENT || missing == ENOTDIR || missing == EACCES {
                    result = missing
                    if missing == EACCES { sawAccess = true }
                    continue
                }
            }
            result = posix_spawn(&pid, candidate, &actions, &attributes, cArgv, cEnv)
            if result == 0 { break }
            if result == EACCES { sawAccess = true }
            guard result == ENOENT || result == EACCES || result == ENOTDIR else { break }
        }
        closeAll([input[0], output[1], errors[1]])
        guard result == 0 else {
            closeAll([input[1], output[0], errors[0]])
            let shown = ToolError.quoted(path)
            if result == ENOENT || result == ENOTDIR {
                throw ToolError(sawAccess ? .permissionDenied : .commandNotFound, "program \(shown) was not found")
            }
            if result == EACCES { throw ToolError(.permissionDenied, "program \(shown) is not executable") }
            throw ToolError(.spawnFailed, "program \(shown) could not be started (errno \(result))")
        }
        return Spawned(pid: pid, stdinFD: input[1], stdoutFD: output[0], stderrFD: errors[0])
    }

    static func closeAll(_ fds: [Int32]) {
        for fd in fds where fd >= 0 { close(fd) }
    }

    static func nowMs() -> Int {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return Int(now.tv_sec) * 1000 + Int(now.tv_nsec) / 1_000_000
    }

    /// Feeds stdin, drains stdout/stderr (keeping at most `cap` bytes of each but reading on so the
    /// command never blocks on a full pipe), and waits for the command or kills its process group
    /// at the timeout.
    func communicate(stdin: [UInt8], cap: Int, timeoutMs: Int) -> Outcome {
        var outcome = Outcome()
        let started = Spawned.nowMs()
        let deadline = started + timeoutMs
        var inFD = stdinFD
        var outFD = stdoutFD
        var errFD = stderrFD
        var written = 0
        if stdin.isEmpty {
            close(inFD)
            inFD = -1
        }
        var reaped = false
        var chunk = [UInt8](repeating: 0, count: 65536)
        // Readable once the command has exited. Without it the loop learnt of the exit only from
        // its pipes' EOF, which comes before the exit is reapable: a worker that lost that race
        // (on a busy machine, often) slept out a 10 ms tick before answering. Kernels before 5.3
        // have none; the ticks below still notice the exit there.
        var exitFD = csbw_pidfd_open(pid)
        defer { if exitFD >= 0 { close(exitFD) } }

        func drain(_ fd: inout Int32, into buffer: inout [UInt8], truncated: inout Bool) {
            while fd >= 0 {
                let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    let room = cap - buffer.count
                    if room > 0 { buffer.append(contentsOf: chunk[0..<min(room, count)]) }
                    if count > room { truncated = true }
                    continue
                }
                if count < 0 && errno == EINTR { continue }
                if count < 0 && errno == EAGAIN { return }
                close(fd)
                fd = -1
            }
        }

        while true {
            if !reaped {
                var status: Int32 = 0
                if waitpid(pid, &status, WNOHANG) == pid {
                    reaped = true
                    outcome.status = status
                }
            }
            if reaped {
                if exitFD >= 0 {
                    close(exitFD)
                    exitFD = -1
                }
                // The command is gone: take what its pipes hold and stop, even if a background
                // process still holds them open (it is killed with the group next).
                drain(&outFD, into: &outcome.stdout, truncated: &outcome.stdoutTruncated)
                drain(&errFD, into: &outcome.stderr, truncated: &outcome.stderrTruncated)
                break
            }
            let remaining = deadline - Spawned.nowMs()
            if remaining <= 0 {
                outcome.timedOut = true
                _ = kill(-pid, SIGKILL)
                _ = kill(pid, SIGKILL)
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                outcome.status = status
                reaped = true
                drain(&outFD, into: &outcome.stdout, truncated: &outcome.stdoutTruncated)
                drain(&errFD, into: &outcome.stderr, truncated: &outcome.stderrTruncated)
                break
            }
            var fds: [pollfd] = []
            if inFD >= 0 { fds.append(pollfd(fd: inFD, events: Int16(POLLOUT), revents: 0)) }
            if outFD >= 0 { fds.append(pollfd(fd: outFD, events: Int16(POLLIN), revents: 0)) }
            if errFD >= 0 { fds.append(pollfd(fd: errFD, events: Int16(POLLIN), revents: 0)) }
            if exitFD >= 0 { fds.append(pollfd(fd: exitFD, events: Int16(POLLIN), revents: 0)) }
            // poll wakes on output, EOF and (through exitFD) the command's exit, so it waits up
            // to the deadline. Without exitFD, the 50 ms tick notices an exit whose pipes a
            // background process keeps open, and a 10 ms one an exit after both pipes closed.
            let wait = Int32(
                exitFD >= 0 ? min(remaining, Int(Int32.max)) : min(remaining, outFD < 0 && errFD < 0 ? 10 : 50))
            _ = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), wait) }
            for entry in fds where entry.revents != 0 {
                if entry.fd == inFD {
                    let count = stdin.withUnsafeBytes { raw in write(inFD, raw.baseAddress! + written, raw.count - written) }
                    if count > 0 {
                        written += count
                    }
                    if written >= stdin.count || (count < 0 && errno != EAGAIN && errno != EINTR) {
                        close(inFD)
                        inFD = -1
                    }
                } else if entry.fd == outFD {
                    drain(&outFD, into: &outcome.stdout, truncated: &outcome.stdoutTruncated)
                } else if entry.fd == errFD {
                    drain(&errFD, into: &outcome.stderr, truncated: &outcome.stderrTruncated)
                }
            }
        }
        for fd in [inFD, outFD, errFD] where fd >= 0 { close(fd) }
        outcome.durationMs = Spawned.nowMs() - started
        return outcome
    }
}
