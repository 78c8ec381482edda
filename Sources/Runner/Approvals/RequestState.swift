import Crypto
import Foundation
import Synchronization

/// The `requestState` of an `InputRequiredResult` (MCP 2026-07-28): what Leasehold hands a client
/// that must ask its user for an approval, echoed back on the retry. The client may not change it,
/// so it is signed with a key of the runner's (HMAC-SHA256; never a tenant's key) and bound to the
/// session, lease, claim binding, tool, arguments digest and approval it was issued for, with an
/// expiry. Each state serves one retry: its nonce is spent when the retry is accepted, so a
/// replayed state is refused however it was obtained.
///
/// The key: on one runner a random key made at start that never leaves the process (a restart
/// voids outstanding states; the client starts the call again). On several nodes sharing a store,
/// one every node derives alike from the audit signing key they share (``sharedKey(from:)``), so a
/// retry is accepted by whichever node the load balancer picks. Spent nonces are kept per process:
/// a state replayed to another node passes that check there and is stopped by the approval it
/// names, whose use count is in the shared store (the call runs once).
final class RequestStates: Sendable {
    /// What a state names.
    struct Payload: Codable, Equatable, Sendable {
        var nonce: String
        var session: String
        var lease: String
        /// The claim binding (sessionless connection id, or a stdio connection) it was issued on.
        var connection: String
        var tool: String
        var digest: String
        var approval: String
        /// Unix seconds.
        var expires: Int64
    }

    /// Why a state was refused.
    enum Failure: Error, Equatable {
        /// Not made by this runner, or changed (signature, encoding).
        case invalid
        /// Past its expiry.
        case expired
        /// Made for another session, lease, connection, tool or arguments.
        case mismatched(String)
        /// Its one retry was already accepted.
        case replayed
    }

    /// How long a client has to come back with its user's answer.
    let lifetime: TimeInterval
    private let key: SymmetricKey
    private let now: @Sendable () -> Date
    /// Spent nonces until their state's expiry (bounded: expired ones are pruned on insert, and an
    /// expired state is refused before this is consulted).
    private let spent = Mutex<[String: Int64]>([:])

    init(
        lifetime: TimeInterval = 600, key: SymmetricKey = SymmetricKey(size: .bits256),
        now: @escaping @Sendable () -> Date
    ) {
        self.lifetime = lifetime
        self.key = key
        self.now = now
    }

    /// The key every node of a cluster derives alike from the audit signing key they share (HKDF,
    /// its own label), so a client's retry is accepted by whichever node the load balancer picks.
    /// The audit key never leaves the state directory; this derived key never leaves the process.
    static func sharedKey(from auditKey: AuditSigningKey) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: auditKey.privateKey.rawRepresentation),
            info: Data("leasehold requestState v1".utf8), outputByteCount: 32)
    }

    /// A signed state for this payload (its nonce and expiry are set here).
    func issue(
        session: String, lease: String, connection: String, tool: String, digest: String, approval: String
    ) -> String {
        let payload = Payload(
            nonce: RandomID.make(prefix: "rs"), session: session, lease: lease, connection: connection, tool: tool,
            digest: digest, approval: approval, expires: Int64(now().timeIntervalSince1970 + lifetime))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let body = (try? encoder.encode(payload)) ?? Data()
        let mac = HMAC<SHA256>.authenticationCode(for: body, using: key)
        return Self.base64URL(body) + "." + Self.base64URL(Data(mac))
    }

    /// The payload of `state` once its signature holds, it has not expired, it names `expected`'s
    /// session, lease, connection, tool and digest, and its nonce is unspent; the nonce is then
    /// spent.
    func redeem(_ state: String, expected: Payload) throws(Failure) -> Payload {
        let parts = state.split(separator: ".", omittingEmptySubsequences: false)
        guard state.utf8.count <= 4096, parts.count == 2, let body = Self.data(base64URL: parts[0]),
            let mac = Self.data(base64URL: parts[1]),
            HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: body, using: key),
            let payload = try? JSONDecoder().decode(Payload.self, from: body)
        else { throw .invalid }
        let nowSeconds = Int64(now().timeIntervalSince1970)
        guard payload.expires > nowSeconds else { throw .expired }
        var differing: [String] = []
        if payload.session != expected.session { differing.append("session") }
        if payload.lease != expected.lease { differing.append("lease") }
        if payload.connection != expected.connection { differing.append("claim binding") }
        if payload.tool != expected.tool { differing.append("tool") }
        if payload.digest != expected.digest { differing.append("arguments") }
        guard differing.isEmpty else { throw .mismatched(differing.joined(separator: ", ")) }
        let fresh = spent.withLock { spent in
            if spent.count >= 10_000 { spent = spent.filter { $0.value > nowSeconds } }
            guard spent[payload.nonce] == nil else { return false }
            spent[payload.nonce] = payload.expires
            return true
        }
        guard fresh else { throw .replayed }
        return payload
    }

    private static func base64URL(_ data: Data) -> String {
        data.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    private static func data(base64URL text: Substring) -> Data? {
        guard text.utf8.allSatisfy({ $0.isBase64URL }) else { return nil }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.utf8.count % 4 != 0 { base64.append("=") }
        return Data(base64Encoded: base64)
    }
}

extension UInt8 {
    fileprivate var isBase64URL: Bool {
        (self >= UInt8(ascii: "A") && self <= UInt8(ascii: "Z"))
            || (self >= UInt8(ascii: "a") && self <= UInt8(ascii: "z"))
            || (self >= UInt8(ascii: "0") && self <= UInt8(ascii: "9")) || self == UInt8(ascii: "-")
            || self == UInt8(ascii: "_")
    }
}
