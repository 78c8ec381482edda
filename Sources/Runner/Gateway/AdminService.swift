import Failures
import Foundation
import Synchronization
import WorkspaceRegistry

/// Who is calling the admin API.
public enum Principal: Sendable, Hashable {
    /// The operator: manages every tenant.
    case `operator`
    /// A tenant admin: manages only its own tenant.
    case tenant(String)

    /// How audit records and approvals name this principal: `operator` or `tenant:<id>`.
    public var auditName: String {
        switch self {
        case .operator: "operator"
        case .tenant(let own): "tenant:\(own)"
        }
    }

    /// True when this principal may manage `tenantID`.
    public func manages(_ tenantID: String) -> Bool {
        switch self {
        case .operator: true
        case .tenant(let own): own == tenantID
        }
    }
}

/// `GET /api/v1/workspaces/{tenant}/{workspace}`: the registration and its `disk` usage.
public struct WorkspaceWithDisk: Encodable, Sendable {
    /// The registration.
    public var workspace: Workspace
    /// Its disk usage, quotas and whether it is frozen.
    public var disk: DiskLedger.Status

    /// The workspace's fields with `disk` beside them.
    public func encode(to encoder: any Encoder) throws {
        try workspace.encode(to: encoder)
        var container = encoder.container(keyedBy: Keys.self)
        try container.encode(disk, forKey: .disk)
    }

    enum Keys: String, CodingKey { case disk }
}

/// Body of `POST /api/v1/sessions`.
public struct CreateSessionRequest: RequestBody, Sendable {
    /// Owning tenant.
    public var tenantID: String
    /// The actor.
    public var actorID: String
    /// The workspace (must be registered for the tenant).
    public var workspaceID: String
    /// Universe: one server.
    public var serverID: String?
    /// Universe: one bundle.
    public var bundleID: String?
    /// Allow patterns.
    public var allowedToolNames: [String]?
    /// Deny patterns.
    public var deniedToolNames: [String]?
    /// Lease lifetime, seconds.
    public var leaseTTLSeconds: Int?
    /// Claim lifetime, seconds.
    public var claimTTLSeconds: Int?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case tenantID = "tenant_id"
        case actorID = "actor_id"
        case workspaceID = "workspace_id"
        case serverID = "server_id"
        case bundleID = "bundle_id"
        case allowedToolNames = "allowed_tool_names"
        case deniedToolNames = "denied_tool_names"
        case leaseTTLSeconds = "lease_ttl_seconds"
        case claimTTLSeconds = "claim_ttl_seconds"
    }

    /// Creates a request in code.
    public init(
        tenantID: String, actorID: String, workspaceID: String, serverID: String? = nil, bundleID: String? = nil,
        allowedToolNames: [String]? = nil, deniedToolNames: [String]? = nil, leaseTTLSeconds: Int? = nil,
        claimTTLSeconds: Int? = nil
    ) {
        self.tenantID = tenantID
        self.actorID = actorID
        self.workspaceID = workspaceID
        self.serverID = serverID
        self.bundleID = bundleID
        self.allowedToolNames = allowedToolNames
        self.deniedToolNames = deniedToolNames
        self.leaseTTLSeconds = leaseTTLSeconds
        self.claimTTLSeconds = claimTTLSeconds
    }
}

/// The orchestrator-facing operations behind the admin API and the CLI.
public struct AdminService: Sendable {
    /// The gateway whose sessions are managed.
    public let gateway: Gateway
    private let operatorKeyHash: String
    /// Live sessions each tenant may hold.
    public let sessionLimits: TenantSessionLimits

    /// The longest lease accepted (7 days).
    public static let maximumLeaseSeconds = 7 * 24 * 3600
    /// The default lease (1 hour).
    public static let defaultLeaseSeconds = 3600
    /// `GET /approvals`: approvals per page by default, and at most (docs/admin-api.yaml says the same;
    /// a test holds the two together).
    public static let defaultApprovalsLimit = 100
    /// See ``defaultApprovalsLimit``.
    public static let maximumApprovalsLimit = 1000
    /// `GET /audit`: records per page by default, and at most.
    public static let defaultAuditLimit = 1000
    /// See ``defaultAuditLimit``.
    public static let maximumAuditLimit = 10_000

    /// Creates the service; `operatorKey` is compared by SHA-256, never stored in the clear.
    public init(gateway: Gateway, operatorKey: String, sessionLimits: TenantSessionLimits = TenantSessionLimits()) {
        self.sessionLimits = sessionLimits
        self.gateway = gateway
        self.operatorKeyHash = Digest.sha256Hex(operatorKey.utf8)
    }

    /// Resolves a bearer key to a principal.
    public func principal(forKey key: String?) async throws(APIError) -> Principal {
        guard let key, !key.isEmpty else {
            throw APIError(.unauthorized, "send Authorization: Bearer <operator key or tenant admin key>")
        }
        let hash = Digest.sha256Hex(key.utf8)
        if Self.constantTimeEqual(hash, operatorKeyHash) { return .operator }
        do {
            if let tenant = try await gateway.store.tenantForAdminKey(hash: hash) { return .tenant(tenant) }
        } catch {
            // The store's own words go to the runner's log, never to whoever sent the key.
            gateway.logger.error("the store cannot be read", metadata: ["error": "\(logDescription(of: error))"])
            throw APIError(.storeUnavailable, "the store cannot be read; retry shortly")
        }
        throw APIError(.unauthorized, "the admin key is not recognised")
    }

    /// Compares two secrets' bytes in time that depends only on their length (keys, CSRF tokens).
    static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var difference: UInt8 = 0
        for index in 0..<x.count { difference |= x[index] ^ y[index] }
        return difference == 0
    }

    // MARK: Workspaces

    /// Creates a workspace. Leasehold allocates its root under the first workspace base
    /// (`<base>/<tenant>/<workspace>`, owned by the tenant's host ids on a root runner). Only the
    /// operator may instead name an existing `root`, and only inside `<base>/<tenant>/`; a tenant
    /// admin key that names one is refused (`root_not_allowed`), never trusted.
    public func registerWorkspace(_ request: RegisterWorkspaceRequest, by principal: Principal) async throws(APIError)
        -> Workspace
    {
        guard principal.manages(request.tenantID) else {
            throw APIError.forbidden("this admin key manages only its own tenant")
        }
        if request.root != nil, principal != .operator {
            throw APIError(
                APIErrorCode(.rootNotAllowed),
                "a tenant admin key cannot name a host path; omit root and Leasehold allocates the workspace's directory")
        }
        let workspace: Workspace
        do {
            let owner = try await gateway.hostIDs?.owner(forTenant: request.tenantID)
            if let root = request.root {
                // Validate before touching anything: only then may the tree be given to the tenant.
                try gateway.registry.rules.validateRoot(root, tenantID: request.tenantID)
                if let owner, !WorkspaceTree.chown(root, to: owner) {
                    throw WorkspaceError(.invalidRoot, "cannot give \(root) to the tenant's host ids: errno \(errno)")
                }
                workspace = Workspace(
                    tenantID: request.tenantID, workspaceID: request.workspaceID, root: root,
                    readOnly: request.readOnly ?? false)
                try await gateway.registry.register(workspace)
            } else {
                workspace = try await gateway.registry.create(
                    tenantID: request.tenantID, workspaceID: request.workspaceID, readOnly: request.readOnly ?? false,
                    owner: owner)
            }
        } catch let error as WorkspaceError {
            throw Self.apiError(error)
        } catch let error as ConfigError {
            throw APIError(.hostIDsUnavailable, error.description)
        } catch {
            throw APIError(.storeUnavailable, "the store cannot be written", cause: error)
        }
        // A root re-registered under an old id must not inherit the old root's cached results.
        gateway.cache.bump(tenant: workspace.tenantID, workspace: workspace.workspaceID)
        try await record("workspace.registered", by: principal, tenant: workspace.tenantID) {
            $0.workspace = workspace.workspaceID
            $0.detail = "root \(workspace.root)"
        }
        return workspace
    }

    static func apiError(_ error: WorkspaceError) -> APIError { APIError(error) }

    /// Lists workspaces the principal may see.
    public func listWorkspaces(tenantID: String?, by principal: Principal) async throws(APIError) -> [Workspace] {
        var filter = tenantID
        if case .tenant(let own) = principal {
            if let tenantID, tenantID != own { throw APIError.forbidden("this admin key manages only its own tenant") }
            filter = own
        }
        do {
            return try await gateway.registry.list(tenantID: filter)
        } catch {
            gateway.logger.error(
                "the workspace registry cannot be read", metadata: ["error": "\(logDescription(of: error))"])
            throw APIError(.storeUnavailable, "the store cannot be read; retry shortly")
        }
    }

    /// One workspace the principal may see, with its disk usage against its quotas.
    public func workspace(tenantID: String, workspaceID: String, by principal: Principal) async throws(APIError)
        -> WorkspaceWithDisk
    {
        guard principal.manages(tenantID) else { throw APIError.notFound("workspace \(workspaceID)") }
        let found: Workspace?
        do {
            found = try await gateway.store.workspace(tenantID: tenantID, workspaceID: workspaceID)
        } catch {
            throw APIError(.storeUnavailable, "the store cannot be read", cause: error)
        }
        guard let found else { throw APIError.notFound("workspace \(workspaceID)") }
        return WorkspaceWithDisk(workspace: found, disk: await gateway.disk.status(of: found))
    }

    /// Removes a workspace registration; its sessions' further calls are refused. The directory
    /// stays its tenant's (a later registration of the same id gets it back) until the operator
    /// purges it: `purge` (operator only) also deletes it, registered or not.
    public func removeWorkspace(tenantID: String, workspaceID: String, purge: Bool = false, by principal: Principal)
        async throws(APIError)
    {
        guard principal.manages(tenantID) else { throw APIError.notFound("workspace \(workspaceID)") }
        if purge && principal != .operator {
            throw APIError.forbidden("only the operator key purges a workspace's files")
        }
        var root: String?
        var removed = false
        do {
            root = try await gateway.store.workspace(tenantID: tenantID, workspaceID: workspaceID)?.root
            try await gateway.registry.remove(tenantID: tenantID, workspaceID: workspaceID)
            removed = true
        } catch let error as WorkspaceError where error.code == .notFound && purge {
            // Not registered (removed earlier): its directory may still wait for the purge.
        } catch let error as WorkspaceError {
            throw APIError(error)
        } catch {
            throw APIError(.storeUnavailable, "the store cannot be written", cause: error)
        }
        if removed {
            gateway.cache.bump(tenant: tenantID, workspace: workspaceID)
            gateway.disk.forget(tenant: tenantID, workspace: workspaceID)
            await gateway.executor.retire(tenant: tenantID, workspace: workspaceID, reason: .workspaceRemoved)
            try await record("workspace.removed", by: principal, tenant: tenantID) { $0.workspace = workspaceID }
        }
        guard purge else { return }
        let rules = gateway.registry.rules
        let candidates = root.map { [$0] } ?? rules.bases.map { $0.path + "/" + tenantID + "/" + workspaceID }
        var purged = false
        for candidate in candidates where (try? PathChain.resolve(candidate).get()) != nil {
            do {
                try rules.purge(tenantID: tenantID, root: candidate)
            } catch {
                throw Self.apiError(error)
            }
            purged = true
        }
        guard purged || removed else { throw APIError.notFound("workspace \(workspaceID)") }
        if purged {
            try await record("workspace.purged", by: principal, tenant: tenantID) { $0.workspace = workspaceID }
        }
    }

    // MARK: Sessions

    /// Creates a session with a fresh lease and returns it with a claim for that lease.
    public func createSession(_ request: CreateSessionRequest, by principal: Principal) async throws(APIError)
        -> (Session, String)
    {
        guard principal.manages(request.tenantID) else {
            throw APIError.forbidden("this admin key manages only its own tenant")
        }
        for (field, value) in [
            ("tenant_id", request.tenantID), ("actor_id", request.actorID), ("workspace_id", request.workspaceID),
        ] {
            guard Identifier.isValid(value) else {
                throw APIError.invalid("\(field) must be 1-64 characters of [A-Za-z0-9_-]")
            }
        }
        try validateUniverse(serverID: request.serverID, bundleID: request.bundleID)
        try validatePatterns(request.allowedToolNames, field: "allowed_tool_names")
        try validatePatterns(request.deniedToolNames, field: "denied_tool_names")
        try await requireWorkspace(tenantID: request.tenantID, workspaceID: request.workspaceID)
        let leaseSeconds = request.leaseTTLSeconds ?? Self.defaultLeaseSeconds
        guard (1...Self.maximumLeaseSeconds).contains(leaseSeconds) else {
            throw APIError.invalid("lease_ttl_seconds must be 1-\(Self.maximumLeaseSeconds)")
        }
        let claimSeconds = try claimTTL(request.claimTTLSeconds)
        let now = gateway.now()
        let session = Session(
            id: RandomID.make(prefix: "ses"), tenantID: request.tenantID, actorID: request.actorID,
            workspaceID: request.workspaceID, serverID: request.serverID, bundleID: request.bundleID,
            allowedToolNames: request.allowedToolNames, deniedToolNames: request.deniedToolNames,
            lease: Lease(
                id: RandomID.make(prefix: "lse"), issuedAt: now,
                expiresAt: now.addingTimeInterval(TimeInterval(leaseSeconds))),
            claimTTLSeconds: claimSeconds, leaseTTLSeconds: leaseSeconds, createdAt: now, updatedAt: now,
            revokedAt: nil,
            version: 1)
        let limit = sessionLimits.limit(for: request.tenantID)
        let inserted: Bool
        do {
            inserted = try await gateway.store.insertSession(session, livePerTenant: limit, now: now)
        } catch {
            throw APIError(.storeUnavailable, "the store cannot be written; retry shortly", cause: error)
        }
        guard inserted else {
            // Refused for this tenant only; audited like every authenticated refusal.
            try await record("session.refused", by: principal, tenant: request.tenantID) { event in
                event.code = APIErrorCode.tenantAtLimit.rawValue
                event.actor = request.actorID
                event.workspace = request.workspaceID
                event.detail = "the tenant holds its limit of \(limit) live sessions"
            }
            throw APIError(
                .tenantAtLimit,
                "tenant \(request.tenantID) holds its limit of \(limit) live sessions; revoke sessions it no longer uses or wait for their leases to end"
            )
        }
        try await record("session.created", by: principal, session: session)
        return (session, try await mint(session, ttl: claimSeconds, allowedTools: nil))
    }

    /// Reads a session. Another tenant's session is reported as not found.
    public func session(id: String, by principal: Principal) async throws(APIError) -> Session {
        let session: Session?
        do {
            session = try await gateway.store.session(id: id)
        } catch {
            throw APIError(.storeUnavailable, "the store cannot be read; retry shortly", cause: error)
        }
        guard let session, principal.manages(session.tenantID) else { throw APIError.notFound("session \(id)") }
        return session
    }

    /// Applies a merge-patch; connected clients whose visible set changed get `tools/list_changed`.
    public func patchSession(id: String, patch: SessionPatch, by principal: Principal) async throws(APIError) -> Session
    {
        let current = try await session(id: id, by: principal)
        guard current.revokedAt == nil else { throw APIError(.sessionRevoked, "session \(id) was revoked") }
        guard patch.immutableFieldsPresent.isEmpty else {
            throw APIError.invalid("fields \(patch.immutableFieldsPresent.joined(separator: ", ")) cannot be patched")
        }
        if case .cleared = patch.actorID { throw APIError.invalid("actor_id cannot be cleared") }
        if case .cleared = patch.workspaceID { throw APIError.invalid("workspace_id cannot be cleared") }
        if case .set(let actor) = patch.actorID, !Identifier.isValid(actor) {
            throw APIError.invalid("actor_id must be 1-64 characters of [A-Za-z0-9_-]")
        }
        if case .set(let workspace) = patch.workspaceID {
            try await requireWorkspace(tenantID: current.tenantID, workspaceID: workspace)
        }
        try validateUniverse(
            serverID: patch.serverID.apply(to: current.serverID), bundleID: patch.bundleID.apply(to: current.bundleID))
        if case .set(let patterns) = patch.allowedToolNames {
            try validatePatterns(patterns, field: "allowed_tool_names")
        }
        if case .set(let patterns) = patch.deniedToolNames {
            try validatePatterns(patterns, field: "denied_tool_names")
        }
        let claimSeconds: Int?
        switch patch.claimTTLSeconds {
        case .unchanged: claimSeconds = nil
        case .cleared: claimSeconds = Int(gateway.verifier.policy.maximumLifetime.components.seconds)
        case .set(let value): claimSeconds = try claimTTL(value)
        }
        let now = gateway.now()
        let updated: Session?
        do {
            updated = try await gateway.store.updateSession(id: id) { session in
                session.actorID = patch.actorID.apply(to: session.actorID) ?? session.actorID
                session.workspaceID = patch.workspaceID.apply(to: session.workspaceID) ?? session.workspaceID
                session.serverID = patch.serverID.apply(to: session.serverID)
                session.bundleID = patch.bundleID.apply(to: session.bundleID)
                session.allowedToolNames = patch.allowedToolNames.apply(to: session.allowedToolNames)
                session.deniedToolNames = patch.deniedToolNames.apply(to: session.deniedToolNames)
                if let claimSeconds { session.claimTTLSeconds = claimSeconds }
                session.updatedAt = now
                session.version += 1
            }
        } catch {
            throw APIError(.storeUnavailable, "the store cannot be written; retry shortly", cause: error)
        }
        guard let updated else { throw APIError.notFound("session \(id)") }
        try await record("session.patched", by: principal, session: updated) {
            $0.detail = "fields: " + patch.presentFields.joined(separator: ", ")
        }
        if updated.actorID != current.actorID || updated.workspaceID != current.workspaceID {
            await gateway.closeConnections(ofSession: id, reason: "hand-off to another actor or workspace")
            await gateway.executor.retire(session: id, reason: .handOff)
        } else {
            await gateway.sessionChanged(id)
        }
        return updated
    }

    /// Revokes a session: every claim of it is refused from now on.
    public func revokeSession(id: String, by principal: Principal) async throws(APIError) -> Session {
        _ = try await session(id: id, by: principal)
        let now = gateway.now()
        let updated: Session?
        do {
            updated = try await gateway.store.updateSession(id: id) { session in
                if session.revokedAt == nil {
                    session.revokedAt = now
                    session.lease.revokedAt = session.lease.revokedAt ?? now
                    session.updatedAt = now
                    session.version += 1
                }
            }
        } catch {
            throw APIError(.storeUnavailable, "the store cannot be written; retry shortly", cause: error)
        }
        guard let updated else { throw APIError.notFound("session \(id)") }
        await gateway.closeConnections(ofSession: id, reason: "session revoked")
        await gateway.executor.retire(session: id, reason: .sessionRevoked)
        try await record("session.revoked", by: principal, session: updated)
        return updated
    }

    /// Mints a fresh claim for the session's current lease.
    public func mintClaim(
        sessionID: String, ttlSeconds: Int?, allowedTools: [String]?, approvalFingerprint: String? = nil,
        by principal: Principal
    ) async throws(APIError) -> (Session, String) {
        let session = try await session(id: sessionID, by: principal)
        guard session.revokedAt == nil else {
            throw APIError(.sessionRevoked, "session \(sessionID) was revoked")
        }
        guard session.lease.isLive(at: gateway.now()) else {
            throw APIError(.leaseExpired, "the session's lease has ended; renew it first")
        }
        try validatePatterns(allowedTools, field: "allowed_tools")
        let ttl = try claimTTL(ttlSeconds ?? session.claimTTLSeconds)
        if let approvalFingerprint {
            guard approvalFingerprint.utf8.count == 64, approvalFingerprint.utf8.allSatisfy({ $0 < 0x80 }) else {
                throw APIError.invalid("approval_fingerprint must be the 64-character fingerprint of an approval")
            }
        }
        return (
            session,
            try await mint(session, ttl: ttl, allowedTools: allowedTools, approvalFingerprint: approvalFingerprint)
        )
    }

    /// Audits a claim the token endpoint issued (`claim.exchanged`): who presented which kind of
    /// subject token, never the token.
    func recordExchange(session: Session, by principal: Principal, detail: String) async throws(APIError) {
        try await record("claim.exchanged", by: principal, session: session) { $0.detail = detail }
    }

    /// Replaces the lease: claims of the old lease are refused from now on.
    public func renewLease(sessionID: String, ttlSeconds: Int?, by principal: Principal) async throws(APIError)
        -> (Session, String)
    {
        let current = try await session(id: sessionID, by: principal)
        guard current.revokedAt == nil else {
            throw APIError(.sessionRevoked, "session \(sessionID) was revoked")
        }
        let seconds = ttlSeconds ?? current.leaseTTLSeconds
        guard (1...Self.maximumLeaseSeconds).contains(seconds) else {
            throw APIError.invalid("ttl_seconds must be 1-\(Self.maximumLeaseSeconds)")
        }
        let now = gateway.now()
        let updated: Session?
        do {
            updated = try await gateway.store.updateSession(id: sessionID) { session in
                session.lease = Lease(
                    id: RandomID.make(prefix: "lse"), issuedAt: now,
                    expiresAt: now.addingTimeInterval(TimeInterval(seconds)))
                session.updatedAt = now
                session.version += 1
            }
        } catch {
            throw APIError(.storeUnavailable, "the store cannot be written; retry shortly", cause: error)
        }
        guard let updated else { throw APIError.notFound("session \(sessionID)") }
        // Workers of the old lease die now, not when someone next calls.
        await gateway.executor.retire(session: sessionID, exceptLease: updated.lease.id, reason: .leaseReplaced)
        try await record("lease.renewed", by: principal, session: updated) {
            $0.detail = "previous lease \(current.lease.id)"
        }
        return (updated, try await mint(updated, ttl: updated.claimTTLSeconds, allowedTools: nil))
    }

    /// Ends the current lease early; the session needs a renewal before further calls.
    public func revokeLease(sessionID: String, by principal: Principal) async throws(APIError) -> Session {
        _ = try await session(id: sessionID, by: principal)
        let now = gateway.now()
        do {
            guard
                let updated = try await gateway.store.updateSession(
                    id: sessionID,
                    { session in
                        session.lease.revokedAt = session.lease.revokedAt ?? now
                        session.updatedAt = now
                        session.version += 1
                    })
            else { throw APIError.notFound("session \(sessionID)") }
            await gateway.closeConnections(ofSession: sessionID, reason: "lease revoked")
            await gateway.executor.retire(session: sessionID, reason: .leaseReplaced)
            try await record("lease.revoked", by: principal, session: updated)
            return updated
        } catch let error as APIError {
            throw error
        } catch {
            throw APIError(.storeUnavailable, "the store cannot be written; retry shortly", cause: error)
        }
    }

    /// Creates a tenant admin key (operator only). The key is returned once; only its hash is kept.
    public func createAdminKey(tenantID: String, by principal: Principal) async throws(APIError) -> String {
        guard principal == .operator else {
            throw APIError.forbidden("only the operator key can create tenant admin keys")
        }
        guard Identifier.isValid(tenantID) else {
            throw APIError.invalid("tenant_id must be 1-64 characters of [A-Za-z0-9_-]")
        }
        let key = RandomID.secret(prefix: "lh_tk")
        do {
            try await gateway.store.insertAdminKey(
                id: RandomID.make(prefix: "key"), tenantID: tenantID, keyHash: Digest.sha256Hex(key.utf8))
        } catch {
            throw APIError(.storeUnavailable, "the store cannot be written; retry shortly", cause: error)
        }
        try await record("admin_key.created", by: principal, tenant: tenantID)
        return key
    }

    // MARK: Approvals

    /// Approvals the principal may see, newest first, at most `limit` (1-1000).
    public func approvals(
        sessionID: String?, status: String?, tenantID: String?, limit: Int = defaultApprovalsLimit,
        by principal: Principal
    ) async throws(APIError) -> [Approval] {
        var tenant = tenantID
        if case .tenant(let own) = principal {
            if let tenantID, tenantID != own { throw APIError.forbidden("this admin key manages only its own tenant") }
            tenant = own
        }
        var wanted: Approval.Status?
        if let status {
            guard let parsed = Approval.Status(rawValue: status) else {
                throw APIError.invalid("status must be pending, granted, denied or exhausted")
            }
            wanted = parsed
        }
        do {
            return try await gateway.store.approvals(
                tenantID: tenant, sessionID: sessionID, status: wanted, limit: min(max(limit, 1), Self.maximumApprovalsLimit))
        } catch {
            throw APIError(.storeUnavailable, "the store cannot be read; retry shortly", cause: error)
        }
    }

    /// Grants a pending approval for `ttlSeconds` (default the tier's, else 300) and `uses`
    /// (default the tier's, else 1), recording who granted it.
    public func grantApproval(id: String, ttlSeconds: Int?, uses: Int?, by principal: Principal) async throws(APIError)
        -> Approval
    {
        let current = try await approval(id: id, by: principal)
        let tier = gateway.resolver.tier(of: current.tool, tenant: current.tenantID).flatMap {
            gateway.resolver.policy.tiers[$0]
        }
        let ttl = ttlSeconds ?? tier?.approval.ttlSeconds ?? 300
        let count = uses ?? tier?.approval.uses ?? 1
        guard (1...86_400).contains(ttl) else { throw APIError.invalid("ttl_seconds must be 1-86400") }
        guard (1...1000).contains(count) else { throw APIError.invalid("uses must be 1-1000") }
        let now = gateway.now()
        let decidedBy = principal.auditName
        let updated = try await decide(id) { approval in
            guard approval.status == .pending else { return false }
            approval.status = .granted
            approval.decidedBy = decidedBy
            approval.decidedAt = now
            approval.expiresAt = now.addingTimeInterval(TimeInterval(ttl))
            approval.uses = count
            approval.usesLeft = count
            return true
        }
        try await record(decision: "approval.granted", on: updated, by: principal, detail: "\(ttl) s, \(count) use(s)")
        gateway.metrics.approval("granted")
        return updated
    }

    /// Denies a pending approval, keeping the approver's `reason` (shown to whoever reads the
    /// approval, and in the `approval.denied` record).
    public func denyApproval(id: String, reason: String? = nil, by principal: Principal) async throws(APIError)
        -> Approval
    {
        _ = try await approval(id: id, by: principal)
        if let reason, reason.utf8.count > Approval.maximumReasonBytes {
            throw APIError.invalid("reason is limited to \(Approval.maximumReasonBytes) bytes")
        }
        let kept = reason.flatMap { $0.isEmpty ? nil : $0 }
        let now = gateway.now()
        let decidedBy = principal.auditName
        let updated = try await decide(id) { approval in
            guard approval.status == .pending else { return false }
            approval.status = .denied
            approval.decidedBy = decidedBy
            approval.decidedAt = now
            approval.denyReason = kept
            return true
        }
        try await record(
            decision: "approval.denied", on: updated, by: principal,
            detail: kept.map { "reason: " + Approval.displayText($0) })
        gateway.metrics.approval("denied")
        return updated
    }

    /// Audits a human's decision on an approval, with the exact call it covers.
    private func record(decision kind: String, on approval: Approval, by principal: Principal, detail: String?)
        async throws(APIError)
    {
        try await record(kind, by: principal, tenant: approval.tenantID) {
            $0.session = approval.sessionID
            $0.lease = approval.leaseID
            $0.actor = approval.actorID
            $0.workspace = approval.workspaceID
            $0.tool = approval.tool
            $0.argumentsDigest = approval.argumentsDigest
            $0.approvalFingerprint = approval.fingerprint
            $0.detail = "approval \(approval.id)" + (detail.map { ": \($0)" } ?? "")
        }
    }

    /// One approval the principal may see, with the exact call it covers (arguments whole).
    public func approval(id: String, by principal: Principal) async throws(APIError) -> Approval {
        let found: Approval?
        do {
            found = try await gateway.store.approval(id: id)
        } catch {
            throw APIError(.storeUnavailable, "the store cannot be read; retry shortly", cause: error)
        }
        // Another tenant's approval is reported as not found, so ids cannot be probed.
        guard let found, principal.manages(found.tenantID) else { throw APIError.notFound("approval \(id)") }
        return found
    }

    /// Applies a decision to a pending approval atomically; 409 when it is no longer pending.
    private func decide(_ id: String, _ change: @escaping @Sendable (inout Approval) -> Bool) async throws(APIError)
        -> Approval
    {
        let changed = Mutex(false)
        let updated: Approval?
        do {
            updated = try await gateway.store.updateApproval(id: id) { approval in
                let applied = change(&approval)
                changed.withLock { $0 = applied }
            }
        } catch {
            throw APIError(.storeUnavailable, "the store cannot be written; retry shortly", cause: error)
        }
        guard let updated else { throw APIError.notFound("approval \(id)") }
        guard changed.withLock({ $0 }) else {
            throw APIError(.approvalDecided, "approval \(id) is \(updated.status.rawValue), not pending")
        }
        return updated
    }

    /// Audits an admin change after it is made; if the record cannot be written the caller gets
    /// 503 `audit_unavailable` (the change stands, and the runner's log says so).
    private func record(
        _ kind: String, by principal: Principal, tenant: String? = nil, session: Session? = nil,
        _ fill: (inout AuditEvent) -> Void = { _ in }
    ) async throws(APIError) {
        var event = AuditEvent(kind)
        event.decision = principal.auditName
        event.tenant = tenant ?? session?.tenantID
        if let session {
            event.actor = session.actorID
            event.session = session.id
            event.lease = session.lease.id
            event.workspace = session.workspaceID
        }
        fill(&event)
        do {
            try await gateway.audit.append(event)
        } catch {
            gateway.logger.error(
                "admin change made but not audited",
                metadata: ["event": "\(kind)", "error": "\(logDescription(of: error))"])
            throw APIError(.auditUnavailable, "the change was made but its audit record could not be written")
        }
    }

    // MARK: Helpers

    private func mint(_ session: Session, ttl: Int, allowedTools: [String]?, approvalFingerprint: String? = nil)
        async throws(APIError) -> String
    {
        do {
            return try await gateway.minter.mint(
                sessionID: session.id, tenantID: session.tenantID, actorID: session.actorID,
                workspaceID: session.workspaceID,
                leaseID: session.lease.id, leaseExpiresAt: session.lease.expiresAt, ttl: .seconds(ttl),
                allowedTools: allowedTools, approvalFingerprint: approvalFingerprint,
                now: gateway.now())
        } catch {
            gateway.logger.error("a claim could not be signed", metadata: ["error": "\(logDescription(of: error))"])
            throw APIError(.signingFailed, "the claim could not be signed")
        }
    }

    private func claimTTL(_ requested: Int?) throws(APIError) -> Int {
        let maximum = Int(gateway.verifier.policy.maximumLifetime.components.seconds)
        let value = requested ?? maximum
        guard (1...maximum).contains(value) else { throw APIError.invalid("claim_ttl_seconds must be 1-\(maximum)") }
        return value
    }

    private func validateUniverse(serverID: String?, bundleID: String?) throws(APIError) {
        if serverID != nil && bundleID != nil {
            throw APIError(.scopeConflict, "server_id and bundle_id cannot be set together; choose one universe")
        }
        let catalog = gateway.resolver.catalog
        if let serverID, !catalog.servers.contains(serverID) || serverID == "system" {
            throw APIError.invalid("server_id \(serverID) is not a known server")
        }
        if let bundleID, catalog.bundles[bundleID] == nil {
            throw APIError.invalid("bundle_id \(bundleID) is not a known bundle")
        }
    }

    private func validatePatterns(_ patterns: [String]?, field: String) throws(APIError) {
        guard let patterns else { return }
        guard patterns.count <= 1000 else { throw APIError.invalid("\(field) has more than 1000 patterns") }
        do {
            _ = try PatternSet(parsing: patterns)
        } catch {
            throw APIError.invalid("\(field): \(error)")
        }
    }

    private func requireWorkspace(tenantID: String, workspaceID: String) async throws(APIError) {
        do {
            _ = try await gateway.registry.resolve(tenantID: tenantID, workspaceID: workspaceID)
        } catch let error as WorkspaceError {
            throw APIError(error, asField: true)
        } catch {
            throw APIError(.storeUnavailable, "the store cannot be read; retry shortly", cause: error)
        }
    }
}
