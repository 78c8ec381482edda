/// When an HTTP connection must next have sent something, and what happens if it has not.
///
/// A plain idle timeout is defeated by a client that sends one byte every few seconds
/// (slowloris), and Hummingbird's idle timer only sees whole HTTP parts. So the deadlines here
/// are totals, not gaps:
///
/// - **head**: a request head must be complete ``headerTimeout`` after the connection opened,
///   or after the first byte of a later request;
/// - **body**: a request body must be complete ``bodyTimeout`` after its head;
/// - **keep-alive**: a connection that has answered everything it was asked and receives no
///   byte for ``keepAliveTimeout`` is closed;
/// - none while a response is due: producing it is the server's turn (an SSE stream can last
///   as long as its MCP connection; per-session stream caps bound those).
///
/// A value type generic over the instant, so tests can drive it with any clock; the caller
/// (``ReadDeadlineWatch``) owns the timer and the channel.
struct ReadDeadlines<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    /// Which deadline passed.
    enum Reason: String, Sendable, Equatable {
        case head, body, keepAlive = "keep-alive"
    }

    /// A deadline and why.
    struct Deadline: Sendable, Equatable {
        let at: Instant
        let reason: Reason
    }

    /// What to do when a deadline has passed.
    enum Action: Sendable, Equatable {
        /// Answer 408 (no response to this connection's requests has begun) and close.
        case answerAndClose(Reason)
        /// Close without a word: a response is partly written, or the connection is idle.
        case close(Reason)
    }

    let headerTimeout: Duration
    let bodyTimeout: Duration
    let keepAliveTimeout: Duration

    /// Request heads read.
    private var heads = 0
    /// Responses written to their end.
    private var responses = 0
    /// A response head is written and its end is not.
    private var responding = false
    /// A head has been read and its end not yet: when the head came.
    private var bodySince: Instant?
    /// Bytes of a head not yet read: when the first came (the opening, for a new connection).
    private var headSince: Instant?
    /// When the connection last had nothing left to answer.
    private var idleSince: Instant

    init(openedAt: Instant, headerTimeout: Duration, bodyTimeout: Duration, keepAliveTimeout: Duration) {
        self.headerTimeout = headerTimeout
        self.bodyTimeout = bodyTimeout
        self.keepAliveTimeout = keepAliveTimeout
        self.headSince = openedAt
        self.idleSince = openedAt
    }

    /// Bytes arrived, before they are decoded. Outside a body they begin (or continue) a head.
    mutating func bytesRead(at now: Instant) {
        if bodySince == nil && headSince == nil { headSince = now }
    }

    /// A request head was decoded.
    mutating func headRead(at now: Instant) {
        heads += 1
        headSince = nil
        bodySince = now
    }

    /// A request's end was decoded.
    mutating func endRead() {
        bodySince = nil
    }

    /// A response head was written.
    mutating func responseStarted() {
        responding = true
    }

    /// A response's end was written.
    mutating func responseEnded(at now: Instant) {
        responses += 1
        responding = false
        if responses >= heads { idleSince = now }
    }

    /// The next deadline, if any.
    var deadline: Deadline? {
        if let bodySince { return Deadline(at: bodySince.advanced(by: bodyTimeout), reason: .body) }
        if let headSince { return Deadline(at: headSince.advanced(by: headerTimeout), reason: .head) }
        if responses < heads { return nil }
        return Deadline(at: idleSince.advanced(by: keepAliveTimeout), reason: .keepAlive)
    }

    /// What to do at `now`: nil when no deadline has passed.
    func expired(at now: Instant) -> Action? {
        guard let deadline, now >= deadline.at else { return nil }
        switch deadline.reason {
        case .keepAlive:
            return .close(.keepAlive)
        case .head:
            // Nothing owed to earlier requests: the 408 cannot land inside another response.
            return responses >= heads && !responding ? .answerAndClose(.head) : .close(.head)
        case .body:
            // Only the request being read is unanswered, and its response has not begun.
            return responses == heads - 1 && !responding ? .answerAndClose(.body) : .close(.body)
        }
    }
}
