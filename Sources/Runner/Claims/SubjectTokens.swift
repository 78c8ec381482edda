import Failures
import Foundation
import JWTKit
import Logging
import Synchronization

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Verifies the JWTs orchestrators present to the token endpoint (``TokenExchange``): signed by
/// a key of an issuer `oauth.issuers` trusts, unexpired, for the configured audience, and naming
/// one tenant.
///
/// Each issuer has a key collection of its own, so one issuer's key never verifies a token that
/// claims another issuer. Only asymmetric keys are accepted (a JWKS of shared secrets would let
/// whoever holds the file mint tokens).
public final class SubjectTokenVerifier: Sendable {
    /// Who a verified token speaks for.
    public struct Subject: Sendable, Hashable {
        /// The token's `iss`.
        public let issuer: String
        /// The token's `sub` (the orchestrator), if any.
        public let subject: String?
        /// The tenant the token may act for.
        public let tenant: String
    }

    /// Why a token is refused (the token endpoint's `invalid_grant`).
    public struct Refused: Error, Sendable, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    private final class Trusted: Sendable {
        let config: OAuthConfig.Issuer
        let keys: JWTKeyCollection
        /// When the JWKS URL was last fetched (a token naming an unknown key fetches again, at
        /// most once a minute).
        let fetchedAt = Mutex<ContinuousClock.Instant?>(nil)

        init(config: OAuthConfig.Issuer, keys: JWTKeyCollection) {
            self.config = config
            self.keys = keys
        }
    }

    private let issuers: [String: Trusted]
    private let logger: Logger

    /// Largest accepted token and JWKS document.
    static let maximumTokenBytes = 16 << 10
    static let maximumJWKSBytes = 1 << 20

    /// Loads every issuer's keys (a JWKS URL is fetched now; a failure there is logged and
    /// retried when a token arrives).
    ///
    /// - Throws: ``ConfigError`` for an unreadable or invalid JWKS file, or one with a shared-secret key.
    public init(config: OAuthConfig, logger: Logger) async throws {
        var issuers: [String: Trusted] = [:]
        for entry in config.issuers {
            let keys = JWTKeyCollection()
            let trusted = Trusted(config: entry, keys: keys)
            if let file = entry.jwksFile {
                guard let data = FileManager.default.contents(atPath: file) else {
                    throw ConfigError("oauth.issuers: \(entry.issuer)'s jwks_file \(file) cannot be read")
                }
                do {
                    try await Self.add(data, to: keys)
                } catch {
                    throw ConfigError("oauth.issuers: \(entry.issuer)'s jwks_file \(file): \(error)")
                }
            }
            issuers[entry.issuer] = trusted
        }
        self.issuers = issuers
        self.logger = logger
        for trusted in issuers.values where trusted.config.jwksURL != nil {
            await fetch(trusted)
        }
    }

    /// Whether any issuer is trusted (else only admin keys may be exchanged).
    public var isEmpty: Bool { issuers.isEmpty }

    /// The token's subject, once its issuer, signature, lifetime, audience and tenant check out.
    public func verify(_ token: String, now: Date = Date()) async throws(Refused) -> Subject {
        guard token.utf8.count <= Self.maximumTokenBytes else { throw Refused("the subject token is too long") }
        // The issuer picks the key collection; nothing from the token is trusted before its
        // signature is verified with that issuer's keys.
        let claimed: Claims
        do {
            claimed = try await JWTKeyCollection().unverified(token, as: Claims.self)
        } catch {
            throw Refused("the subject token is not a JWT")
        }
        guard let iss = claimed.iss, let trusted = issuers[iss] else {
            throw Refused("the subject token's issuer is not trusted")
        }
        let verified: Claims
        do {
            verified = try await trusted.keys.verify(token, as: Claims.self)
        } catch {
            // An unknown key id may be a rotation at a JWKS URL: fetch once more (rate-limited).
            guard trusted.config.jwksURL != nil, await fetch(trusted, onlyIfStale: true),
                let retried = try? await trusted.keys.verify(token, as: Claims.self)
            else { throw Refused("the subject token's signature does not verify with \(iss)'s keys") }
            verified = retried
        }
        guard verified.iss == iss else { throw Refused("the subject token's issuer is not trusted") }
        guard let exp = verified.exp else { throw Refused("the subject token has no exp") }
        guard exp > now.timeIntervalSince1970 else { throw Refused("the subject token has expired") }
        if let nbf = verified.nbf, nbf > now.timeIntervalSince1970 + 30 {
            throw Refused("the subject token is not valid yet")
        }
        guard verified.aud.contains(trusted.config.audience) else {
            throw Refused("the subject token is not meant for this server (aud)")
        }
        let claim = trusted.config.tenantClaim ?? "tenant_id"
        guard let tenant = verified.strings[claim], !tenant.isEmpty else {
            throw Refused("the subject token names no tenant (\(claim))")
        }
        return Subject(issuer: iss, subject: verified.sub, tenant: tenant)
    }

    /// Fetches the issuer's JWKS URL into its collection; false when it did not (or, with
    /// `onlyIfStale`, when a token already made it fetch less than a minute ago).
    @discardableResult
    private func fetch(_ trusted: Trusted, onlyIfStale: Bool = false) async -> Bool {
        guard let text = trusted.config.jwksURL, let url = URL(string: text) else { return false }
        let now = ContinuousClock.now
        // The fetch at start does not count: a token under a rotated key may fetch at once.
        if onlyIfStale {
            let due = trusted.fetchedAt.withLock { last -> Bool in
                if let last, now - last < .seconds(60) { return false }
                last = now
                return true
            }
            guard due else { return false }
        }
        do {
            var request = URLRequest(url: url)
            request.timeoutInterval = 10
            let (data, response) = try await URLSession.shared.data(for: request)
            guard (response as? HTTPURLResponse)?.statusCode == 200 else {
                throw Refused("HTTP \((response as? HTTPURLResponse)?.statusCode ?? 0)")
            }
            try await Self.add(data, to: trusted.keys)
            return true
        } catch {
            logger.warning(
                "an issuer's JWKS could not be fetched",
                    metadata: ["issuer": "\(trusted.config.issuer)", "error": "\(logDescription(of: error))"])
            return false
        }
    }

    /// Adds a JWKS document's keys, refusing shared-secret (`oct`) keys and oversized documents.
    private static func add(_ data: Data, to keys: JWTKeyCollection) async throws {
        guard data.count <= maximumJWKSBytes else { throw ConfigError("the JWKS is over \(maximumJWKSBytes) bytes") }
        struct Types: Decodable {
            struct Key: Decodable { let kty: String? }
            let keys: [Key]
        }
        let types = try JSONDecoder().decode(Types.self, from: data)
        guard !types.keys.isEmpty else { throw ConfigError("the JWKS holds no keys") }
        guard types.keys.allSatisfy({ ["RSA", "EC", "OKP"].contains($0.kty ?? "") }) else {
            throw ConfigError("the JWKS may hold only RSA, EC or OKP public keys (no shared secrets)")
        }
        try await keys.add(jwks: JSONDecoder().decode(JWKS.self, from: data))
    }

    /// The registered claims read, plus every top-level string claim (the tenant claim's name is
    /// configured).
    struct Claims: JWTPayload {
        var iss: String?
        var sub: String?
        var aud: [String]
        var exp: Double?
        var nbf: Double?
        var strings: [String: String]

        private struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: Key.self)
            func string(_ name: String) -> String? { try? container.decode(String.self, forKey: Key(stringValue: name)) }
            func number(_ name: String) -> Double? { try? container.decode(Double.self, forKey: Key(stringValue: name)) }
            iss = string("iss")
            sub = string("sub")
            exp = number("exp")
            nbf = number("nbf")
            if let one = string("aud") {
                aud = [one]
            } else {
                aud = (try? container.decode([String].self, forKey: Key(stringValue: "aud"))) ?? []
            }
            var strings: [String: String] = [:]
            for key in container.allKeys {
                if let value = try? container.decode(String.self, forKey: key) { strings[key.stringValue] = value }
            }
            self.strings = strings
        }

        func encode(to encoder: any Encoder) throws {}

        /// Checked by ``SubjectTokenVerifier/verify(_:now:)`` with its own clock and messages.
        func verify(using algorithm: some JWTAlgorithm) async throws {}
    }
}
