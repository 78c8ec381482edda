import Foundation
import Yams

/// One risk tier from `policies/tiers.yaml`: what a tool of that tier implies.
public struct RiskTier: Codable, Sendable, Hashable {
    /// Worker lifetime: a fresh worker per call, or the session's warm worker.
    public enum Isolation: String, Codable, Sendable, Hashable {
        /// A fresh worker per call, destroyed after it.
        case call
        /// One warm worker per session and lease.
        case session
    }

    /// Approval settings.
    public struct Approval: Codable, Sendable, Hashable {
        /// Whether a human must grant each call.
        public var required: Bool
        /// Default grant lifetime, seconds.
        public var ttlSeconds: Int?
        /// Default number of uses per grant.
        public var uses: Int?

        enum CodingKeys: String, CodingKey {
            case required
            case ttlSeconds = "ttl_seconds"
            case uses
        }
    }

    /// Resource limits for workers of this tier.
    public struct Limits: Codable, Sendable, Hashable {
        /// Wall-clock limit per call, milliseconds.
        public var wallMs: Int?
        /// CPU seconds per worker.
        public var cpuSeconds: Int?
        /// Address-space limit, MiB.
        public var memoryMiB: Int?
        /// Largest file a worker may write, MiB.
        public var fileSizeMiB: Int?
        /// Processes per worker.
        public var processes: Int?
        /// Output bytes returned per call.
        public var outputBytes: Int?

        enum CodingKeys: String, CodingKey {
            case wallMs = "wall_ms"
            case cpuSeconds = "cpu_seconds"
            case memoryMiB = "memory_mib"
            case fileSizeMiB = "file_size_mib"
            case processes
            case outputBytes = "output_bytes"
        }
    }

    /// Worker lifetime.
    public var isolation: Isolation
    /// Approval settings.
    public var approval: Approval
    /// Name of the seccomp profile (`policies/seccomp/<name>`).
    public var seccompProfile: String
    /// Resource limits.
    public var limits: Limits
    /// Network access: `none` unless the security team says otherwise.
    public var network: String
    /// Whether results of this tier may be cached.
    public var cacheable: Bool
    /// Cache entry lifetime, seconds.
    public var cacheTTLSeconds: Int?
    /// Kernel features the tier cannot run without.
    public var requires: [String]

    enum CodingKeys: String, CodingKey {
        case isolation, approval, limits, network, cacheable, requires
        case seccompProfile = "seccomp_profile"
        case cacheTTLSeconds = "cache_ttl_seconds"
    }
}

/// The security team's policy: tiers and the tool-pattern -> tier map.
public struct RiskPolicy: Sendable, Hashable {
    /// Tiers by name.
    public var tiers: [String: RiskTier]
    /// Tool patterns and the tier each assigns, in file order.
    public var rules: [(pattern: ToolPattern, tier: String)] {
        ruleList.map { ($0.pattern, $0.tier) }
    }
    private var ruleList: [Rule]
    /// Content hash of the files this policy was read from (audit records carry it).
    public var version: String

    struct Rule: Hashable, Sendable {
        let pattern: ToolPattern
        let tier: String
    }

    /// Builds a policy in memory (tests, embedded default).
    public init(tiers: [String: RiskTier], rules: [(String, String)], version: String = "inline") throws {
        self.tiers = tiers
        self.version = version
        var list: [Rule] = []
        for (text, tier) in rules {
            guard let pattern = ToolPattern(text) else { throw PolicyError("tools: \(PatternError(pattern: text))") }
            guard tiers[tier] != nil else { throw PolicyError("tools: pattern \(text) names unknown tier \(tier)") }
            list.append(Rule(pattern: pattern, tier: tier))
        }
        self.ruleList = list
        try checkTies()
    }

    /// The tier for a tool: the most specific matching pattern wins (exact beats wildcard, then the
    /// most literal characters). Nil when no pattern matches: such a tool is denied.
    public func tier(for tool: String) -> (name: String, pattern: ToolPattern)? {
        var best: Rule?
        for rule in ruleList where rule.pattern.matches(tool) {
            if let current = best, Self.specificity(current.pattern) >= Self.specificity(rule.pattern) { continue }
            best = rule
        }
        return best.map { ($0.tier, $0.pattern) }
    }

    private static func specificity(_ pattern: ToolPattern) -> (Int, Int) {
        (pattern.isExact ? 1 : 0, pattern.literalLength)
    }

    /// Two distinct patterns of equal specificity that assign different tiers to some name are
    /// ambiguous. Checked for identical specificity pairs whose patterns are identical or both exact;
    /// overlaps between different wildcard patterns are reported per tool by ``ambiguity(for:)``.
    private func checkTies() throws {
        var seen: [String: String] = [:]
        for rule in ruleList {
            if let other = seen[rule.pattern.text], other != rule.tier {
                throw PolicyError("tools: pattern \(rule.pattern.text) is assigned both \(other) and \(rule.tier)")
            }
            seen[rule.pattern.text] = rule.tier
        }
    }

    /// For a tool, the tie between equally specific patterns naming different tiers, if any.
    public func ambiguity(for tool: String) -> (ToolPattern, ToolPattern)? {
        let matching = ruleList.filter { $0.pattern.matches(tool) }
        guard let top = matching.map({ Self.specificity($0.pattern) }).max(by: <) else { return nil }
        let best = matching.filter { Self.specificity($0.pattern) == top }
        for a in best {
            for b in best where a.tier != b.tier { return (a.pattern, b.pattern) }
        }
        return nil
    }

    /// Reads `tiers.yaml` and `tools.yaml` from a policies directory.
    public static func load(directory: String) throws -> RiskPolicy {
        let tiersPath = directory + "/tiers.yaml"
        let toolsPath = directory + "/tools.yaml"
        guard let tiersText = try? String(contentsOfFile: tiersPath, encoding: .utf8) else {
            throw PolicyError("cannot read \(tiersPath)")
        }
        guard let toolsText = try? String(contentsOfFile: toolsPath, encoding: .utf8) else {
            throw PolicyError("cannot read \(toolsPath)")
        }
        struct TiersFile: Decodable { let tiers: [String: RiskTier] }
        struct ToolsFile: Decodable {
            struct Entry: Decodable {
                let pattern: String
                let tier: String
            }
            let tools: [Entry]
        }
        let tiers: TiersFile
        let tools: ToolsFile
        do {
            tiers = try YAMLDecoder().decode(TiersFile.self, from: tiersText)
        } catch {
            throw PolicyError("\(tiersPath): \(error)")
        }
        do {
            tools = try YAMLDecoder().decode(ToolsFile.self, from: toolsText)
        } catch {
            throw PolicyError("\(toolsPath): \(error)")
        }
        let version = Digest.sha256Hex(Array((tiersText + "\u{0}" + toolsText).utf8))
        return try RiskPolicy(
            tiers: tiers.tiers, rules: tools.tools.map { ($0.pattern, $0.tier) }, version: String(version.prefix(16)))
    }

    /// Equality over tiers, rules and version.
    public static func == (lhs: RiskPolicy, rhs: RiskPolicy) -> Bool {
        lhs.tiers == rhs.tiers && lhs.ruleList == rhs.ruleList && lhs.version == rhs.version
    }

    /// Hash over version.
    public func hash(into hasher: inout Hasher) { hasher.combine(version) }
}

/// A policy file that cannot be used.
public struct PolicyError: Error, Sendable, CustomStringConvertible {
    /// What is wrong, with the file.
    public let description: String
    init(_ description: String) { self.description = description }
}
