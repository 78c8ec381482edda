import Hummingbird
import NIOCore

/// The request context of every route: Hummingbird's basics plus the connection the request came
/// on, whose client address keys per-source bounds and whose closing ends what the request holds.
struct LeaseholdRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// The HTTP connection.
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.channel = source.channel
    }

    /// The client's address as counted by the per-address bounds (``ClientAddress``).
    var clientAddress: String { ClientAddress.key(channel.remoteAddress) }
}
