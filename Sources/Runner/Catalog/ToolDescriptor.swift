import MCP

/// A tool the gateway knows: its name, description and input schema.
public struct ToolDescriptor: Sendable, Hashable {
    /// `<server>.<tool>`.
    public var name: String
    /// A one-line description (searched by `system.search_tools`).
    public var description: String
    /// JSON Schema of the arguments.
    public var inputSchema: Value
    /// JSON Schema of the result's `structuredContent`, when the tool declares one.
    public var outputSchema: Value?
    /// Hints from the server; never used to decide a tier.
    public var annotations: Tool.Annotations

    /// Creates a descriptor.
    public init(
        name: String, description: String, inputSchema: Value, outputSchema: Value? = nil,
        annotations: Tool.Annotations = nil
    ) {
        self.name = name
        self.description = description
        self.inputSchema = inputSchema
        self.outputSchema = outputSchema
        self.annotations = annotations
    }

    /// The server part of the name.
    public var server: String { String(ToolName.server(of: name)) }

    /// The MCP form.
    public var mcpTool: Tool {
        Tool(
            name: name, description: description, inputSchema: inputSchema, annotations: annotations,
            outputSchema: outputSchema)
    }
}
