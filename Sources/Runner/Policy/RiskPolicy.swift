import Foundation
import Sandbox
import Yams

/// One risk tier from `policies/tiers.yaml`: what a tool of that tier implies.
public struct RiskTier: Encodable, Sendable, Hashable {
    /// Worker lifetime: a fresh worker per call, or the session's warm worker (the sandbox's own
    /// type: the policy and the pool cannot disagree on what it means).
    public typealias Isolation = WorkerTier.Isolation

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

    /// Resource limits of the tier's workers: the sandbox's own type, read from `limits:` in
    /// tiers.yaml (``PolicyFiles``), so the policy and the worker cannot disagree on a limit.
    public typealias Limits = WorkerLimits

    /// Worker lifetime.
    public var isolation: Isolation
    /// Approval settings.
    public var approval: Approval
    /// The seccomp profile, parsed when the policy is read (an unknown name is refused there).
    public var seccompProfile: SeccompProfileName
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
    /// How durable the audit records of this tier's calls are before the call goes on (`full`
    /// unless the security team chose `batched`).
    public var auditSync: AuditSync = .full
    /// Limits (`memory_mib`, `processes`, `cpu_weight`) this tier may run without where the host
    /// cannot hold them on a whole worker; any other such limit keeps the tier from running there.
    public var bestEffort: [String] = []

    /// The keys of tiers.yaml, also those of the admin API's policy view.
    enum CodingKeys: String, CodingKey {
        case isolation, approval, limits, network, cacheable, requires
        case seccompProfile = "seccomp_profile"
        case cacheTTLSeconds = "cache_ttl_seconds"
        case auditSync = "audit_sync"
        case bestEffort = "best_effort"
    }
}

extension RiskTier {
    /// The ways this tier is looser than `base`, one phrase each; empty when it is at least as strict.
    ///
    /// Stricter means: per-call isolation over a warm worker, approval required (with no longer a
    /// grant and no more uses), a profile that allows no more, limits no higher, no network, no
    /// caching (or a shorter one), every kernel feature `base` requires, and audit records synced
    /// at least as often (`full` over `batched`).
    public func loosenings(comparedTo base: RiskTier) -> [String] {
        var looser: [String] = []
        if isolation == .session && base.isolation == .call { looser.append("isolation session instead of call") }
        if base.approval.required {
            if !approval.required {
                looser.append("no approval where the base tier requires one")
            } else {
                if (approval.ttlSeconds ?? .max) > (base.approval.ttlSeconds ?? .max) {
                    looser.append(
                        "approval grants last longer (\(approval.ttlSeconds ?? 0) s > \(base.approval.ttlSeconds ?? 0) s)"
                    )
                }
                if (approval.uses ?? .max) > (base.approval.uses ?? .max) {
                    looser.append(
                        "approval grants allow more uses (\(approval.uses ?? 0) > \(base.approval.uses ?? 0))")
                }
            }
        }
        if seccompProfile > base.seccompProfile {
            looser.append("seccomp profile \(seccompProfile) allows more than \(base.seccompProfile)")
        }
        let limitPairs: [(String, Int?, Int?)] = [
            ("wall_ms", limits.wallMs, base.limits.wallMs), ("cpu_seconds", limits.cpuSeconds, base.limits.cpuSeconds),
            ("memory_mib", limits.memoryMiB, base.limits.memoryMiB),
            ("file_size_mib", limits.fileSizeMiB, base.limits.fileSizeMiB),
            ("processes", limits.processes, base.limits.processes),
            ("output_bytes", limits.outputBytes, base.limits.outputBytes),
            ("cpu_weight", limits.cpuWeight, base.limits.cpuWeight),
        ]
        for (name, mine, theirs) in limitPairs where (mine ?? .max) > (theirs ?? .max) {
            looser.append(
                "limits.\(name) \(mine.map(String.init) ?? "unlimited") > \(theirs.map(String.init) ?? "unlimited")")
        }
        if network != base.network && base.network == "none" { looser.append("network \(network) instead of none") }
        if cacheable && !base.cacheable {
            looser.append("cacheable where the base tier is not")
        } else if cacheable && base.cacheable && (cacheTTLSeconds ?? 0) > (base.cacheTTLSeconds ?? 0) {
            looser.append("cache_ttl_seconds \(cacheTTLSeconds ?? 0) > \(base.cacheTTLSeconds ?? 0)")
        }
        if auditSync > base.auditSync {
            looser.append("audit_sync \(auditSync.rawValue) instead of \(base.auditSync.rawValue)")
        }
        let unenforced = Set(bestEffort).subtracting(base.bestEffort)
        if !unenforced.isEmpty { looser.append("best_effort also accepts \(unenforced.sorted().joined(separator: ", "))") }
        let missing = Set(base.requires).subtracting(requires)
        if !missing.isEmpty { looser.append("does not require \(missing.sorted().joined(separator: ", "))") }
        return looser
    }
}

/// The security team's policy: tiers, the tool-pattern -> tier map, and per-tenant tightenings.
public struct RiskPolicy: Sendable, Hashable {
    /// Tiers by name.
    public var tiers: [String: RiskTier]
    /// Tool patterns and the tier each assigns, in file order.
    public var rules: [(pattern: ToolPattern, tier: String)] {
        ruleList.map { ($0.pattern, $0.tier) }
    }
    private(set) var ruleList: [Rule]
    /// Per-tenant overrides (`policies/tenants/<tenant>.yaml`), which only tighten.
    public private(set) var tenantOverrides: [String: TenantOverride]
    /// Content hash of the files this policy was read from (audit records carry it).
    public var version: String
    /// Default tiers of upstream servers' tools tools.yaml does not map, by server id.
    public private(set) var serverTiers: [String: String] = [:]

    struct Rule: Hashable, Sendable {
        let pattern: ToolPattern
        let tier: String
        /// Where the rule is written, for diagnostics and `policy explain`.
        var line: Int? = nil
    }

    /// Builds a policy in memory (tests, embedded default).
    public init(tiers: [String: RiskTier], rules: [(String, String)], version: String = "inline") throws {
        var list: [Rule] = []
        for (text, tier) in rules {
            guard let pattern = ToolPattern(text) else { throw PolicyError("tools: \(PatternError(pattern: text))") }
            guard tiers[tier] != nil else { throw PolicyError("tools: pattern \(text) names unknown tier \(tier)") }
            list.append(Rule(pattern: pattern, tier: tier))
        }
        try self.init(tiers: tiers, ruleList: list, tenantOverrides: [:], version: version)
    }

    init(tiers: [String: RiskTier], ruleList: [Rule], tenantOverrides: [String: TenantOverride], version: String) throws
    {
        self.tiers = tiers
        self.ruleList = ruleList
        self.tenantOverrides = tenantOverrides
        self.version = version
        try checkTies()
    }

    /// The tier for a tool: the most specific matching pattern wins (exact beats wildcard, then the
    /// most literal characters). Nil when no pattern matches: such a tool is denied.
    public func tier(for tool: String) -> (name: String, pattern: ToolPattern)? {
        if let rule = Self.mostSpecific(ruleList, matching: tool) { return (rule.tier, rule.pattern) }
        // An upstream server's default tier (`tier:` of its `servers:` entry) for what tools.yaml
        // leaves unmapped; a tier the policy does not define leaves the tool denied.
        let server = String(ToolName.server(of: tool))
        guard let name = serverTiers[server], tiers[name] != nil, let pattern = ToolPattern(server + ".*") else {
            return nil
        }
        return (name, pattern)
    }

    /// This policy with the default tiers of upstream servers (`servers:` in leasehold.yaml).
    public func withServerTiers(_ defaults: [String: String]) -> RiskPolicy {
        var policy = self
        policy.serverTiers = defaults
        return policy
    }

    /// The tier for a tool as seen by `tenant`: the base tier, replaced by the most specific
    /// matching override of the tenant. A tool without a base tier stays without one (denied):
    /// an override never makes a tool visible.
    public func tier(for tool: String, tenant: String?) -> (name: String, pattern: ToolPattern)? {
        guard let base = tier(for: tool) else { return nil }
        guard let tenant, let override = tenantOverrides[tenant],
            let rule = Self.mostSpecific(override.rules, matching: tool)
        else { return base }
        return (rule.tier, rule.pattern)
    }

    static func mostSpecific(_ rules: [Rule], matching tool: String) -> Rule? {
        var best: Rule?
        for rule in rules where rule.pattern.matches(tool) {
            if let current = best, current.pattern.specificity >= rule.pattern.specificity { continue }
            best = rule
        }
        return best
    }

    /// The rules matching `tool`, most specific first (for `policy explain`).
    func matchingRules(_ tool: String, tenant: String? = nil) -> [Rule] {
        let rules = tenant.flatMap { tenantOverrides[$0]?.rules } ?? ruleList
        return rules.filter { $0.pattern.matches(tool) }.sorted { $0.pattern.specificity > $1.pattern.specificity }
    }

    /// A pattern assigned two tiers is refused here; ties between different patterns are refused
    /// when files are loaded (``PolicyFiles``) and reported per tool by ``ambiguity(for:)``.
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
        guard let top = matching.map(\.pattern.specificity).max(by: <) else { return nil }
        let best = matching.filter { $0.pattern.specificity == top }
        for a in best {
            for b in best where a.tier != b.tier { return (a.pattern, b.pattern) }
        }
        return nil
    }

    /// Reads and validates `tiers.yaml`, `tools.yaml` and `tenants/*.yaml` from a policies directory.
    ///
    /// - Throws: ``PolicyValidationError`` with every problem's file:line.
    public static func load(directory: String) throws(PolicyValidationError) -> RiskPolicy {
        try PolicyFiles.load(directory: directory)
    }

    /// Equality over tiers, rules, overrides and version.
    public static func == (lhs: RiskPolicy, rhs: RiskPolicy) -> Bool {
        lhs.tiers == rhs.tiers && lhs.ruleList == rhs.ruleList && lhs.tenantOverrides == rhs.tenantOverrides
            && lhs.version == rhs.version
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

extension RiskTier {
    /// What the tier implies for its workers, as the sandbox needs it (doctor shows which of its
    /// limits this host holds).
    public func workerTier(named name: String) -> WorkerTier { ToolDispatch.workerTier(name, self) }
}
