import MCP

/// What ``ClaimCarryingTransport`` reads of each message a pipe (stdio) client sends before the
/// SDK decodes it: its id and method, and from `params._meta` the claim (`dev.leasehold/claim`)
/// and the trace context. Untrusted bytes: fuzzed by Fuzz/targets/hot_edge.swift.
struct PipeRequestEnvelope: Decodable {
    struct Params: Decodable {
        struct Meta: Decodable {
            let claim: String?
            let traceparent: String?
            let tracestate: String?
            enum CodingKeys: String, CodingKey {
                case claim = "dev.leasehold/claim"
                case traceparent, tracestate
            }
        }
        let meta: Meta?
        enum CodingKeys: String, CodingKey { case meta = "_meta" }
    }
    let id: ID?
    let method: String?
    let params: Params?
}
