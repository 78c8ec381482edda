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
    static let encoding: Value = ["type": "string", "enum": ["utf8", "base64"]]
    static func array(_ items: Value) -> Value { ["type": "array", "items": items] }
    static func nullable(_ type: String) -> Value { ["type": [.string(type), "null"]] }

    /// A result schema: the listed keys are always present; others may be added later, so
    /// extra keys are allowed (a client validating `structuredContent` keeps working).
    static func result(_ properties: [String: Value], required: [String]) -> Value {
        ["type": "object", "properties": .object(properties), "required": .array(required.map { .string($0) })]
    }

    static let fileType: Value = [
        "type": "string", "enum": ["file", "dir", "symlink", "fifo", "socket", "char_device", "block_device", "other"],
    ]

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

    /// The workspace tools (`repo`, `shell`), executed inside confined workers. Output schemas
    /// describe the worker's results (Sources/leasehold-worker/Ops); errors are `isError`
    /// results `{"error": {"code", "message"}}` and are not validated against them.
    public static let workspace: [ToolDescriptor] = [
        ToolDescriptor(
            name: "repo.read_file",
            description: "Read a UTF-8 text file of the workspace (or base64 on request), paged with next_offset.",
            inputSchema: object(
                ["path": string, "offset": integer, "length": integer, "encoding": encoding], required: ["path"]),
            outputSchema: result(
                [
                    "path": string, "encoding": encoding, "content": string, "size": integer, "offset": integer,
                    "length": integer, "truncated": boolean, "next_offset": integer,
                ], required: ["path", "encoding", "content", "size", "offset", "length", "truncated"]),
            annotations: .init(readOnlyHint: true)),
        ToolDescriptor(
            name: "repo.list_dir", description: "List a directory of the workspace with types and sizes.",
            inputSchema: object(["path": string, "depth": integer, "limit": integer]),
            outputSchema: result(
                [
                    "path": string, "truncated": boolean,
                    "entries": array(
                        result(
                            ["path": string, "type": fileType, "size": integer, "hard_link": boolean],
                            required: ["path", "type"])),
                ], required: ["path", "entries", "truncated"]),
            annotations: .init(readOnlyHint: true)),
        ToolDescriptor(
            name: "repo.search", description: "Search file contents of the workspace, like ripgrep.",
            inputSchema: object(
                [
                    "pattern": string, "regex": boolean, "path": string, "include": string, "exclude": string,
                    "case_sensitive": boolean, "max_matches": integer, "context_lines": integer,
                ], required: ["pattern"]),
            outputSchema: result(
                [
                    "files_scanned": integer, "truncated": boolean,
                    "matches": array(
                        result(
                            [
                                "path": string, "line": integer, "text": string, "before": array(string),
                                "after": array(string),
                            ], required: ["path", "line", "text"])),
                ], required: ["matches", "files_scanned", "truncated"]),
            annotations: .init(readOnlyHint: true)),
        ToolDescriptor(
            name: "repo.stat", description: "Describe one path of the workspace (a final symlink is not followed).",
            inputSchema: object(["path": string], required: ["path"]),
            outputSchema: result(
                [
                    "path": string, "type": fileType, "size": integer, "mode": string, "mtime": ["type": "integer"],
                    "nlink": integer, "target": string,
                ], required: ["path", "type", "size", "mode", "mtime", "nlink"]),
            annotations: .init(readOnlyHint: true)),
        ToolDescriptor(
            name: "repo.write_file",
            description: "Write a file of the workspace atomically (temp file + rename); never follows a symlink out.",
            inputSchema: object(
                [
                    "path": string, "content": string, "encoding": encoding, "create_only": boolean,
                    "create_parents": boolean,
                ],
                required: ["path", "content"]),
            outputSchema: result(
                ["path": string, "bytes_written": integer, "created": boolean],
                required: ["path", "bytes_written", "created"]),
            annotations: .init(readOnlyHint: false, destructiveHint: true)),
        ToolDescriptor(
            name: "repo.apply_patch",
            description: "Apply a unified diff (create, delete, rename) to the workspace, all or nothing.",
            inputSchema: object(["patch": string], required: ["patch"]),
            outputSchema: result(
                [
                    "files": array(
                        result(
                            [
                                "path": string, "action": ["type": "string", "enum": ["modified", "created", "deleted", "renamed"]],
                                "hunks": integer,
                            ], required: ["path", "action", "hunks"]))
                ], required: ["files"]),
            annotations: .init(readOnlyHint: false, destructiveHint: true)),
        ToolDescriptor(
            name: "shell.run",
            description:
                "Run a command (sh -c) or argv in the workspace inside a confined worker: no network, only the workspace and read-only system directories.",
            inputSchema: object(
                [
                    "command": string, "argv": array(string), "cwd": string, "stdin": string, "timeout_ms": integer,
                    "env": ["type": "object", "additionalProperties": string],
                ]),
            outputSchema: result(
                [
                    "exit_code": nullable("integer"), "signal": nullable("string"), "stdout": string, "stderr": string,
                    "stdout_truncated": boolean, "stderr_truncated": boolean, "timed_out": boolean,
                    "duration_ms": integer,
                ],
                required: [
                    "exit_code", "signal", "stdout", "stderr", "stdout_truncated", "stderr_truncated", "timed_out",
                    "duration_ms",
                ]),
            annotations: .init(readOnlyHint: false, destructiveHint: true, openWorldHint: false)),
    ]
}
