import Foundation

/// A human's decision about one exact call: this session, this tool, this workspace, these
/// arguments (by SHA-256 of their canonical JSON), under this lease.
public struct Approval: Codable, Sendable, Hashable {
    /// Where an approval stands.
    public enum Status: String, Codable, Sendable, Hashable {
        /// Asked, not yet decided.
        case pending
        /// Granted: usable until `expiresAt`, `usesLeft` more times.
        case granted
        /// Denied by a human.
        case denied
        /// Granted and used up.
        case exhausted
    }

    /// `apr_...`.
    public let id: String
    /// The tenant.
    public var tenantID: String
    /// The only session that may use it.
    public var sessionID: String
    /// The lease it was asked under; a new lease needs a new approval.
    public var leaseID: String
    /// The actor whose call asked for it.
    public var actorID: String
    /// The workspace of the call.
    public var workspaceID: String
    /// The tool of the call.
    public var tool: String
    /// SHA-256 of the call's canonical JSON arguments.
    public var argumentsDigest: String
    /// The call's arguments whole, as the canonical JSON text whose SHA-256 is `argumentsDigest`.
    ///
    /// An approver must see exactly what runs: a summary cut at a fixed length once hid the tail of
    /// a `shell.run` command padded with spaces, and the tail ran after the grant. Nil only for
    /// approvals stored before the arguments were kept.
    public var arguments: String?
    /// SHA-256 (hex) of `arguments`' UTF-8 bytes; equal to `argumentsDigest`, named for what it is
    /// so an approver can check it against the text shown. Nil only for approvals stored before.
    public var argumentsSHA256: String?
    /// One line for the human deciding: tool, workspace, digest, a short rendering of the arguments.
    /// Never the basis of a decision on its own: when cut, it says so (`summaryTruncated`, and
    /// "… (N more bytes)" at its end); `arguments` is the whole.
    public var summary: String
    /// True when `summary` shows only the start of the arguments.
    public var summaryTruncated: Bool?
    /// Where it stands.
    public var status: Status
    /// When it was asked.
    public var createdAt: Date
    /// Who decided (`operator` or `tenant:<id>`).
    public var decidedBy: String?
    /// When it was decided.
    public var decidedAt: Date?
    /// A grant is usable until then.
    public var expiresAt: Date?
    /// Uses granted.
    public var uses: Int?
    /// Uses left.
    public var usesLeft: Int?
    /// Why a human denied it, as they wrote it (at most ``maximumReasonBytes``).
    public var denyReason: String?

    /// The value a claim's `approval_fingerprint` carries to name this approval (derived from the
    /// id once, and stored with it so API output and store rows carry it).
    public let fingerprint: String

    /// The key of the exact call this approval is for.
    public var bindingKey: String {
        Self.bindingKey(session: sessionID, tool: tool, workspace: workspaceID, argumentsDigest: argumentsDigest)
    }

    /// The key of an exact call.
    public static func bindingKey(session: String, tool: String, workspace: String, argumentsDigest: String) -> String {
        Digest.sha256Hex(Array([session, tool, workspace, argumentsDigest].joined(separator: "\u{0}").utf8))
    }

    /// True when a grant can serve a call of `session` at `now`: same session, lease and actor
    /// (a hand-off to another actor keeps the lease but not the grants), unexpired, uses left.
    public func isUsable(at now: Date, by session: Session) -> Bool {
        isUsable(at: now, sessionID: session.id, leaseID: session.lease.id, actorID: session.actorID)
    }

    /// ``isUsable(at:by:)`` from the session's parts.
    public func isUsable(at now: Date, sessionID: String, leaseID: String, actorID: String) -> Bool {
        status == .granted && self.sessionID == sessionID && self.leaseID == leaseID && self.actorID == actorID
            && (expiresAt.map { now < $0 } ?? false) && (usesLeft ?? 0) > 0
    }

    /// Takes one use of the grant for a call of that session, lease and actor at `now`; false (and
    /// nothing changed) when it cannot serve. Both stores run this under their write lock.
    public mutating func consumeOneUse(at now: Date, sessionID: String, leaseID: String, actorID: String) -> Bool {
        guard isUsable(at: now, sessionID: sessionID, leaseID: leaseID, actorID: actorID) else { return false }
        usesLeft = (usesLeft ?? 1) - 1
        if usesLeft == 0 { status = .exhausted }
        return true
    }

    /// The most canonical-JSON bytes of arguments an approval carries. A call needing approval with
    /// larger arguments is refused (`approval_arguments_too_large`) rather than stored: the MCP body
    /// limit (4 MiB over HTTP) would otherwise let one request store megabytes per approval, and no
    /// human reads that much before granting.
    public static let maximumArgumentsBytes = 64 * 1024
    /// The longest deny reason kept, in UTF-8 bytes.
    public static let maximumReasonBytes = 1024
    /// How many bytes of the arguments' rendering the one-line summary shows.
    public static let summaryArgumentsBytes = 157

    /// Text safe to show an approver: printable ASCII as is, every other scalar as `\u{HEX}`, so
    /// no control characters, combining-mark towers or bidirectional overrides reach a console.
    public static func displayText(_ text: String) -> String {
        var rendering = ""
        for scalar in text.unicodeScalars {
            if scalar.value >= 0x20 && scalar.value < 0x7F {
                rendering.unicodeScalars.append(scalar)
            } else {
                rendering += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            }
        }
        return rendering
    }

    /// The one-line summary of a call and whether it is cut: the displayed arguments up to
    /// ``summaryArgumentsBytes`` (backing up to a whole scalar), then "… (N more bytes)" when cut,
    /// N counting the bytes of the canonical arguments left out.
    public static func summary(tool: String, workspace: String, argumentsDigest: String, arguments: String) -> (
        text: String, truncated: Bool
    ) {
        var rendering = ""
        var shownBytes = 0
        for scalar in arguments.unicodeScalars {
            let piece = displayText(String(scalar))
            guard rendering.utf8.count + piece.utf8.count <= summaryArgumentsBytes else { break }
            rendering += piece
            shownBytes += String(scalar).utf8.count
        }
        let left = arguments.utf8.count - shownBytes
        if left > 0 { rendering += "… (\(left) more bytes)" }
        return (
            "\(tool) in workspace \(workspace), arguments sha256:\(argumentsDigest.prefix(12)): \(rendering)", left > 0
        )
    }

    enum CodingKeys: String, CodingKey {
        case id, tool, summary, status, uses, fingerprint, arguments
        case argumentsSHA256 = "arguments_sha256"
        case summaryTruncated = "summary_truncated"
        case tenantID = "tenant_id"
        case sessionID = "session_id"
        case leaseID = "lease_id"
        case actorID = "actor_id"
        case workspaceID = "workspace_id"
        case argumentsDigest = "arguments_digest"
        case createdAt = "created_at"
        case decidedBy = "decided_by"
        case decidedAt = "decided_at"
        case expiresAt = "expires_at"
        case usesLeft = "uses_left"
        case denyReason = "deny_reason"
    }

    /// A pending approval of one exact call; `arguments` is the canonical JSON text of the call's
    /// arguments, and both the digest and the summary are derived from it.
    public init(
        id: String, tenantID: String, sessionID: String, leaseID: String, actorID: String, workspaceID: String,
        tool: String, arguments: String, createdAt: Date
    ) {
        let digest = Digest.sha256Hex(arguments.utf8)
        let summary = Self.summary(tool: tool, workspace: workspaceID, argumentsDigest: digest, arguments: arguments)
        self.id = id
        self.fingerprint = Digest.sha256Hex(Array(("leasehold-approval\u{0}" + id).utf8))
        self.tenantID = tenantID
        self.sessionID = sessionID
        self.leaseID = leaseID
        self.actorID = actorID
        self.workspaceID = workspaceID
        self.tool = tool
        self.argumentsDigest = digest
        self.arguments = arguments
        self.argumentsSHA256 = digest
        self.summary = summary.text
        self.summaryTruncated = summary.truncated
        self.status = .pending
        self.createdAt = createdAt
    }
}
