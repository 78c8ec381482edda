import MCP

/// The built-in servers: `repo` and `shell` (executed in workers) and `system` (the gateway itself).
public enum BuiltinTools {
    /// `system.search_tools`.
    public static let searchTools = "system.search_tools"
    /// `system.execute_tool`.
    public static let executeTool = "system.execute_tool"

    static func object(_ properties: [String: Value], required: [String] = []) -> Value {
        var schema: [String: Value] = [
            "type": "object", "properties": .object(properties), "additionalProperties": false,
        ]
        if !required.isEmpty { schema["required"] = .array(required.map { .string($0) }) }
        return .object(schema)
    }

    static let string: Value = ["type": "string"]
    static let integer: Value = ["type": "integer", "minimum": 0]
    static let boolean: Value = ["type": "boolean"]

    /// The `system` tools, always listed (their targets are scoped separately).
    public static let system: [ToolDescriptor] = [
        ToolDescriptor(
            name: searchTools,
            description: "Search the tools this session may use, by name and description.",
            inputSchema: object(["query": string, "limit": integer], required: ["query"]),
            annotations: .init(readOnlyHint: true)),
        ToolDescriptor(
            name: executeTool,
            description: "Call a tool by name; the target is scoped exactly like a direct call.",
            inputSchema: object(["name": string, "arguments": ["type": "object"]], required: ["name"]),
            annotations: .init(readOnlyHint: false)),
    ]

    /// The workspace tools (`repo`, `shell`), executed inside confined workers.
    public static let workspace: [ToolDescriptor] = [
        ToolDescriptor(
            name: "repo.read_file", description: "Read a UTF-8 text file of the workspace, paged.",
            inputSchema: object(["path": string, "offset": integer, "length": integer], required: ["path"]),
            annotations: .init(readOnlyHint: true)),
        ToolDescriptor(
            name: "repo.list_dir", description: "List a directory of the workspace with types and sizes.",
            inputSchema: object(["path": string, "depth": integer, "limit": integer]),
            annotations: .init(readOnlyHint: true)),
        ToolDescriptor(
            name: "repo.search", description: "Search file contents of the workspace, like ripgrep.",
            inputSchema: object(
                [
                    "pattern": string, "regex": boolean, "path": string, "include": string, "exclude": string,
                    "case_sensitive": boolean, "max_matches": integer, "context_lines": integer,
                ], required: ["pattern"]),
            annotations: .init(readOnlyHint: true)),
        ToolDescriptor(
            name: "repo.stat", description: "Describe one path of the workspace.",
            inputSchema: object(["path": string], required: ["path"]),
            annotations: .init(readOnlyHint: true)),
        ToolDescriptor(
            name: "repo.write_file", description: "Write a file of the workspace atomically.",
            inputSchema: object(
                ["path": string, "content": string, "encoding": string, "create_only": boolean],
                required: ["path", "content"]),
            annotations: .init(readOnlyHint: false, destructiveHint: true)),
        ToolDescriptor(
            name: "repo.apply_patch", description: "Apply a unified diff to the workspace, all or nothing.",
            inputSchema: object(["patch": string], required: ["patch"]),
            annotations: .init(readOnlyHint: false, destructiveHint: true)),
        ToolDescriptor(
            name: "shell.run", description: "Run a command in the workspace inside a confined worker.",
            inputSchema: object(
                [
                    "command": string, "argv": ["type": "array", "items": ["type": "string"]], "cwd": string,
                    "stdin": string, "timeout_ms": integer, "env": ["type": "object"],
                ]),
            annotations: .init(readOnlyHint: false, destructiveHint: true, openWorldHint: false)),
    ]
}
