// Its own file so the config fuzz target (Fuzz/pkg/config_yaml), which compiles
// RegisterWorkspaceRequest.swift without the HTTP server, compiles this too.

/// A JSON request body of the admin API or the console: its fields are exactly its `CodingKeys`,
/// and ``HTTPJSON/decode(_:from:limit:)`` refuses a body with any other member (400
/// `invalid_request` naming it). A misspelt `denied_tool_name` must not be dropped and leave a session
/// wider than its operator wrote. Codable alone cannot say so: a synthesized or hand-written
/// `init(from:)` reads the keys it knows and never sees the rest, so the body is read once more as a
/// bare key set and compared with `CodingKeys.allCases`. Absent and null optional fields are
/// unaffected (they are known keys or no key at all). Request bodies have no nested objects today; a
/// nested object type would check its own keys the same way.
protocol RequestBody: Decodable {
    associatedtype CodingKeys: CodingKey & CaseIterable
}

extension RequestBody {
    /// The wire names this body may carry.
    static var fieldNames: Set<String> { Set(CodingKeys.allCases.map(\.stringValue)) }
}
