import Sandbox

/// What `leasehold policy check` and `policy explain` print, built from the same resolver the
/// server decides with.
public enum PolicyReport {
    /// Problems of a valid policy against a catalog and this machine's kernel.
    public struct Check: Sendable {
        /// Refusals: the policy must not be used with this catalog.
        public var errors: [String] = []
        /// Things that work but deserve a look (tools without a tier are denied).
        public var warnings: [String] = []
    }

    /// Checks a loaded policy against the catalog it will decide for and the kernel it runs on.
    /// With `enforcement`, also which tiers this runner refuses because a limit cannot be held on
    /// a whole worker here.
    public static func check(
        _ policy: RiskPolicy, catalog: Catalog, kernel: KernelFeatures = .current, enforcement: LimitEnforcement? = nil
    ) -> Check {
        var report = Check()
        for tool in catalog.tools {
            if let (a, b) = policy.ambiguity(for: tool.name) {
                report.errors.append("\(tool.name) matches \(a) and \(b), equally specific, with different tiers")
            } else if policy.tier(for: tool.name) == nil {
                report.warnings.append("\(tool.name) has no risk tier in tools.yaml and will be denied")
            }
        }
        for (name, tier) in policy.tiers.sorted(by: { $0.key < $1.key }) {
            let missing = tier.requires.filter { !kernel.isAvailable($0) }
            if !missing.isEmpty {
                report.warnings.append(
                    "tier \(name) requires \(missing.joined(separator: ", ")), missing on this kernel: its tools cannot run here"
                )
            }
            if let enforcement {
                let unenforceable = enforcement.unenforceable(ToolDispatch.workerTier(name, tier))
                if !unenforceable.isEmpty {
                    report.warnings.append(
                        "tier \(name)'s \(unenforceable.joined(separator: ", ")) cannot be enforced on a whole worker on this host and is not best_effort: its tools are refused"
                    )
                }
            }
        }
        return report
    }

    /// The decision path for one tool: matching patterns, the tier and what it implies, the
    /// tenant's overrides, and (with a session) whether that session sees it and why not.
    public static func explain(
        tool: String, resolver: ScopeResolver, tenant: String?, session: Session?
    ) -> [String] {
        let policy = resolver.policy
        var lines: [String] = []
        let tenant = tenant ?? session?.tenantID
        if let descriptor = resolver.catalog.tool(named: tool) {
            lines.append("tool \(tool): in the catalog (server \(descriptor.server))")
        } else {
            lines.append("tool \(tool): not in the catalog (a session cannot see or call it)")
        }
        lines.append("policy version \(policy.version)")
        if tool == BuiltinTools.searchTools || tool == BuiltinTools.executeTool {
            lines.append(
                "built-in system tool: always listed, tier system; calls through it are decided per target tool")
            return lines
        }
        let base = policy.matchingRules(tool)
        if base.isEmpty {
            lines.append("tools.yaml: no pattern matches -> no tier: the tool is denied (fail closed)")
        } else {
            lines.append("tools.yaml patterns matching, most specific first:")
            for (index, rule) in base.enumerated() {
                lines.append("  \(describe(rule))\(index == 0 ? "   <- wins" : "")")
            }
            if let (a, b) = policy.ambiguity(for: tool) {
                lines.append("  tie: \(a) and \(b) are equally specific with different tiers: the tool is denied")
            }
        }
        if let tenant {
            if let override = policy.tenantOverrides[tenant] {
                let rules = policy.matchingRules(tool, tenant: tenant)
                if rules.isEmpty {
                    lines.append("tenant \(tenant) (\(override.file)): no tier override matches")
                } else {
                    lines.append("tenant \(tenant) (\(override.file)) overrides, most specific first:")
                    for (index, rule) in rules.enumerated() {
                        lines.append(
                            "  \(describe(rule))\(index == 0 ? (base.isEmpty ? "   (ignored: no base tier)" : "   <- wins") : "")"
                        )
                    }
                }
                if let deny = override.denied.firstMatch(tool) {
                    lines.append("tenant \(tenant) denies it: pattern \(deny)")
                }
            } else {
                lines.append("tenant \(tenant): no override file")
            }
        }
        // For a tool outside the catalog, the tier it would get if a server offered it.
        let tier =
            resolver.catalog.tool(named: tool) != nil
            ? resolver.tier(of: tool, tenant: tenant)
            : (policy.ambiguity(for: tool) == nil ? policy.tier(for: tool, tenant: tenant)?.name : nil)
        if let tier, let settings = policy.tiers[tier] {
            lines.append("tier \(tier):")
            lines += describe(settings).map { "  " + $0 }
        } else {
            lines.append("tier: none")
        }
        if let session {
            do {
                let scope = try Scope(
                    session: session, claimAllowedTools: nil, endpointServer: nil, catalog: resolver.catalog)
                switch resolver.decide(tool, in: scope) {
                case .visible(let tier):
                    lines.append(
                        "session \(session.id) (tenant \(session.tenantID), actor \(session.actorID)): visible, tier \(tier)"
                    )
                case .hidden(let reason):
                    lines.append(
                        "session \(session.id) (tenant \(session.tenantID), actor \(session.actorID)): hidden: \(reason)"
                    )
                }
                if session.revokedAt != nil { lines.append("  (the session is revoked: every call is refused)") }
            } catch {
                lines.append("session \(session.id): its scope cannot be compiled: \(error)")
            }
        }
        return lines
    }

    private static func describe(_ rule: RiskPolicy.Rule) -> String {
        let kind = rule.pattern.isExact ? "exact" : "wildcard, \(rule.pattern.literalLength) literal characters"
        return "\(rule.pattern) -> \(rule.tier) (\(kind)\(rule.line.map { ", line \($0)" } ?? ""))"
    }

    private static func describe(_ tier: RiskTier) -> [String] {
        let approval =
            tier.approval.required
            ? "required (grant lasts \(tier.approval.ttlSeconds ?? 0) s, \(tier.approval.uses ?? 0) use(s))" : "none"
        let limits = tier.limits
        return [
            "isolation: \(tier.isolation.rawValue) (\(tier.isolation == .call ? "a fresh worker per call" : "the session's warm worker"))",
            "approval: \(approval)",
            "seccomp profile: \(tier.seccompProfile)",
            "limits: wall \(limits.wallMs) ms, cpu \(limits.cpuSeconds) s, memory \(limits.memoryMiB) MiB, file size \(limits.fileSizeMiB) MiB, processes \(limits.processes), output \(limits.outputBytes) bytes",
            "network: \(tier.network)",
            "cache: \(tier.cacheable ? "\(tier.cacheTTLSeconds ?? 0) s" : "no")",
            "requires: \(tier.requires.isEmpty ? "nothing" : tier.requires.joined(separator: ", "))",
            "audit sync: \(tier.auditSync.rawValue) (\(tier.auditSync == .full ? "each record fsynced before the call goes on" : "records committed before the call goes on, fsynced within a few ms"))",
        ]
    }
}
