import Foundation
import Sandbox
import Tracing

/// Everything the gateway established about one request before deciding it.
public struct CallContext: Sendable {
    /// The verified claim.
    public let claim: VerifiedClaim
    /// The session as read from the store for this request.
    public let session: Session
    /// The compiled scope.
    public let scope: Scope
    /// The MCP connection the request arrived on.
    public let connectionID: String
    /// When the session was read: a retirement (revoke, renewal, hand-off, workspace removal)
    /// from this moment on voids the call in the worker pool, however long it waited to get there.
    public var readAt: ContinuousClock.Instant = .now
    /// Where an upstream server's progress for this request goes, when the client asked for it
    /// (`_meta.progressToken`); set by the transport.
    public var progress: ProgressSink? = nil
    /// The client's `notifications/cancelled` for this request; set by the transport.
    public var cancellation: CallCancellation? = nil
    /// The request's server span when tracing is on; set by the transport. The gateway names the
    /// tier, isolation, worker and outcome on it.
    public var span: (any Span)? = nil
}
