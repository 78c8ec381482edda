import CWorker
import FoundationEssentials
import SandboxProtocol

#if canImport(Glibc)
    import Glibc
#endif

// The confined worker: installs the tier's seccomp program first, then serves the runner's
// requests one at a time over fd 3. See SandboxProtocol.WorkerProtocol for the exchange.

if CommandLine.arguments.dropFirst().first == "--version" {
    print("leasehold-worker protocol \(Frame.protocolVersion)")
    exit(0)
}

// A dead runner or a child closing its stdin must surface as EPIPE, never kill the worker.
signal(SIGPIPE, SIG_IGN)

let channel = Channel(fd: WorkerProtocol.channelDescriptor)
// The channel must never reach a shell.run command.
_ = fcntl(channel.fd, F_SETFD, FD_CLOEXEC)

let filterResult = csbw_install_filter_fd(WorkerProtocol.filterDescriptor)
if filterResult != 0 {
    channel.sendError(code: .seccompFailed, message: "installing the seccomp program failed (errno \(-filterResult))")
    exit(71)
}

var server = Server(channel: channel)
exit(server.run())
