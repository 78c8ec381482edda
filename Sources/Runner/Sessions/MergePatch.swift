/// One field of a JSON merge-patch (RFC 7396): omitted = unchanged, `null` = cleared, value = set.
public enum PatchField<Value: Sendable & Hashable>: Sendable, Hashable {
    /// The field was not in the document.
    case unchanged
    /// The field was `null`.
    case cleared
    /// The field had a value.
    case set(Value)

    /// Applies the field to `current`.
    public func apply(to current: Value?) -> Value? {
        switch self {
        case .unchanged: current
        case .cleared: nil
        case .set(let value): value
        }
    }
}

extension KeyedDecodingContainer {
    /// Decodes a merge-patch field, telling absent from `null` from a value.
    func decodePatch<T: Decodable & Sendable & Hashable>(_ type: T.Type, forKey key: Key) throws -> PatchField<T> {
        guard contains(key) else { return .unchanged }
        if try decodeNil(forKey: key) { return .cleared }
        return .set(try decode(T.self, forKey: key))
    }
}

/// The body of `PATCH /api/v1/sessions/{id}` with merge-patch semantics.
public struct SessionPatch: RequestBody, Sendable, Hashable {
    /// A new actor (hand-off). Cannot be cleared.
    public var actorID: PatchField<String>
    /// A new workspace of the same tenant. Cannot be cleared.
    public var workspaceID: PatchField<String>
    /// Universe: server.
    public var serverID: PatchField<String>
    /// Universe: bundle.
    public var bundleID: PatchField<String>
    /// Allow patterns.
    public var allowedToolNames: PatchField<[String]>
    /// Deny patterns.
    public var deniedToolNames: PatchField<[String]>
    /// Claim lifetime.
    public var claimTTLSeconds: PatchField<Int>
    /// Fields that may never be patched, if present in the body.
    public var immutableFieldsPresent: [String]

    enum CodingKeys: String, CodingKey, CaseIterable {
        case actorID = "actor_id"
        case workspaceID = "workspace_id"
        case serverID = "server_id"
        case bundleID = "bundle_id"
        case allowedToolNames = "allowed_tool_names"
        case deniedToolNames = "denied_tool_names"
        case claimTTLSeconds = "claim_ttl_seconds"
        case tenantID = "tenant_id"
        case id
        case lease
    }

    /// Creates a patch in code.
    public init(
        actorID: PatchField<String> = .unchanged, workspaceID: PatchField<String> = .unchanged,
        serverID: PatchField<String> = .unchanged, bundleID: PatchField<String> = .unchanged,
        allowedToolNames: PatchField<[String]> = .unchanged, deniedToolNames: PatchField<[String]> = .unchanged,
        claimTTLSeconds: PatchField<Int> = .unchanged
    ) {
        self.actorID = actorID
        self.workspaceID = workspaceID
        self.serverID = serverID
        self.bundleID = bundleID
        self.allowedToolNames = allowedToolNames
        self.deniedToolNames = deniedToolNames
        self.claimTTLSeconds = claimTTLSeconds
        self.immutableFieldsPresent = []
    }

    /// The fields this patch sets or clears, by wire name (for the audit trail).
    public var presentFields: [String] {
        var fields: [String] = []
        if case .unchanged = actorID {} else { fields.append("actor_id") }
        if case .unchanged = workspaceID {} else { fields.append("workspace_id") }
        if case .unchanged = serverID {} else { fields.append("server_id") }
        if case .unchanged = bundleID {} else { fields.append("bundle_id") }
        if case .unchanged = allowedToolNames {} else { fields.append("allowed_tool_names") }
        if case .unchanged = deniedToolNames {} else { fields.append("denied_tool_names") }
        if case .unchanged = claimTTLSeconds {} else { fields.append("claim_ttl_seconds") }
        return fields
    }

    /// Decodes a merge-patch document.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        actorID = try container.decodePatch(String.self, forKey: .actorID)
        workspaceID = try container.decodePatch(String.self, forKey: .workspaceID)
        serverID = try container.decodePatch(String.self, forKey: .serverID)
        bundleID = try container.decodePatch(String.self, forKey: .bundleID)
        allowedToolNames = try container.decodePatch([String].self, forKey: .allowedToolNames)
        deniedToolNames = try container.decodePatch([String].self, forKey: .deniedToolNames)
        claimTTLSeconds = try container.decodePatch(Int.self, forKey: .claimTTLSeconds)
        immutableFieldsPresent = [CodingKeys.tenantID, .id, .lease].filter { container.contains($0) }.map(\.rawValue)
    }
}
