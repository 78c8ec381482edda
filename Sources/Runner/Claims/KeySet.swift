import Crypto
import ExtrasBase64
import Foundation
import JWTKit

/// One key of a claim key set.
///
/// File form (JSON): `{"kid": "...", "alg": "EdDSA" | "HS256", "public_key": b64url, "private_key": b64url?,
/// "secret": b64url (HS256), "tenant_id": "acme"?, "verify_only": false?}`. A key bound to a tenant
/// only verifies claims of that tenant, so one tenant's orchestrator key cannot speak for another.
public struct ClaimKey: Codable, Sendable, Hashable {
    /// The algorithms a claim may use. An explicit allow-list: nothing else is ever accepted.
    public enum Algorithm: String, Codable, Sendable, Hashable {
        /// Ed25519 signatures (RFC 8037).
        case eddsa = "EdDSA"
        /// HMAC-SHA-256 (RFC 7518 §3.2).
        case hs256 = "HS256"
    }

    /// The key id carried in the claim header.
    public var kid: String
    /// The only algorithm this key verifies.
    public var alg: Algorithm
    /// Ed25519 public key (32 bytes, base64url).
    public var publicKey: String?
    /// Ed25519 private key seed (32 bytes, base64url); present only where this node signs.
    public var privateKey: String?
    /// HMAC secret (at least 32 bytes, base64url).
    public var secret: String?
    /// When set, the key only verifies claims whose `tenant_id` equals it.
    public var tenantID: String?
    /// When true, the key verifies but is never used to sign (rotation: the outgoing key).
    public var verifyOnly: Bool?

    enum CodingKeys: String, CodingKey {
        case kid, alg, secret
        case publicKey = "public_key"
        case privateKey = "private_key"
        case tenantID = "tenant_id"
        case verifyOnly = "verify_only"
    }

    /// Creates a key description.
    public init(
        kid: String, alg: Algorithm, publicKey: String? = nil, privateKey: String? = nil, secret: String? = nil,
        tenantID: String? = nil, verifyOnly: Bool? = nil
    ) {
        self.kid = kid
        self.alg = alg
        self.publicKey = publicKey
        self.privateKey = privateKey
        self.secret = secret
        self.tenantID = tenantID
        self.verifyOnly = verifyOnly
    }

    /// A fresh Ed25519 signing key.
    public static func generateEdDSA(kid: String, tenantID: String? = nil) -> ClaimKey {
        let key = Curve25519.Signing.PrivateKey()
        return ClaimKey(
            kid: kid, alg: .eddsa,
            publicKey: Base64URL.encode(key.publicKey.rawRepresentation),
            privateKey: Base64URL.encode(key.rawRepresentation),
            tenantID: tenantID
        )
    }

    /// A fresh 32-byte HMAC key.
    public static func generateHS256(kid: String, tenantID: String? = nil) -> ClaimKey {
        let key = SymmetricKey(size: .bits256)
        let bytes = key.withUnsafeBytes { Array($0) }
        return ClaimKey(kid: kid, alg: .hs256, secret: Base64URL.encode(bytes), tenantID: tenantID)
    }

    /// The same key without private material, for distribution to verifiers.
    public var publicOnly: ClaimKey {
        var copy = self
        copy.privateKey = nil
        return copy
    }
}

/// A set of claim keys, keyed by `kid`, with at most one active signing key.
public struct KeySet: Codable, Sendable, Hashable {
    /// The keys; every `kid` is unique.
    public var keys: [ClaimKey]
    /// The `kid` used to sign new claims; defaults to the first key that can sign.
    public var activeKid: String?

    enum CodingKeys: String, CodingKey {
        case keys
        case activeKid = "active_kid"
    }

    /// Creates a key set.
    public init(keys: [ClaimKey], activeKid: String? = nil) {
        self.keys = keys
        self.activeKid = activeKid
    }

    /// Reads a key set file (a `KeySet`, or a single `ClaimKey`).
    public static func load(from path: String) throws -> KeySet {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw KeySetError("cannot read key file \(path): \(error.localizedDescription)")
        }
        let decoder = JSONDecoder()
        let set: KeySet
        if let decoded = try? decoder.decode(KeySet.self, from: data) {
            set = decoded
        } else if let single = try? decoder.decode(ClaimKey.self, from: data) {
            set = KeySet(keys: [single])
        } else {
            throw KeySetError("key file \(path) is neither a key set ({\"keys\": [...]}) nor a single key")
        }
        try set.validate()
        return set
    }

    /// Writes the key set with owner-only permissions.
    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try SecretFile.write(try encoder.encode(self), to: path)
    }

    /// Checks ids are unique and each key has the material its algorithm needs.
    public func validate() throws {
        var seen = Set<String>()
        for key in keys {
            guard !key.kid.isEmpty, key.kid.utf8.count <= 128 else {
                throw KeySetError("every key needs a kid of 1-128 bytes")
            }
            guard seen.insert(key.kid).inserted else { throw KeySetError("duplicate kid \(key.kid)") }
            try ResolvedKey.check(key)
        }
        if let activeKid {
            guard let key = keys.first(where: { $0.kid == activeKid }) else {
                throw KeySetError("active_kid \(activeKid) is not in the key set")
            }
            guard key.canSign else { throw KeySetError("active_kid \(activeKid) has no private key or secret") }
        }
    }

    /// The key new claims are signed with.
    public var signingKey: ClaimKey? {
        if let activeKid { return keys.first { $0.kid == activeKid } }
        return keys.first { $0.canSign && $0.verifyOnly != true }
    }
}

extension ClaimKey {
    /// True when this node holds the material to sign with the key.
    public var canSign: Bool {
        switch alg {
        case .eddsa: privateKey != nil
        case .hs256: secret != nil
        }
    }
}

/// A key set that cannot be used.
public struct KeySetError: Error, Sendable, CustomStringConvertible {
    /// What is wrong.
    public let description: String
    init(_ description: String) { self.description = description }
}

/// A key decoded into jwt-kit's algorithm types (one collection per key, so a `kid` can never
/// fall back to another key the way a collection's default signer would).
struct ResolvedKey: Sendable {
    let key: ClaimKey
    let collection: JWTKeyCollection
    let algorithm: any JWTAlgorithm

    init(_ key: ClaimKey) async throws {
        try Self.check(key)
        self.key = key
        let collection = JWTKeyCollection()
        let kid = JWKIdentifier(string: key.kid)
        switch key.alg {
        case .eddsa:
            let raw = Base64URL.decode(key.publicKey ?? "")!
            let publicKey = try Curve25519.Signing.PublicKey(rawRepresentation: raw)
            if let privateKey = key.privateKey {
                let signing = try Curve25519.Signing.PrivateKey(rawRepresentation: Base64URL.decode(privateKey)!)
                await collection.add(eddsa: EdDSA.PrivateKey(backing: signing), kid: kid)
            } else {
                await collection.add(eddsa: EdDSA.PublicKey(backing: publicKey), kid: kid)
            }
        case .hs256:
            let raw = Base64URL.decode(key.secret ?? "")!
            await collection.add(hmac: HMACKey(key: SymmetricKey(data: raw)), digestAlgorithm: .sha256, kid: kid)
        }
        self.collection = collection
        self.algorithm = try await collection.getKey(for: kid)
    }

    /// Checks the key material without building anything.
    static func check(_ key: ClaimKey) throws {
        switch key.alg {
        case .eddsa:
            guard let publicKey = key.publicKey, let raw = Base64URL.decode(publicKey), raw.count == 32,
                let backing = try? Curve25519.Signing.PublicKey(rawRepresentation: raw)
            else {
                throw KeySetError("EdDSA key \(key.kid) needs a 32-byte base64url public_key")
            }
            if let privateKey = key.privateKey {
                guard let seed = Base64URL.decode(privateKey), seed.count == 32,
                    let signing = try? Curve25519.Signing.PrivateKey(rawRepresentation: seed)
                else {
                    throw KeySetError("EdDSA key \(key.kid) has a private_key that is not 32 base64url bytes")
                }
                guard signing.publicKey.rawRepresentation == backing.rawRepresentation else {
                    throw KeySetError("EdDSA key \(key.kid): private_key does not match public_key")
                }
            }
            guard key.secret == nil else { throw KeySetError("EdDSA key \(key.kid) must not carry a secret") }
        case .hs256:
            guard let secret = key.secret, let raw = Base64URL.decode(secret), raw.count >= 32 else {
                throw KeySetError("HS256 key \(key.kid) needs a base64url secret of at least 32 bytes")
            }
            guard key.publicKey == nil, key.privateKey == nil else {
                throw KeySetError("HS256 key \(key.kid) must carry only a secret")
            }
        }
    }
}

/// Strict base64url (RFC 4648 §5, no padding) on top of swift-extras-base64.
enum Base64URL {
    static func encode(_ bytes: some Collection<UInt8>) -> String {
        Base64.encodeToString(bytes: bytes, options: [.base64UrlAlphabet, .omitPaddingCharacter])
    }

    static func decode(_ text: some StringProtocol) -> [UInt8]? {
        // Refuse padding and anything outside the alphabet before decoding, and re-encode to
        // refuse non-canonical trailing bits: two spellings of one signature must not both verify.
        guard text.utf8.allSatisfy(isAlphabet) else { return nil }
        guard
            let bytes = try? Base64.decode(string: String(text), options: [.base64UrlAlphabet, .omitPaddingCharacter])
        else { return nil }
        guard encode(bytes) == text else { return nil }
        return bytes
    }

    private static func isAlphabet(_ byte: UInt8) -> Bool {
        (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x30 && byte <= 0x39)
            || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
    }
}
