import Foundation
import Testing
import Yams

@testable import Runner

/// docs/admin-api.yaml and the code agree on every documented default and bound.
@Suite struct DocumentedDefaultsTests {
    static func document() throws -> [String: Any] {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/admin-api.yaml")
        let text = try String(contentsOf: file, encoding: .utf8)
        return try #require(try Yams.load(yaml: text) as? [String: Any])
    }

    /// The schema of query parameter `name` of `GET path`.
    static func query(_ name: String, of path: String, in document: [String: Any]) -> [String: Any]? {
        let paths = document["paths"] as? [String: Any]
        let get = (paths?[path] as? [String: Any])?["get"] as? [String: Any]
        let parameter = (get?["parameters"] as? [[String: Any]])?.first { $0["name"] as? String == name }
        return parameter?["schema"] as? [String: Any]
    }

    @Test func pageLimitsAreTheCodes() throws {
        let document = try Self.document()
        let approvals = try #require(Self.query("limit", of: "/api/v1/approvals", in: document))
        #expect(approvals["default"] as? Int == AdminService.defaultApprovalsLimit)
        #expect(approvals["maximum"] as? Int == AdminService.maximumApprovalsLimit)
        let audit = try #require(Self.query("limit", of: "/api/v1/audit", in: document))
        #expect(audit["default"] as? Int == AdminService.defaultAuditLimit)
        #expect(audit["maximum"] as? Int == AdminService.maximumAuditLimit)
        let paths = document["paths"] as? [String: Any]
        let summary = ((paths?["/api/v1/approvals"] as? [String: Any])?["get"] as? [String: Any])?["summary"] as? String
        #expect(summary?.contains("newest first") == true, "the store lists approvals newest first")
    }

    @Test func sessionTTLsAreTheCodes() throws {
        let document = try Self.document()
        let schemas = (document["components"] as? [String: Any])?["schemas"] as? [String: Any]
        let properties = (schemas?["CreateSession"] as? [String: Any])?["properties"] as? [String: Any]
        let lease = try #require(properties?["lease_ttl_seconds"] as? [String: Any])
        #expect(lease["default"] as? Int == AdminService.defaultLeaseSeconds)
        #expect(lease["maximum"] as? Int == AdminService.maximumLeaseSeconds)
        let claim = try #require(properties?["claim_ttl_seconds"] as? [String: Any])
        let lifetime = Int(LeaseholdConfig().claimPolicy.maximumLifetime.components.seconds)
        #expect(claim["default"] as? Int == lifetime && claim["maximum"] as? Int == lifetime)
    }

    /// Each admin API body type refuses exactly what its documented schema does not name: the type's
    /// fields are the schema's properties (SessionPatch also knows `tenant_id`, `id` and `lease`, to
    /// refuse them as immutable rather than unknown), and every documented JSON body has a type here.
    @Test func requestBodyTypesNameTheDocumentedFields() throws {
        let document = try Self.document()
        let schemas = (document["components"] as? [String: Any])?["schemas"] as? [String: Any]
        let types: [String: (fields: Set<String>, alsoKnown: Set<String>)] = [
            "POST /api/v1/workspaces": (RegisterWorkspaceRequest.fieldNames, []),
            "POST /api/v1/sessions": (CreateSessionRequest.fieldNames, []),
            "PATCH /api/v1/sessions/{id}": (SessionPatch.fieldNames, ["tenant_id", "id", "lease"]),
            "POST /api/v1/sessions/{id}/claims": (ClaimRequest.fieldNames, []),
            "POST /api/v1/sessions/{id}/lease": (LeaseRequest.fieldNames, []),
            "POST /api/v1/approvals/{id}/grant": (GrantRequest.fieldNames, []),
            "POST /api/v1/approvals/{id}/deny": (DenyRequest.fieldNames, []),
        ]
        var documented: Set<String> = []
        for (path, item) in try #require(document["paths"] as? [String: Any]) where path.hasPrefix("/api/v1/") {
            for (method, operation) in try #require(item as? [String: Any]) {
                let content = ((operation as? [String: Any])?["requestBody"] as? [String: Any])?["content"]
                for (media, body) in (content as? [String: Any]) ?? [:] where media.contains("json") {
                    let operationName = "\(method.uppercased()) \(path)"
                    documented.insert(operationName)
                    var schema = (body as? [String: Any])?["schema"] as? [String: Any]
                    if let ref = schema?["$ref"] as? String {
                        schema = schemas?[String(ref.split(separator: "/").last ?? "")] as? [String: Any]
                    }
                    let properties = Set(((schema?["properties"] as? [String: Any]) ?? [:]).keys)
                    let type = try #require(types[operationName], "\(operationName): no request type in this test")
                    #expect(type.fields == properties.union(type.alsoKnown), "\(operationName) (\(media))")
                }
            }
        }
        #expect(documented == Set(types.keys))
    }
}

/// The configuration reference (the `yaml` block under "Configuration" in docs/operations.md) and
/// ``RunnerSettings/defaults`` agree: every default in code is documented with its value, every
/// value documented is the code's default or says it is an example (its comment names the
/// default), and every key the runner reads is in the block.
@Suite struct DocumentedConfigurationTests {
    /// The block's text.
    static func block() throws -> String {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("docs/operations.md")
        let text = try String(contentsOf: file, encoding: .utf8)
        let section = try #require(text.range(of: "## Configuration (`--config leasehold.yaml`)"))
        let open = try #require(text.range(of: "```yaml\n", range: section.upperBound..<text.endIndex))
        let close = try #require(text.range(of: "\n```", range: open.upperBound..<text.endIndex))
        return String(text[open.upperBound..<close.lowerBound])
    }

    /// Keys whose values are content (servers, tools, workspaces, issuers), not settings.
    static let contentKeys: Set<String> = ["catalog", "workspaces", "oauth", "servers"]

    /// Every setting's default as leasehold.yaml writes it, by dotted key, from ``RunnerSettings/defaults``.
    static func codeDefaults() -> [String: String] {
        let d = RunnerSettings.defaults
        func seconds(_ duration: Duration) -> String { String(duration.components.seconds) }
        func number(_ duration: Duration) -> String {
            let value = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
            return value == value.rounded() ? String(Int(value)) : String(value)
        }
        let pool = d.workers.pool
        let disk = d.tenants.disk.standard
        return [
            "listen": d.listen, "issuer": d.claims.issuer, "audience": d.claims.audience,
            "claim_max_lifetime_seconds": seconds(d.claims.maximumLifetime),
            "clock_skew_seconds": seconds(d.claims.clockSkew),
            "allowed_origins": "\(d.http.allowedOrigins)", "allowed_hosts": "\(d.http.allowedHosts)",
            "policy_reload_interval_seconds": d.policyReloadInterval.map(seconds) ?? "0",
            "audit_checkpoint_records": String(d.audit.checkpoints.records),
            "audit_checkpoint_seconds": seconds(d.audit.checkpoints.interval),
            "audit_batched_sync_ms": String(Int(d.audit.batchedSyncInterval / .milliseconds(1))),
            "audit_unauthenticated_interval_seconds": seconds(d.audit.unauthenticatedRefusals.interval),
            "audit_unauthenticated_sources": String(d.audit.unauthenticatedRefusals.maximumSources),
            "audit_reserve_mib": String(d.audit.reserveBytes >> 20),
            "http.header_timeout_seconds": number(d.http.headerTimeout),
            "http.body_timeout_seconds": number(d.http.bodyTimeout),
            "http.keep_alive_timeout_seconds": number(d.http.keepAliveTimeout),
            "http.mcp_idle_timeout_seconds": number(d.http.idleTimeout),
            "http.max_connections": String(d.http.maximumConnections),
            "http.max_connections_per_address": String(d.http.maximumConnectionsPerAddress),
            "http.max_header_bytes": String(d.http.maximumHeaderBytes),
            "http.max_header_fields": String(d.http.maximumHeaderFields),
            "http.max_body_bytes": String(d.http.maximumBodyBytes),
            "http.max_sse_streams_per_session": String(d.http.maximumSSEStreamsPerSession),
            "worker_host_ids.first": String(d.workers.firstHostID),
            "worker_host_ids.count": String(d.workers.hostIDCount),
            "worker_cgroups": d.workers.cgroups ? "auto" : "off",
            "worker_idle_timeout_seconds": seconds(pool.idleTimeout),
            "worker_max_calls_per_session": String(pool.maximumCallsPerSession),
            "worker_max_live": String(pool.maximumWorkers),
            "worker_spares_per_session": String(pool.sparesPerSession),
            "worker_max_spares": String(pool.maximumSpares),
            "worker_spare_idle_timeout_seconds": seconds(pool.spareIdleTimeout),
            "tenant_limits.worker_max_live": String(pool.shares.standard.workers),
            "tenant_limits.calls_in_flight": String(pool.shares.standard.callsInFlight),
            "tenant_limits.sessions": String(d.tenants.sessions.standard),
            "tenant_limits.disk_mib": String(disk.tenant.bytes >> 20),
            "tenant_limits.disk_files": String(disk.tenant.files),
            "tenant_limits.workspace_disk_mib": String(disk.workspace.bytes >> 20),
            "tenant_limits.workspace_disk_files": String(disk.workspace.files),
            "metrics.per_tenant_labels": String(d.metrics.perTenantLabels),
        ]
    }

    /// The block's settings by dotted key: the value as written (flow collections whole) and the
    /// line's comment. Indentation gives the nesting; content keys are skipped with what is under them.
    static func documented(_ block: String) -> [String: (value: String, comment: String)] {
        var result: [String: (value: String, comment: String)] = [:]
        var path: [(indent: Int, key: String)] = []
        for line in block.split(separator: "\n", omittingEmptySubsequences: true) {
            let indent = line.prefix { $0 == " " }.count
            let body = line.dropFirst(indent)
            guard !body.hasPrefix("#"), !body.hasPrefix("-"), let colon = body.firstIndex(of: ":") else { continue }
            let key = String(body[..<colon])
            let rest = body[body.index(after: colon)...]
            let hash = rest.range(of: " #")
            let value = String(hash.map { rest[..<$0.lowerBound] } ?? rest).trimmingCharacters(in: .whitespaces)
            let comment = hash.map { String(rest[$0.upperBound...]) } ?? ""
            while let last = path.last, last.indent >= indent { path.removeLast() }
            path.append((indent, key))
            if path.contains(where: { contentKeys.contains($0.key) }) { continue }
            let dotted = path.map(\.key).joined(separator: ".")
            if value.hasPrefix("{") {
                // A flow mapping: `{first: N, count: M}`.
                for pair in value.dropFirst().dropLast().split(separator: ",") {
                    let parts = pair.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                    if parts.count == 2 { result[dotted + "." + parts[0]] = (parts[1], comment) }
                }
            } else if !value.isEmpty {
                result[dotted] = (value, comment)
            }
        }
        return result
    }

    @Test func everyDefaultInCodeIsDocumentedWithItsValue() throws {
        let documented = Self.documented(try Self.block())
        for (key, value) in Self.codeDefaults().sorted(by: { $0.key < $1.key }) {
            let entry = documented[key]
            #expect(entry != nil, "docs/operations.md does not document \(key)")
            guard let entry else { continue }
            #expect(entry.value == value, "\(key): documented \(entry.value), the code's default is \(value)")
        }
    }

    @Test func everyDocumentedValueIsTheDefaultOrAnExample() throws {
        let documented = Self.documented(try Self.block())
        let defaults = Self.codeDefaults()
        #expect(documented.count >= defaults.count)
        for (key, entry) in documented.sorted(by: { $0.key < $1.key }) {
            if let value = defaults[key] {
                #expect(entry.value == value, "\(key): documented \(entry.value), the code's default is \(value)")
            } else {
                // No fixed default in code (a path, an address, an id): the line must say what it is.
                #expect(
                    entry.comment.contains("default:"),
                    "\(key): \(entry.value) is documented without a default in code; its comment must name the default")
            }
        }
    }

    @Test func everyKeyTheRunnerReadsIsInTheBlock() throws {
        let block = try Self.block()
        let keys =
            LeaseholdConfig.CodingKeys.allCases.map(\.rawValue) + LeaseholdConfig.otherKeys
            + HTTPLimits.CodingKeys.allCases.map { "  " + $0.rawValue }
            + LeaseholdConfig.TenantLimitsConfig.TenantCaps.CodingKeys.allCases.map { "  " + $0.rawValue }
            + MetricsConfig.CodingKeys.allCases.map { "  " + $0.rawValue }
        for key in keys {
            // A key on its own line, or named as the alternative of another (`(or catalog_file: ...`).
            let found = block.split(separator: "\n").contains { line in
                line.hasPrefix(key + ":") || line.contains("(or \(key.trimmingCharacters(in: .whitespaces)):")
            }
            #expect(found, "docs/operations.md's configuration block lacks \(key.trimmingCharacters(in: .whitespaces))")
        }
    }
}
