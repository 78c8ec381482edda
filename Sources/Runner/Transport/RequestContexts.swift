import Foundation
import Synchronization

/// The contexts of HTTP requests in the SDK's hands, so its handlers get the context the request
/// was authenticated with instead of authenticating it again.
///
/// The endpoint holds a request's context under a fresh random token and passes the token to the
/// SDK in the ``header`` of the request it builds (any value a client sent under that name is
/// dropped first); a handler reads it back from `Server.currentHandlerContext`. The token is
/// released with the request (``RequestRelease``).
final class RequestContexts: Sendable {
    /// The header carrying the token; never taken from a client.
    static let header = "X-Leasehold-Request-Context"
    private let contexts = Mutex<[String: CallContext]>([:])

    /// Holds `context` and returns its token.
    func hold(_ context: CallContext) -> String {
        let token = RandomID.make(prefix: "rq")
        contexts.withLock { $0[token] = context }
        return token
    }

    /// The context held under `token`.
    func context(_ token: String) -> CallContext? {
        contexts.withLock { $0[token] }
    }

    /// Forgets `token`'s context.
    func release(_ token: String) {
        _ = contexts.withLock { $0.removeValue(forKey: token) }
    }

    /// How many are held (tests: nothing outlives its request).
    var count: Int { contexts.withLock { $0.count } }
}
