import Foundation
import MCP
import Runner

/// A deterministic upstream catalog, policy and session for the `tools/list` figure.
///
/// Tool `i` lives on server `servers[i % 20]` and is named `<server>.<resource>_<verb>`; the
/// (resource, verb) pairs are unique per server up to 500 tools per server (10,000 in all).
enum Fixture {
    static let servers = [
        "kb", "crm", "github", "jira", "slack", "billing", "hr", "docs", "search", "calendar",
        "mail", "drive", "analytics", "deploy", "monitoring", "payments", "support", "inventory", "legal", "sales",
    ]
    static let resources = [
        "contacts", "deals", "accounts", "issues", "pulls", "repos", "projects", "messages", "channels", "events",
        "files", "reports", "invoices", "tickets", "users", "teams", "orders", "products", "documents", "pages",
        "articles", "dashboards", "alerts", "jobs", "secrets",
    ]
    static let verbs = [
        "get", "list", "search", "create", "update", "delete", "export", "import", "archive", "restore",
        "share", "comment", "assign", "merge", "sync", "admin", "summarize", "tag", "watch", "audit",
    ]
    static let readVerbs: Set<String> = ["get", "list", "search", "summarize", "watch", "audit"]

    /// The largest catalog the naming scheme supports without duplicates.
    static var maximumTools: Int { servers.count * resources.count * verbs.count }

    /// `count` upstream tools with realistic descriptions and small input schemas.
    static func tools(count: Int) throws -> [ToolDescriptor] {
        guard count <= maximumTools else { throw BenchError("at most \(maximumTools) fixture tools") }
        var tools: [ToolDescriptor] = []
        tools.reserveCapacity(count)
        for index in 0..<count {
            let server = servers[index % servers.count]
            let combo = index / servers.count
            let resourceIndex = combo % resources.count
            let verbIndex = (combo / resources.count + resourceIndex) % verbs.count
            let resource = resources[resourceIndex]
            let verb = verbs[verbIndex]
            tools.append(
                ToolDescriptor(
                    name: "\(server).\(resource)_\(verb)",
                    description: "\(verb.capitalized) \(resource) in \(server); results are limited to the caller's "
                        + "tenant and paged with a cursor.",
                    inputSchema: schema(resource: resource, verb: verb),
                    annotations: .init(readOnlyHint: readVerbs.contains(verb))))
        }
        return tools
    }

    static func schema(resource: String, verb: String) -> Value {
        var properties: [String: Value] = [
            "id": ["type": "string", "description": "The \(resource) id."]
        ]
        var required: [Value] = []
        switch verb {
        case "list", "search", "watch", "audit":
            properties = [
                "query": ["type": "string", "description": "Free-text filter."],
                "limit": ["type": "integer", "minimum": 1, "maximum": 200],
                "cursor": ["type": "string"],
            ]
            if verb == "search" { required = ["query"] }
        case "create", "update", "import":
            properties["fields"] = ["type": "object", "additionalProperties": ["type": "string"]]
            properties["dry_run"] = ["type": "boolean"]
            required = verb == "create" ? ["fields"] : ["id", "fields"]
        default:
            required = ["id"]
        }
        var schema: [String: Value] = [
            "type": "object", "properties": .object(properties), "additionalProperties": false,
        ]
        if !required.isEmpty { schema["required"] = .array(required) }
        return .object(schema)
    }

    /// Server -> tier rules added to the repo's `policies/` (`legal` stays unmapped: denied), plus a
    /// few exact overrides.
    static let policyRules: [(String, String)] = [
        ("kb.*", "read"), ("docs.*", "read"), ("search.*", "read"), ("analytics.*", "read"),
        ("monitoring.*", "read"), ("crm.*", "write"), ("github.*", "write"), ("jira.*", "write"),
        ("slack.*", "write"), ("calendar.*", "write"), ("drive.*", "write"), ("hr.*", "write"),
        ("support.*", "write"), ("sales.*", "write"), ("inventory.*", "write"), ("deploy.*", "exec"),
        ("mail.*", "external"), ("billing.*", "external"), ("payments.*", "external"),
        ("crm.contacts_delete", "external"), ("github.repos_admin", "external"), ("kb.secrets_get", "external"),
    ]

    /// 50 session patterns: 30 allow, 20 deny; exact names and `*` wildcards in both.
    static let allowed: [String] = [
        "kb.*", "docs.*", "search.*", "crm.contacts_*", "crm.deals_*", "crm.accounts_get", "crm.accounts_search",
        "github.issues_*", "github.pulls_*", "github.repos_get", "github.repos_list", "jira.issues_*",
        "jira.projects_get", "jira.projects_list", "slack.messages_*", "slack.channels_list", "calendar.events_*",
        "mail.messages_search", "mail.messages_get", "drive.files_*", "drive.documents_get", "analytics.*_get",
        "analytics.dashboards_*", "monitoring.alerts_*", "support.tickets_*", "support.articles_*",
        "sales.orders_get", "inventory.products_*", "repo.*", "shell.run",
    ]
    static let denied: [String] = [
        "*_admin", "*_delete", "*_export", "*.secrets_*", "crm.contacts_merge", "crm.deals_import",
        "github.pulls_merge", "github.issues_assign", "jira.issues_archive", "slack.messages_import", "kb.*_restore",
        "drive.files_share",
        "billing.*", "payments.*", "hr.*", "legal.*", "deploy.*", "support.tickets_sync", "calendar.events_share",
        "repo.apply_patch",
    ]

    /// The session, decoded from JSON the way the store hands it back (the memberwise init is internal).
    static func session() throws -> Session {
        let formatter = ISO8601DateFormatter()
        let now = Date()
        let object: [String: Any] = [
            "id": "ses_bench", "tenant_id": "acme", "actor_id": "alice@acme.example", "workspace_id": "acme-monorepo",
            "allowed_tool_names": allowed, "denied_tool_names": denied,
            "lease": [
                "id": "lse_bench", "issued_at": formatter.string(from: now),
                "expires_at": formatter.string(from: now.addingTimeInterval(3600)),
            ],
            "claim_ttl_seconds": 900, "lease_ttl_seconds": 3600,
            "created_at": formatter.string(from: now), "updated_at": formatter.string(from: now), "version": 1,
        ]
        let data = try JSONSerialization.data(withJSONObject: object)
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return try decoder.decode(Session.self, from: data)
    }
}
