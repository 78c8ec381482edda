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
