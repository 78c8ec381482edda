import Foundation

/// `oauth:` in leasehold.yaml: the token endpoint (`POST /oauth2/token`, RFC 8693 token exchange)
/// and the orchestrators' token issuers it trusts. Unknown keys are refused: a misspelt
/// `audience` must not silently leave a token check out.
///
/// ```yaml
/// oauth:
///   issuer: https://leasehold.example.com        # this authorization server (default: http://<Host of the request>)
///   resources: [https://leasehold.example.com/mcp]  # accepted `resource` values (default: <issuer>/mcp and /mcp/servers/<id>)
///   issuers:                                     # JWT subject tokens: who may present them
///     - issuer: https://orchestrator.example.com # the JWT's `iss`
///       jwks_file: /etc/leasehold/orchestrator-jwks.json   # or jwks_url
///       audience: leasehold                      # the JWT's `aud` must hold it
///       tenant_claim: tenant_id                  # the claim naming the one tenant the token acts for
/// ```
public struct OAuthConfig: Decodable, Sendable, Hashable {
    /// One trusted issuer of subject tokens.
    public struct Issuer: Decodable, Sendable, Hashable {
        /// The JWT's `iss`, exactly.
        public var issuer: String
        /// A JWKS file holding its public keys.
        public var jwksFile: String?
        /// A URL serving its JWKS (fetched at start, and again when a token names an unknown key).
        public var jwksURL: String?
        /// A value the JWT's `aud` must hold.
        public var audience: String
        /// The claim whose string value is the tenant the token may act for (default `tenant_id`).
        public var tenantClaim: String?

        enum CodingKeys: String, CodingKey, CaseIterable {
            case issuer, audience
            case jwksFile = "jwks_file"
            case jwksURL = "jwks_url"
            case tenantClaim = "tenant_claim"
        }

        public init(issuer: String, jwksFile: String? = nil, jwksURL: String? = nil, audience: String, tenantClaim: String? = nil) {
            self.issuer = issuer
            self.jwksFile = jwksFile
            self.jwksURL = jwksURL
            self.audience = audience
            self.tenantClaim = tenantClaim
        }

        public init(from decoder: any Decoder) throws {
            try StrictKeys.check(decoder, known: CodingKeys.allCases.map(\.rawValue), in: "oauth.issuers[]")
            let container = try decoder.container(keyedBy: CodingKeys.self)
            issuer = try container.decode(String.self, forKey: .issuer)
            jwksFile = try container.decodeIfPresent(String.self, forKey: .jwksFile)
            jwksURL = try container.decodeIfPresent(String.self, forKey: .jwksURL)
            audience = try container.decode(String.self, forKey: .audience)
            tenantClaim = try container.decodeIfPresent(String.self, forKey: .tenantClaim)
        }
    }

    /// This authorization server's issuer URL (nil: `http://` and the request's `Host`).
    public var issuer: String?
    /// Accepted `resource` values (nil: this server's MCP endpoints under the issuer URL).
    public var resources: [String]?
    /// The trusted issuers of JWT subject tokens.
    public var issuers: [Issuer]

    enum CodingKeys: String, CodingKey, CaseIterable {
        case issuer, resources, issuers
    }

    /// No issuers: only tenant admin keys may be exchanged.
    public init(issuer: String? = nil, resources: [String]? = nil, issuers: [Issuer] = []) {
        self.issuer = issuer
        self.resources = resources
        self.issuers = issuers
    }

    public init(from decoder: any Decoder) throws {
        try StrictKeys.check(decoder, known: CodingKeys.allCases.map(\.rawValue), in: "oauth")
        let container = try decoder.container(keyedBy: CodingKeys.self)
        issuer = try container.decodeIfPresent(String.self, forKey: .issuer)
        resources = try container.decodeIfPresent([String].self, forKey: .resources)
        issuers = try container.decodeIfPresent([Issuer].self, forKey: .issuers) ?? []
    }

    /// Refuses what cannot work: an issuer without exactly one JWKS source, a JWKS URL that is not
    /// http(s), an issuer listed twice, empty strings, an issuer URL that is not http(s).
    public func validated() throws(ConfigError) -> OAuthConfig {
        if let issuer {
            guard let url = URL(string: issuer), ["http", "https"].contains(url.scheme ?? ""), url.host != nil,
                url.query == nil, url.fragment == nil
            else { throw ConfigError("oauth.issuer must be an http(s) URL without query or fragment, not \(issuer)") }
        }
        var seen: Set<String> = []
        for entry in issuers {
            guard !entry.issuer.isEmpty, !entry.audience.isEmpty else {
                throw ConfigError("oauth.issuers: issuer and audience must not be empty")
            }
            guard seen.insert(entry.issuer).inserted else {
                throw ConfigError("oauth.issuers: \(entry.issuer) is listed twice")
            }
            guard (entry.jwksFile == nil) != (entry.jwksURL == nil) else {
                throw ConfigError("oauth.issuers: \(entry.issuer) needs exactly one of jwks_file and jwks_url")
            }
            if let text = entry.jwksURL {
                guard let url = URL(string: text), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
                    throw ConfigError("oauth.issuers: \(entry.issuer)'s jwks_url must be an http(s) URL")
                }
            }
            if let claim = entry.tenantClaim, claim.isEmpty || ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"].contains(claim) {
                throw ConfigError("oauth.issuers: \(entry.issuer)'s tenant_claim cannot be \(claim.debugDescription)")
            }
        }
        return self
    }
}

/// Refuses keys a strict config section does not know (every section of `leasehold.yaml`).
enum StrictKeys {
    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    /// Throws for the first unknown key (sorted), with its path for `file:line`.
    static func check(_ decoder: any Decoder, known: [String], in section: String) throws {
        let unknown = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue).filter {
            !known.contains($0)
        }
        if let first = unknown.sorted().first {
            throw ConfigError(
                "\(section): unknown key \"\(first)\" (known: \(known.joined(separator: ", ")))",
                at: decoder.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue } + [first])
        }
    }
}
