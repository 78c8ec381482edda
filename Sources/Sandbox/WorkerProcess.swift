import CSandbox
import NIOCore
import NIOPosix
import SandboxProtocol
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// One live confined worker: its pidfd and the NIO channel over its socket.
///
/// Strictly one exchange at a time (the pool serialises callers). Killing it kills its whole
/// process tree: it is pid 1 of its own pid namespace.
final class WorkerProcess: Sendable {
    /// How a worker ended, once reaped.
    enum Termination: Sendable, Hashable {
        case exited(Int32)
        case signaled(Int32)
    }

    let id: String
    let pid: pid_t
    private let channel: any Channel
    private let handler: NIOLoopBound<FrameHandler>
    private let state: Mutex<State>
    private let terminated: EventLoopPromise<Termination>
    private let reaper: NIOThreadPool
    /// Exchanges so far: a `cancel` is sent only while its own exchange awaits the answer.
    private let exchanges = Atomic<Int>(0)

    private struct State {
        var pidfd: Int32
        var retirement: WorkerRetirement?
        var cgroup: WorkerCgroups.Placement?
        /// OOM kills of its memory cgroup already reported.
        var oomKillsSeen = 0
        /// OOM kills counted when its cgroup was removed (after it was reaped).
        var oomKillsAtEnd = 0
    }

    private init(
        id: String, pid: pid_t, pidfd: Int32, channel: any Channel, handler: NIOLoopBound<FrameHandler>,
        reaper: NIOThreadPool
    ) {
        self.id = id
        self.pid = pid
        self.channel = channel
        self.handler = handler
        self.state = Mutex(State(pidfd: pidfd, retirement: nil, cgroup: nil))
        self.terminated = channel.eventLoop.makePromise()
        self.reaper = reaper
    }

    /// Wraps a spawned worker's socket (`descriptor`, now owned by the channel) and starts
    /// watching for its exit.
    static func attach(
        id: String, pid: pid_t, pidfd: Int32, descriptor: Int32, group: any EventLoopGroup, reaper: NIOThreadPool
    ) async throws -> WorkerProcess {
        let eventLoop = group.next()
        let channel = try await ClientBootstrap(group: eventLoop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(FrameHandler())
                }
            }
            .withConnectedSocket(descriptor).get()
        let handler = try await eventLoop.submit {
            NIOLoopBound(try channel.pipeline.syncOperations.handler(type: FrameHandler.self), eventLoop: eventLoop)
        }.get()
        let worker = WorkerProcess(
            id: id, pid: pid, pidfd: pidfd, channel: channel, handler: handler, reaper: reaper)
        // The socket closes when the worker's last process is gone: reap it then (off the event
        // loop: waitid may block for the moment between the close and the zombie).
        channel.closeFuture.whenComplete { _ in worker.reapInBackground() }
        return worker
    }

    /// Sends `frame` and waits for the worker's answer, at most `timeout`.
    ///
    /// `progress` takes the `progress` frames that come before the answer (without it, such a
    /// frame breaks the protocol and the worker is destroyed); `cancellation` sends the worker a
    /// `cancel` frame when the client cancels while the answer is awaited.
    ///
    /// - Throws: ``ExchangeError`` when the worker closed the channel or the deadline passed (the
    ///   worker is killed then).
    func exchange(
        _ frame: Frame, timeout: TimeAmount?, progress: ProgressSink? = nil, cancellation: CallCancellation? = nil
    ) async throws(ExchangeError) -> Frame {
        let eventLoop = channel.eventLoop
        let promise = eventLoop.makePromise(of: Frame.self)
        let handler = self.handler
        let channel = self.channel
        let exchange = exchanges.add(1, ordering: .relaxed).newValue
        eventLoop.execute {
            handler.value.expect(promise, exchange: exchange, progress: progress)
            var buffer = channel.allocator.buffer(capacity: frame.payload.count + 5)
            buffer.writeBytes(frame.encoded())
            channel.writeAndFlush(buffer, promise: nil)
        }
        var deadline: Scheduled<Void>?
        if let timeout {
            deadline = eventLoop.scheduleTask(in: timeout) { [weak self] in
                promise.fail(ExchangeError.timedOut)
                self?.kill()
            }
        }
        defer { deadline?.cancel() }
        do {
            guard let cancellation else { return try await promise.futureResult.get() }
            // Scheduled after the request's write on the same loop, so the `cancel` frame can only
            // follow it; once the answer is in, it is not sent.
            return try await cancellation.whileRunning(onCancel: {
                eventLoop.execute { handler.value.interrupt(exchange, channel: channel) }
            }) {
                try await promise.futureResult.get()
            }
        } catch let error as ExchangeError {
            throw error
        } catch {
            throw .closed
        }
    }

    /// The worker's own cgroups, removed once it has been reaped.
    func adopt(cgroup: WorkerCgroups.Placement) {
        state.withLock { $0.cgroup = cgroup }
    }

    /// Whether the kernel killed a process of the worker for its memory limit since the last
    /// time this was asked (its cgroup counts OOM kills; false without a memory cgroup).
    func newOOMKills() -> Bool {
        state.withLock { state in
            let count = state.cgroup?.oomKills() ?? state.oomKillsAtEnd
            defer { state.oomKillsSeen = max(state.oomKillsSeen, count) }
            return count > state.oomKillsSeen
        }
    }

    /// Why the runner destroyed it, if it did.
    var retirement: WorkerRetirement? { state.withLock { $0.retirement } }

    /// Kills the worker's whole process tree, recording why (the first reason wins).
    func destroy(_ reason: WorkerRetirement) {
        state.withLock { if $0.retirement == nil { $0.retirement = reason } }
        kill()
    }

    private func kill() {
        state.withLock { state in
            if state.pidfd >= 0 { _ = csb_pidfd_kill(state.pidfd) }
        }
        channel.close(promise: nil)
    }

    /// How it ended; waits until it has been reaped.
    func termination() async -> Termination {
        (try? await terminated.futureResult.get()) ?? .exited(-1)
    }

    /// Runs `body` once the worker has been reaped (what must not outlive it: its egress proxy).
    func whenTerminated(_ body: @escaping @Sendable () -> Void) {
        terminated.futureResult.whenComplete { _ in body() }
    }

    private func reapInBackground() {
        // Make sure nothing of it survives the channel: a worker that closed its socket on purpose
        // is killed too, so its tree never outlives the runner's view of it.
        state.withLock { state in
            if state.pidfd >= 0 { _ = csb_pidfd_kill(state.pidfd) }
        }
        let promise = terminated
        reaper.submit { [self] _ in
            let result = self.state.withLock { state -> Termination in
                guard state.pidfd >= 0 else { return .exited(-1) }
                var exited: Int32 = 0
                var code: Int32 = 0
                let reaped = csb_pidfd_reap(state.pidfd, 0, &exited, &code)
                close(state.pidfd)
                state.pidfd = -1
                if let cgroup = state.cgroup {
                    state.oomKillsAtEnd = cgroup.oomKills()
                    cgroup.remove()
                    state.cgroup = nil
                }
                guard reaped == 1 else { return .exited(-1) }
                return exited == 1 ? .exited(code) : .signaled(code)
            }
            promise.succeed(result)
        }
    }
}

/// Why an exchange did not produce a frame.
enum ExchangeError: Error, Sendable, Hashable {
    /// The worker closed its channel (exited or was killed).
    case closed
    /// The deadline passed; the worker has been killed.
    case timedOut
    /// The worker sent bytes that are not a frame.
    case malformed(String)
}

/// Decodes frames from the worker and completes the one waiting exchange.
private final class FrameHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private var decoder = FrameDecoder()
    private var waiting: EventLoopPromise<Frame>?
    /// The waiting exchange's number, and where its progress frames go.
    private var exchange = 0
    private var progress: ProgressSink?
    private var closed = false

    func expect(_ promise: EventLoopPromise<Frame>, exchange: Int, progress: ProgressSink?) {
        if closed {
            promise.fail(ExchangeError.closed)
        } else {
            waiting?.fail(ExchangeError.closed)
            waiting = promise
            self.exchange = exchange
            self.progress = progress
        }
    }

    /// Sends `cancel` if exchange `number` still awaits its answer.
    func interrupt(_ number: Int, channel: any Channel) {
        guard waiting != nil, exchange == number, !closed else { return }
        var buffer = channel.allocator.buffer(capacity: 5)
        buffer.writeBytes(Frame(kind: .cancel, payload: []).encoded())
        channel.writeAndFlush(buffer, promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if let bytes = buffer.readBytes(length: buffer.readableBytes) { decoder.append(bytes) }
        do {
            while let frame = try decoder.next() {
                guard let waiting else {
                    // A frame nobody asked for breaks the one-exchange-at-a-time protocol; a
                    // worker doing it is not trusted with another call (and could otherwise make
                    // the runner buffer without bound). Closing the channel destroys it.
                    context.close(promise: nil)
                    return
                }
                if frame.kind == .progress {
                    // Only an exchange that takes progress may get it, and each is bounded in size
                    // (the sink's buffer bounds how many are held).
                    guard let progress, frame.payload.count <= WorkerMessage.maximumProgressBytes else {
                        self.waiting = nil
                        waiting.fail(ExchangeError.malformed("an unexpected or oversized progress frame"))
                        context.close(promise: nil)
                        return
                    }
                    progress.deliver(frame.payload)
                    continue
                }
                self.waiting = nil
                self.progress = nil
                waiting.succeed(frame)
            }
        } catch {
            waiting?.fail(ExchangeError.malformed(error.reason))
            waiting = nil
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        closed = true
        waiting?.fail(ExchangeError.closed)
        waiting = nil
        progress = nil
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
