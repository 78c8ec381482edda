import Synchronization

/// Where an upstream server's progress for one call goes: each `params` object of its
/// `notifications/progress`, raw JSON, in order.
///
/// Called on an event loop or the HTTP client's thread: it must not block (the transports hand it
/// to a bounded buffer). Equal to any other sink: a sink is how a call reports, not what the call
/// is, so it takes no part in an invocation's identity.
public struct ProgressSink: Sendable, Hashable {
    /// Delivers one notification's `params`.
    public let deliver: @Sendable ([UInt8]) -> Void

    /// Creates a sink.
    public init(_ deliver: @escaping @Sendable ([UInt8]) -> Void) { self.deliver = deliver }

    public static func == (lhs: ProgressSink, rhs: ProgressSink) -> Bool { true }
    public func hash(into hasher: inout Hasher) {}
}

/// A client's cancellation of one call (`notifications/cancelled`), passed to where the call
/// runs: a worker relaying to an upstream server sends it a `cancel` frame, an http upstream's
/// request is abandoned and the server told.
///
/// Not Swift task cancellation on purpose: the call's task must still commit its outcome record
/// (the audit store's async writes give up in a cancelled task). Equal to any other, like
/// ``ProgressSink``.
public final class CallCancellation: Sendable, Hashable {
    private let state = Mutex<(cancelled: Bool, next: Int, handlers: [Int: @Sendable () -> Void])>((false, 0, [:]))

    /// Creates a cancellation that has not happened.
    public init() {}

    /// Whether the client cancelled the call.
    public var isCancelled: Bool { state.withLock { $0.cancelled } }

    /// Cancels: every registered handler runs once (later registrations run at once).
    public func cancel() {
        let handlers = state.withLock { state -> [@Sendable () -> Void] in
            guard !state.cancelled else { return [] }
            state.cancelled = true
            defer { state.handlers = [:] }
            return Array(state.handlers.values)
        }
        for handler in handlers { handler() }
    }

    /// Runs `handler` when the call is cancelled (now, if it already is) while `operation` runs.
    public func whileRunning<T>(
        isolation: isolated (any Actor)? = #isolation, onCancel handler: @escaping @Sendable () -> Void,
        _ operation: () async throws -> T
    ) async rethrows -> T {
        let key = state.withLock { state -> Int? in
            guard !state.cancelled else { return nil }
            state.next += 1
            state.handlers[state.next] = handler
            return state.next
        }
        if key == nil { handler() }
        defer { if let key { _ = state.withLock { $0.handlers.removeValue(forKey: key) } } }
        return try await operation()
    }

    public static func == (lhs: CallCancellation, rhs: CallCancellation) -> Bool { true }
    public func hash(into hasher: inout Hasher) {}
}
