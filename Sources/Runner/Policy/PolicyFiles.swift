import Foundation
import Sandbox
import WorkspaceRegistry
import Yams

/// One problem in a policy file, with where it is.
public struct PolicyDiagnostic: Sendable, Hashable, CustomStringConvertible {
    /// The file, as given (relative to the policies directory's parent when that is how it was named).
    public let file: String
    /// 1-based line, when the problem has a place.
    public let line: Int?
    /// 1-based column, when the problem has a place.
    public let column: Int?
    /// What is wrong, in a sentence an operator can act on.
    public let message: String

    /// `file:line:column: message`.
    public var description: String {
        var place = file
        if let line { place += ":\(line)" }
        if let column { place += ":\(column)" }
        return "\(place): \(message)"
    }
}

/// Policy files that cannot be used; lists every problem found, not only the first.
public struct PolicyValidationError: Error, Sendable, CustomStringConvertible {
    /// Every problem, in file order.
    public let diagnostics: [PolicyDiagnostic]

    /// One problem per line.
    public var description: String { diagnostics.map(\.description).joined(separator: "\n") }
}

/// Reads and validates `policies/`: `tiers.yaml`, `tools.yaml` and `tenants/<tenant>.yaml`.
///
/// The files are walked as YAML nodes rather than decoded with `Codable` so that every error can
/// name its file, line and column, unknown keys are errors (a misspelt `aproval:` must not silently
/// mean "no approval"), and all problems are reported at once.
public enum PolicyFiles {
    /// The seccomp profiles a tier may name: the worker's built-in filters.
    static let seccompProfiles: [String] = SeccompProfileName.allCases.map(\.rawValue)
    /// The network modes a tier may name. Only `none` exists: workers get an empty network namespace.
    static let networkModes = ["none"]

    /// Loads and validates every policy file under `directory`.
    ///
    /// - Throws: ``PolicyValidationError`` listing every problem with file:line:column.
    public static func load(directory: String) throws(PolicyValidationError) -> RiskPolicy {
        var reader = PolicyYAMLReader()
        let tiersPath = directory + "/tiers.yaml"
        let toolsPath = directory + "/tools.yaml"
        let tiersText = reader.read(tiersPath)
        let toolsText = reader.read(toolsPath)
        var tiers: [String: RiskTier] = [:]
        if let tiersText, let root = reader.compose(tiersText, file: tiersPath) {
            tiers = reader.tiersFile(root, file: tiersPath)
        }
        // Rules may name a tier that is defined but invalid without a second error for each rule.
        reader.tierNames.formUnion(tiers.keys)
        var rules: [RiskPolicy.Rule] = []
        if let toolsText, let root = reader.compose(toolsText, file: toolsPath) {
            rules = reader.rulesFile(root, file: toolsPath, key: "tools", tiers: tiers, required: true).rules
        }
        reader.checkTies(rules, file: toolsPath)

        var overrides: [String: TenantOverride] = [:]
        var versionInput = (tiersText ?? "") + "\u{0}" + (toolsText ?? "")
        let tenantsDirectory = directory + "/tenants"
        let allTenantFiles = ((try? FileManager.default.contentsOfDirectory(atPath: tenantsDirectory)) ?? []).sorted()
        // A tightening in a misnamed file (`acme.yml`) must not silently not apply.
        for name in allTenantFiles where !name.hasSuffix(".yaml") && !name.hasPrefix(".") {
            reader.error(
                tenantsDirectory + "/" + name, nil, "only <tenant_id>.yaml files are read here; rename or remove it")
        }
        let tenantFiles = allTenantFiles.filter { $0.hasSuffix(".yaml") }
        for name in tenantFiles {
            let path = tenantsDirectory + "/" + name
            let tenant = String(name.dropLast(".yaml".count))
            guard Identifier.isValid(tenant) else {
                reader.error(path, nil, "the file name must be <tenant_id>.yaml with a tenant id of [A-Za-z0-9_-]")
                continue
            }
            guard let text = reader.read(path) else { continue }
            versionInput += "\u{0}\(name)\u{0}" + text
            guard let root = reader.compose(text, file: path) else { continue }
            if let override = reader.tenantFile(root, file: path, tenant: tenant, tiers: tiers, base: rules) {
                overrides[tenant] = override
            }
        }
        guard reader.diagnostics.isEmpty else { throw PolicyValidationError(diagnostics: reader.diagnostics) }
        let version = String(Digest.sha256Hex(Array(versionInput.utf8)).prefix(16))
        do {
            return try RiskPolicy(tiers: tiers, ruleList: rules, tenantOverrides: overrides, version: version)
        } catch {
            throw PolicyValidationError(diagnostics: [
                PolicyDiagnostic(file: directory, line: nil, column: nil, message: "\(error)")
            ])
        }
    }

    /// The version ``load(directory:)`` gives the files as they are on disk now. A reload compares it
    /// with the version of the bytes it parsed: a file rewritten in place while it was read (even
    /// back to the same bytes) gives a parse of a half-written file a version of its own, so the
    /// reload can tell and read again instead of installing it.
    public static func currentVersion(directory: String) -> String {
        func text(_ path: String) -> String {
            FileManager.default.contents(atPath: path).flatMap { String(data: $0, encoding: .utf8) } ?? ""
        }
        var versionInput = text(directory + "/tiers.yaml") + "\u{0}" + text(directory + "/tools.yaml")
        let tenantsDirectory = directory + "/tenants"
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: tenantsDirectory)) ?? []).sorted()
        for name in names where name.hasSuffix(".yaml") && Identifier.isValid(String(name.dropLast(".yaml".count))) {
            guard let data = FileManager.default.contents(atPath: tenantsDirectory + "/" + name),
                let text = String(data: data, encoding: .utf8)
            else { continue }
            versionInput += "\u{0}\(name)\u{0}" + text
        }
        return String(Digest.sha256Hex(Array(versionInput.utf8)).prefix(16))
    }

    /// A content fingerprint of the policy files, to notice edits without parsing.
    public static func fingerprint(directory: String) -> String {
        var input: [UInt8] = []
        var paths = [directory + "/tiers.yaml", directory + "/tools.yaml"]
        let tenants = directory + "/tenants"
        paths += ((try? FileManager.default.contentsOfDirectory(atPath: tenants)) ?? []).sorted().map {
            tenants + "/" + $0
        }
        for path in paths {
            input += Array(path.utf8) + [0]
            if let data = FileManager.default.contents(atPath: path) { input += Array(data) }
            input.append(0)
        }
        return Digest.sha256Hex(input)
    }
}

/// Walks policy YAML, collecting diagnostics.
struct PolicyYAMLReader {
    var diagnostics: [PolicyDiagnostic] = []
    /// Every tier name defined in tiers.yaml, valid or not.
    var tierNames: Set<String> = []

    mutating func error(_ file: String, _ node: Node?, _ message: String) {
        diagnostics.append(
            PolicyDiagnostic(file: file, line: node?.mark?.line, column: node?.mark?.column, message: message))
    }

    mutating func read(_ path: String) -> String? {
        guard let data = FileManager.default.contents(atPath: path) else {
            error(path, nil, "cannot read the file")
            return nil
        }
        guard let text = String(data: data, encoding: .utf8) else {
            error(path, nil, "the file is not UTF-8")
            return nil
        }
        return text
    }

    mutating func compose(_ text: String, file: String) -> Node? {
        do {
            guard let node = try Yams.compose(yaml: text) else {
                error(file, nil, "the file is empty")
                return nil
            }
            return node
        } catch let yaml as YamlError {
            switch yaml {
            case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _):
                diagnostics.append(
                    PolicyDiagnostic(file: file, line: mark.line, column: mark.column, message: "YAML: \(problem)"))
            default:
                error(file, nil, "YAML: \(yaml)")
            }
            return nil
        } catch {
            self.error(file, nil, "YAML: \(error)")
            return nil
        }
    }

    // MARK: Generic node access

    /// The pairs of a mapping with string keys; reports unknown and duplicate keys and missing required ones.
    mutating func fields(
        _ node: Node, file: String, what: String, known: [String], required: [String] = []
    ) -> [String: Node]? {
        guard let mapping = node.mapping else {
            error(file, node, "\(what) must be a mapping")
            return nil
        }
        var result: [String: Node] = [:]
        for (keyNode, value) in mapping {
            guard let key = keyNode.scalar?.string else {
                error(file, keyNode, "\(what): keys must be strings")
                continue
            }
            guard known.contains(key) else {
                error(file, keyNode, "\(what): unknown key \"\(key)\" (known: \(known.joined(separator: ", ")))")
                continue
            }
            guard result[key] == nil else {
                error(file, keyNode, "\(what): key \"\(key)\" appears twice")
                continue
            }
            result[key] = value
        }
        for key in required where result[key] == nil {
            error(file, node, "\(what): missing required key \"\(key)\"")
        }
        return result
    }

    mutating func string(_ node: Node?, file: String, what: String) -> String? {
        guard let node else { return nil }
        guard let scalar = node.scalar, !scalar.string.isEmpty, !(scalar.style == .plain && node.null != nil) else {
            error(file, node, "\(what) must be a non-empty string")
            return nil
        }
        return scalar.string
    }

    mutating func integer(_ node: Node?, file: String, what: String, minimum: Int, maximum: Int = .max) -> Int? {
        guard let node else { return nil }
        guard let value = node.int, node.scalar?.style == .plain else {
            error(file, node, "\(what) must be an integer")
            return nil
        }
        guard value >= minimum else {
            error(file, node, "\(what) must be at least \(minimum), got \(value)")
            return nil
        }
        guard value <= maximum else {
            error(file, node, "\(what) must be at most \(maximum), got \(value)")
            return nil
        }
        return value
    }

    mutating func boolean(_ node: Node?, file: String, what: String) -> Bool? {
        guard let node else { return nil }
        guard let scalar = node.scalar, scalar.style == .plain, ["true", "false"].contains(scalar.string) else {
            error(file, node, "\(what) must be true or false")
            return nil
        }
        return scalar.string == "true"
    }

    mutating func list(_ node: Node?, file: String, what: String) -> [Node]? {
        guard let node else { return nil }
        guard let sequence = node.sequence else {
            error(file, node, "\(what) must be a list")
            return nil
        }
        return Array(sequence)
    }

    mutating func oneOf(_ node: Node?, file: String, what: String, choices: [String]) -> String? {
        guard let value = string(node, file: file, what: what) else { return nil }
        guard choices.contains(value) else {
            error(file, node, "\(what) \"\(value)\" is not one of \(choices.joined(separator: ", "))")
            return nil
        }
        return value
    }

    // MARK: tiers.yaml

    mutating func tiersFile(_ root: Node, file: String) -> [String: RiskTier] {
        guard let top = fields(root, file: file, what: "tiers.yaml", known: ["tiers"], required: ["tiers"]),
            let tiersNode = top["tiers"], let mapping = tiersNode.mapping
        else {
            if root.mapping != nil, let node = root.mapping?["tiers"] {
                error(file, node, "tiers must be a mapping of tier name to tier")
            }
            return [:]
        }
        var tiers: [String: RiskTier] = [:]
        for (keyNode, value) in mapping {
            guard let name = keyNode.scalar?.string, Identifier.isValid(name) else {
                error(file, keyNode, "tier names must be 1-64 characters of [A-Za-z0-9_-]")
                continue
            }
            if tiers[name] != nil { error(file, keyNode, "tier \(name) is defined twice") }
            tierNames.insert(name)
            if let tier = self.tier(value, file: file, name: name) { tiers[name] = tier }
        }
        if tiers.isEmpty && diagnostics.isEmpty { error(file, tiersNode, "no tiers are defined") }
        return tiers
    }

    private mutating func tier(_ node: Node, file: String, name: String) -> RiskTier? {
        let what = "tier \(name)"
        guard
            let f = fields(
                node, file: file, what: what,
                known: [
                    "isolation", "approval", "seccomp_profile", "limits", "network", "cacheable", "cache_ttl_seconds",
                    "requires", "audit_sync", "best_effort",
                ],
                required: ["isolation", "approval", "seccomp_profile", "limits", "cacheable"])
        else { return nil }
        let before = diagnostics.count
        let isolation = oneOf(f["isolation"], file: file, what: "\(what): isolation", choices: ["call", "session"])
        let profile = oneOf(
            f["seccomp_profile"], file: file, what: "\(what): seccomp_profile", choices: PolicyFiles.seccompProfiles)
        let network =
            f["network"] == nil
            ? "none" : oneOf(f["network"], file: file, what: "\(what): network", choices: PolicyFiles.networkModes)
        // Absent means full: a tier the security team did not decide on keeps every record synced.
        let auditSync =
            f["audit_sync"] == nil
            ? AuditSync.full.rawValue
            : oneOf(
                f["audit_sync"], file: file, what: "\(what): audit_sync",
                choices: AuditSync.allCases.map(\.rawValue))
        let cacheable = boolean(f["cacheable"], file: file, what: "\(what): cacheable")
        let cacheTTL = integer(f["cache_ttl_seconds"], file: file, what: "\(what): cache_ttl_seconds", minimum: 1)
        if cacheable == true && f["cache_ttl_seconds"] == nil {
            error(file, f["cacheable"], "\(what): a cacheable tier needs cache_ttl_seconds")
        }
        if cacheable == false, let node = f["cache_ttl_seconds"] {
            error(file, node, "\(what): cache_ttl_seconds is set but the tier is not cacheable")
        }
        var requires: [String] = []
        for item in list(f["requires"], file: file, what: "\(what): requires") ?? [] {
            if let feature = oneOf(
                item, file: file, what: "\(what): requires", choices: KernelFeatures.requirementNames)
            {
                requires.append(feature)
            }
        }
        var bestEffort: [String] = []
        for item in list(f["best_effort"], file: file, what: "\(what): best_effort") ?? [] {
            if let limit = oneOf(
                item, file: file, what: "\(what): best_effort", choices: LimitEnforcement.hostDependentLimits)
            {
                bestEffort.append(limit)
            }
        }
        let approval = f["approval"].flatMap { approvalSettings($0, file: file, what: "\(what): approval") }
        let limits = f["limits"].flatMap { limitSettings($0, file: file, what: "\(what): limits") }
        guard diagnostics.count == before, let isolation, let profile, let network, let cacheable, let approval,
            let limits, let isolationValue = RiskTier.Isolation(rawValue: isolation),
            let profileValue = SeccompProfileName(rawValue: profile),
            let auditSyncValue = auditSync.flatMap(AuditSync.init(rawValue:))
        else { return nil }
        return RiskTier(
            isolation: isolationValue, approval: approval, seccompProfile: profileValue, limits: limits, network: network,
            cacheable: cacheable, cacheTTLSeconds: cacheTTL, requires: requires, auditSync: auditSyncValue,
            bestEffort: bestEffort)
    }

    private mutating func approvalSettings(_ node: Node, file: String, what: String) -> RiskTier.Approval? {
        guard
            let f = fields(
                node, file: file, what: what, known: ["required", "ttl_seconds", "uses"], required: ["required"])
        else { return nil }
        let required = boolean(f["required"], file: file, what: "\(what).required")
        // The same bounds as a grant through the admin API, so a tier's defaults are always grantable.
        let ttl = integer(f["ttl_seconds"], file: file, what: "\(what).ttl_seconds", minimum: 1, maximum: 86_400)
        let uses = integer(f["uses"], file: file, what: "\(what).uses", minimum: 1, maximum: 1000)
        if required == true {
            if f["ttl_seconds"] == nil { error(file, node, "\(what): a required approval needs ttl_seconds") }
            if f["uses"] == nil { error(file, node, "\(what): a required approval needs uses") }
        } else if required == false, f["ttl_seconds"] != nil || f["uses"] != nil {
            error(file, node, "\(what): ttl_seconds and uses only apply when required is true")
        }
        guard let required else { return nil }
        return RiskTier.Approval(required: required, ttlSeconds: ttl, uses: uses)
    }

    private mutating func limitSettings(_ node: Node, file: String, what: String) -> RiskTier.Limits? {
        // Every limit is required: a tier that forgets one would run without it.
        let keys = ["wall_ms", "cpu_seconds", "memory_mib", "file_size_mib", "processes", "output_bytes"]
        guard let f = fields(node, file: file, what: what, known: keys + ["cpu_weight"], required: keys) else {
            return nil
        }
        var values: [String: Int] = [:]
        for key in keys {
            values[key] = integer(f[key], file: file, what: "\(what).\(key)", minimum: key == "file_size_mib" ? 0 : 1)
        }
        // Optional: the cgroup v2 scale, 100 being every group's default.
        let cpuWeight = integer(f["cpu_weight"], file: file, what: "\(what).cpu_weight", minimum: 1, maximum: 10_000)
        guard f["cpu_weight"] == nil || cpuWeight != nil, let wallMs = values["wall_ms"],
            let cpuSeconds = values["cpu_seconds"], let memoryMiB = values["memory_mib"],
            let fileSizeMiB = values["file_size_mib"], let processes = values["processes"],
            let outputBytes = values["output_bytes"]
        else { return nil }
        // Open descriptors are not a policy key: they follow the profile (``RiskTier/workerTier(named:)``).
        return RiskTier.Limits(
            wallMs: wallMs, cpuSeconds: cpuSeconds, memoryMiB: memoryMiB, fileSizeMiB: fileSizeMiB,
            processes: processes, outputBytes: outputBytes, cpuWeight: cpuWeight)
    }

    // MARK: tools.yaml and tenant tools

    mutating func rulesFile(
        _ root: Node, file: String, key: String, tiers: [String: RiskTier], required: Bool
    ) -> (rules: [RiskPolicy.Rule], fields: [String: Node]) {
        guard
            let top = fields(
                root, file: file, what: (file as NSString).lastPathComponent, known: [key],
                required: required ? [key] : [])
        else { return ([], [:]) }
        return (rules(top[key], file: file, tiers: tiers), top)
    }

    mutating func rules(_ node: Node?, file: String, tiers: [String: RiskTier]) -> [RiskPolicy.Rule] {
        var rules: [RiskPolicy.Rule] = []
        var seen: [String: String] = [:]
        for item in list(node, file: file, what: "tools") ?? [] {
            guard
                let f = fields(
                    item, file: file, what: "tool rule", known: ["pattern", "tier"], required: ["pattern", "tier"]),
                let text = string(f["pattern"], file: file, what: "pattern"),
                let tier = string(f["tier"], file: file, what: "tier")
            else { continue }
            guard let pattern = ToolPattern(text) else {
                error(file, f["pattern"], PatternError(pattern: text).description)
                continue
            }
            guard tierNames.contains(tier) else {
                error(
                    file, f["tier"],
                    "pattern \(text) names unknown tier \(tier) (tiers: \(tierNames.sorted().joined(separator: ", ")))")
                continue
            }
            if let other = seen[text] {
                error(
                    file, f["pattern"],
                    other == tier
                        ? "pattern \(text) is listed twice" : "pattern \(text) is assigned both \(other) and \(tier)")
                continue
            }
            seen[text] = tier
            rules.append(RiskPolicy.Rule(pattern: pattern, tier: tier, line: item.mark?.line))
        }
        return rules
    }

    /// Equally specific patterns with different tiers that some tool name matches both of: the
    /// "most specific wins" rule cannot decide it, so the file is refused.
    mutating func checkTies(_ rules: [RiskPolicy.Rule], file: String) {
        for (i, a) in rules.enumerated() {
            for b in rules[(i + 1)...] where a.tier != b.tier && a.pattern.specificity == b.pattern.specificity {
                if let name = a.pattern.overlap(with: b.pattern) {
                    diagnostics.append(
                        PolicyDiagnostic(
                            file: file, line: b.line, column: nil,
                            message:
                                "patterns \(a.pattern) (\(a.tier), line \(a.line ?? 0)) and \(b.pattern) (\(b.tier)) are equally specific and both match \(name); make one more specific"
                        ))
                }
            }
        }
    }

    // MARK: tenants/<tenant>.yaml

    mutating func tenantFile(
        _ root: Node, file: String, tenant: String, tiers: [String: RiskTier], base: [RiskPolicy.Rule]
    ) -> TenantOverride? {
        guard let f = fields(root, file: file, what: "tenant override", known: ["tools", "deny"]) else { return nil }
        let before = diagnostics.count
        let rules = rules(f["tools"], file: file, tiers: tiers)
        checkTies(rules, file: file)
        // Tighten only: wherever an override pattern and a base pattern can match the same tool,
        // the override's tier must be at least as strict as the base one.
        for rule in rules {
            guard let overrideTier = tiers[rule.tier] else { continue }
            for baseRule in base {
                guard let baseTier = tiers[baseRule.tier], let name = rule.pattern.overlap(with: baseRule.pattern)
                else { continue }
                let looser = overrideTier.loosenings(comparedTo: baseTier)
                if !looser.isEmpty {
                    diagnostics.append(
                        PolicyDiagnostic(
                            file: file, line: rule.line, column: nil,
                            message:
                                "override \(rule.pattern) -> \(rule.tier) would loosen \(name) (tier \(baseRule.tier) from tools.yaml pattern \(baseRule.pattern)): \(looser.joined(separator: "; ")); overrides may only tighten"
                        ))
                }
            }
        }
        var denied: [ToolPattern] = []
        for item in list(f["deny"], file: file, what: "deny") ?? [] {
            guard let text = string(item, file: file, what: "deny pattern") else { continue }
            guard let pattern = ToolPattern(text) else {
                error(file, item, PatternError(pattern: text).description)
                continue
            }
            denied.append(pattern)
        }
        guard diagnostics.count == before else { return nil }
        return TenantOverride(tenant: tenant, file: file, rules: rules, denied: PatternSet(denied))
    }
}

/// A tenant's tightening of the policy: stricter tiers for some tools, extra denied patterns.
public struct TenantOverride: Sendable, Hashable {
    /// The tenant.
    public let tenant: String
    /// The file it came from.
    public let file: String
    let rules: [RiskPolicy.Rule]
    /// Patterns no session of the tenant may see.
    public let denied: PatternSet
}
