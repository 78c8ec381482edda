import MCP

/// The catalog file format (also embedded under `catalog:` in leasehold.yaml).
public struct CatalogFile: Codable, Sendable {
    /// A server and its tools.
    public struct Server: Codable, Sendable {
        /// Server id, the tool-name prefix.
        public var id: String
        /// The server's tools.
        public var tools: [Entry]
    }

    /// One tool.
    public struct Entry: Codable, Sendable {
        /// Full name, `<server>.<tool>`.
        public var name: String
        /// Description.
        public var description: String?
        /// JSON Schema; defaults to an open object.
        public var inputSchema: Value?

        enum CodingKeys: String, CodingKey {
            case name, description
            case inputSchema = "input_schema"
        }
    }

    /// Extra servers.
    public var servers: [Server]?
    /// Bundles of patterns.
    public var bundles: [String: [String]]?
}
