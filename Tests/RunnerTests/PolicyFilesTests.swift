import Foundation
import Sandbox
import Testing

@testable import Runner

@Suite struct PolicyFilesTests {
    static let repositoryPolicies =
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path + "/policies"

    /// A copy of the shipped policies in a fresh directory, with `edit` applied to named files.
    func policies(_ files: [String: String] = [:]) throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lh-policy-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/tenants", withIntermediateDirectories: true)
        for name in ["tiers.yaml", "tools.yaml"] {
            try FileManager.default.copyItem(atPath: Self.repositoryPolicies + "/" + name, toPath: dir + "/" + name)
        }
        for (name, text) in files {
            try? FileManager.default.removeItem(atPath: dir + "/" + name)
            try text.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8)
        }
        return dir
    }

    func diagnostics(_ dir: String) -> [PolicyDiagnostic] {
        do {
            _ = try RiskPolicy.load(directory: dir)
            return []
        } catch {
            return error.diagnostics
        }
    }

    @Test func overlapFindsACommonNameOrProvesNone() throws {
        let cases: [(String, String, Bool)] = [
            ("kb.*", "*.finance", true), ("kb.*", "crm.*", false), ("kb.*_get", "kb.fina*", true),
            ("a*b*c", "*x*", true), ("repo.read_file", "repo.*", true), ("repo.read_file", "repo.write*", false),
            ("*", "*", true), ("a.b", "a.c", false), ("*_admin", "*_delete", false),
        ]
        for (a, b, overlaps) in cases {
            let pa = try #require(ToolPattern(a))
            let pb = try #require(ToolPattern(b))
            let witness = pa.overlap(with: pb)
            #expect((witness != nil) == overlaps, "\(a) vs \(b)")
            if let witness {
                #expect(pa.matches(witness) && pb.matches(witness), "\(witness) must match \(a) and \(b)")
            }
        }
    }

    @Test func strictnessComparesEveryAspect() throws {
        let policy = try RiskPolicy.load(directory: Self.repositoryPolicies)
        let read = try #require(policy.tiers["read"])
        let exec = try #require(policy.tiers["exec"])
        let external = try #require(policy.tiers["external"])
        #expect(read.loosenings(comparedTo: read).isEmpty)
        #expect(external.loosenings(comparedTo: exec).isEmpty, "external tightens exec")
        let looser = exec.loosenings(comparedTo: external)
        #expect(looser.contains("no approval where the base tier requires one"))
        #expect(looser.contains { $0.hasPrefix("limits.memory_mib 1024 > 512") })
        #expect(exec.loosenings(comparedTo: read).contains("seccomp profile exec allows more than read"))
        #expect(read.loosenings(comparedTo: exec).contains("isolation session instead of call"))
    }

    @Test func tenantOverridesTightenAndNeverRevealUnmappedTools() throws {
        let dir = try policies([
            "tenants/globex.yaml":
                "tools:\n  - {pattern: \"shell.*\", tier: external}\n  - {pattern: \"kb.*\", tier: external}\ndeny: [\"repo.write_*\"]\n"
        ])
        let policy = try RiskPolicy.load(directory: dir)
        #expect(policy.tier(for: "shell.run", tenant: "globex")?.name == "external")
        #expect(policy.tier(for: "shell.run", tenant: "acme")?.name == "exec")
        #expect(policy.tier(for: "kb.finance", tenant: "globex") == nil, "no base tier: still denied")
        let catalog = try Catalog(extra: [
            ToolDescriptor(name: "kb.finance", description: "", inputSchema: ["type": "object"])
        ])
        let resolver = ScopeResolver(catalog: catalog, policy: policy)
        let now = Date()
        func scope(_ tenant: String) throws -> Scope {
            let session = Session(
                id: "s", tenantID: tenant, actorID: "a", workspaceID: "w", serverID: nil, bundleID: nil,
                allowedToolNames: nil, deniedToolNames: nil, lease: Lease(id: "l", issuedAt: now, expiresAt: now + 60),
                claimTTLSeconds: 60, leaseTTLSeconds: 60, createdAt: now, updatedAt: now, revokedAt: nil, version: 1)
            return try Scope(session: session, claimAllowedTools: nil, endpointServer: nil, catalog: catalog)
        }
        #expect(resolver.decide("shell.run", in: try scope("globex")) == .visible(tier: "external"))
        #expect(resolver.decide("shell.run", in: try scope("acme")) == .visible(tier: "exec"))
        #expect(!resolver.decide("repo.write_file", in: try scope("globex")).isVisible)
        #expect(resolver.decide("repo.write_file", in: try scope("acme")).isVisible)
        #expect(!resolver.decide("kb.finance", in: try scope("globex")).isVisible)
    }

    @Test func everyProblemIsReportedWithItsLine() throws {
        let dir = try policies([
            "tools.yaml": """
            tools:
              - {pattern: "repo.read_file", tier: read}
              - {pattern: "repo.read_file", tier: write}
              - {pattern: "kb.*", tier: nope}
              - {pattern: "bad name", tier: read}
              - {pattern: "x.*", tier: read, note: hi}
            """,
            "tenants/acme.yaml": "tools:\n  - {pattern: \"repo.*\", tier: exec}\n",
            "tenants/bad name.yaml": "deny: []\n",
        ])
        let found = diagnostics(dir).map { "\(($0.file as NSString).lastPathComponent):\($0.line ?? 0) \($0.message)" }
        #expect(found.contains { $0.hasPrefix("tools.yaml:3 pattern repo.read_file is assigned both read and write") })
        #expect(found.contains { $0.hasPrefix("tools.yaml:4 pattern kb.* names unknown tier nope") })
        #expect(found.contains { $0.hasPrefix("tools.yaml:5 invalid tool pattern \"bad name\"") })
        #expect(found.contains { $0.hasPrefix("tools.yaml:6 tool rule: unknown key \"note\"") })
        #expect(found.contains { $0.hasPrefix("acme.yaml:2 override repo.* -> exec would loosen") })
        #expect(found.contains { $0.hasPrefix("bad name.yaml:0 the file name must be <tenant_id>.yaml") })
    }

    /// `audit_sync`: shipped read tier batched, every other full; absent means full; an unknown
    /// value is refused at its line; a tenant may move a tool from batched to full, never back.
    /// `best_effort` names the host-dependent limits a tier may run without; `cpu_weight` is
    /// optional and bounded; accepting more best-effort limits is a loosening a tenant cannot make.
    @Test func bestEffortAndCPUWeightAreReadValidatedAndOnlyTightened() throws {
        let shipped = try RiskPolicy.load(directory: Self.repositoryPolicies)
        #expect(shipped.tiers["exec"]?.limits.cpuWeight == 100)
        #expect(shipped.tiers["read"]?.limits.cpuWeight == nil)
        for (name, tier) in shipped.tiers { #expect(tier.bestEffort.isEmpty, "shipped tier \(name) accepts no unenforced limit") }
        let body =
            "    isolation: call\n    approval: {required: false}\n    seccomp_profile: exec\n"
            + "    limits: {wall_ms: 1000, cpu_seconds: 1, memory_mib: 64, file_size_mib: 0, processes: 8, output_bytes: 1024, cpu_weight: 50}\n"
            + "    cacheable: false\n"
        let tiers = "tiers:\n  strict:\n" + body + "  lenient:\n" + body + "    best_effort: [memory_mib, cpu_weight]\n"
        let tools = "tools:\n  - {pattern: \"shell.run\", tier: strict}\n  - {pattern: \"repo.*\", tier: lenient}\n"
        let good = try RiskPolicy.load(directory: try policies(["tiers.yaml": tiers, "tools.yaml": tools]))
        #expect(good.tiers["lenient"]?.bestEffort == ["memory_mib", "cpu_weight"])
        #expect(good.tiers["strict"]?.limits.cpuWeight == 50)
        let lenient = try #require(good.tiers["lenient"])
        let strict = try #require(good.tiers["strict"])
        #expect(lenient.loosenings(comparedTo: strict).contains("best_effort also accepts cpu_weight, memory_mib"))
        #expect(strict.loosenings(comparedTo: lenient).isEmpty)
        #expect(lenient.workerTier(named: "lenient").bestEffort == ["memory_mib", "cpu_weight"])
        #expect(lenient.workerTier(named: "lenient").limits.cpuWeight == 50)

        let bad = diagnostics(
            try policies([
                "tiers.yaml": tiers.replacingOccurrences(of: "best_effort: [memory_mib, cpu_weight]", with: "best_effort: [wall_ms]")
                    .replacingOccurrences(of: "cpu_weight: 50}", with: "cpu_weight: 0}"),
                "tools.yaml": tools,
            ]))
        #expect(bad.contains { $0.message.contains("best_effort") && $0.message.contains("wall_ms") }, "\(bad)")
        #expect(bad.contains { $0.message.contains("cpu_weight") }, "\(bad)")
    }

    @Test func auditSyncIsReadValidatedAndOnlyTightenedByTenants() throws {
        let shipped = try RiskPolicy.load(directory: Self.repositoryPolicies)
        #expect(shipped.tiers["read"]?.auditSync == .batched)
        for name in ["write", "exec", "external"] { #expect(shipped.tiers[name]?.auditSync == .full, "\(name)") }
        let read = try #require(shipped.tiers["read"])
        let write = try #require(shipped.tiers["write"])
        #expect(read.loosenings(comparedTo: write).contains("audit_sync batched instead of full"))
        #expect(!write.loosenings(comparedTo: read).contains { $0.hasPrefix("audit_sync") })
        let explained = PolicyReport.explain(
            tool: "repo.read_file", resolver: ScopeResolver(catalog: try Catalog(), policy: shipped), tenant: nil,
            session: nil)
        #expect(explained.contains { $0.hasPrefix("  audit sync: batched") }, "\(explained)")

        // Two tiers alike in all but audit_sync, and one that does not say.
        let body =
            "    isolation: call\n    approval: {required: false}\n    seccomp_profile: read\n"
            + "    limits: {wall_ms: 1000, cpu_seconds: 1, memory_mib: 64, file_size_mib: 0, processes: 1, output_bytes: 1024}\n"
            + "    cacheable: false\n"
        let tiers =
            "tiers:\n  synced:\n" + body + "    audit_sync: full\n  quick:\n" + body + "    audit_sync: batched\n"
            + "  unsaid:\n" + body
        let tools =
            "tools:\n  - {pattern: \"repo.stat\", tier: synced}\n  - {pattern: \"repo.read_file\", tier: quick}\n"
            + "  - {pattern: \"repo.list_dir\", tier: unsaid}\n"
        let good = try RiskPolicy.load(
            directory: try policies([
                "tiers.yaml": tiers, "tools.yaml": tools,
                "tenants/globex.yaml": "tools:\n  - {pattern: \"repo.read_file\", tier: synced}\n",
            ]))
        #expect(good.tiers["quick"]?.auditSync == .batched)
        #expect(good.tiers["unsaid"]?.auditSync == .full, "absent means full")
        #expect(good.tier(for: "repo.read_file", tenant: "globex")?.name == "synced", "batched -> full tightens")

        let loosening = diagnostics(
            try policies([
                "tiers.yaml": tiers, "tools.yaml": tools,
                "tenants/acme.yaml": "tools:\n  - {pattern: \"repo.stat\", tier: quick}\n",
            ])
        ).map { "\(($0.file as NSString).lastPathComponent):\($0.line ?? 0) \($0.message)" }
        #expect(
            loosening.contains {
                $0.hasPrefix("acme.yaml:2 override repo.stat -> quick would loosen")
                    && $0.contains("audit_sync batched instead of full")
            }, "\(loosening)")

        let bad = diagnostics(
            try policies([
                "tiers.yaml": tiers.replacingOccurrences(of: "audit_sync: batched", with: "audit_sync: sometimes"),
                "tools.yaml": tools,
            ])
        ).map { "\(($0.file as NSString).lastPathComponent):\($0.line ?? 0) \($0.message)" }
        #expect(
            bad.contains { $0 == "tiers.yaml:15 tier quick: audit_sync \"sometimes\" is not one of full, batched" },
            "\(bad)")
    }

    @Test func malformedYAMLAndWrongTypesAreDiagnosedNotCrashed() throws {
        for (tiers, expected) in [
            ("tiers: [", "YAML:"), ("tiers:\n  read: 3\n", "tier read must be a mapping"),
            ("nope: {}\n", "unknown key \"nope\""), ("", "the file is empty"),
            (
                "tiers:\n  read:\n    isolation: warm\n    approval: {required: yes}\n    seccomp_profile: read\n    limits: {wall_ms: -1}\n    cacheable: true\n",
                "isolation \"warm\" is not one of call, session"
            ),
        ] {
            let found = diagnostics(try policies(["tiers.yaml": tiers])).map(\.description)
            #expect(found.contains { $0.contains(expected) }, "\(tiers): \(found)")
        }
    }

    @Test func misnamedTenantFilesAndUngrantableApprovalDefaultsAreErrors() throws {
        let tiers = try String(contentsOfFile: Self.repositoryPolicies + "/tiers.yaml", encoding: .utf8)
        let dir = try policies([
            "tenants/acme.yml": "deny: [\"shell.*\"]\n",
            "tiers.yaml": tiers.replacingOccurrences(
                of: "approval: {required: true, ttl_seconds: 300, uses: 1}",
                with: "approval: {required: true, ttl_seconds: 999999, uses: 5000}"),
        ])
        let found = diagnostics(dir).map(\.description)
        #expect(found.contains { $0.contains("acme.yml: only <tenant_id>.yaml files are read here") })
        #expect(found.contains { $0.contains("approval.ttl_seconds must be at most 86400") })
        #expect(found.contains { $0.contains("approval.uses must be at most 1000") })
    }

    @Test func fingerprintChangesWithAnyPolicyFile() throws {
        let dir = try policies()
        let before = PolicyFiles.fingerprint(directory: dir)
        #expect(PolicyFiles.fingerprint(directory: dir) == before)
        try "deny: [\"shell.*\"]\n".write(toFile: dir + "/tenants/acme.yaml", atomically: true, encoding: .utf8)
        #expect(PolicyFiles.fingerprint(directory: dir) != before)
    }

    @Test func reloadSwapsValidPoliciesTellsTheExecutorAndKeepsTheOldOnError() async throws {
        let recorder = TierChangeRecorder()
        let dir = try policies()
        let fixture = try await GatewayFixture(
            policy: try RiskPolicy.load(directory: dir), executor: recorder)
        let gateway = fixture.gateway
        let first = gateway.policyStatus.version

        // Unchanged files: nothing swaps, no worker is told anything.
        #expect(try await gateway.reloadPolicy(directory: dir).get() == first)
        #expect(await recorder.changes.isEmpty)

        // shell.run moves from exec to external for globex only: both tiers' workers are affected.
        try "tools:\n  - {pattern: \"shell.run\", tier: external}\n".write(
            toFile: dir + "/tenants/globex.yaml", atomically: true, encoding: .utf8)
        let second = try await gateway.reloadPolicy(directory: dir).get()
        #expect(second != first)
        #expect(await recorder.changes == [["exec", "external"]])
        #expect(gateway.resolver.tier(of: "shell.run", tenant: "globex") == "external")

        // A tier's limits change: that tier's workers are affected.
        let tiers = try String(contentsOfFile: dir + "/tiers.yaml", encoding: .utf8)
        try tiers.replacingOccurrences(
            of: "wall_ms: 10000, cpu_seconds: 10, memory_mib: 256, file_size_mib: 0",
            with: "wall_ms: 5000, cpu_seconds: 10, memory_mib: 256, file_size_mib: 0"
        )
        .write(toFile: dir + "/tiers.yaml", atomically: true, encoding: .utf8)
        _ = try await gateway.reloadPolicy(directory: dir).get()
        #expect(await recorder.changes.last == ["read"])

        // An invalid edit: rejected, recorded, and the policy in force stays.
        try "tools: [{pattern: \"repo.*\", tier: exec}]\n".write(
            toFile: dir + "/tenants/acme.yaml", atomically: true, encoding: .utf8)
        let before = gateway.policyStatus.version
        guard case .failure(let error) = await gateway.reloadPolicy(directory: dir) else {
            Issue.record("a loosening override was accepted")
            return
        }
        #expect(error.description.contains("acme.yaml:1"))
        #expect(gateway.policyStatus.version == before)
        #expect(gateway.policyStatus.lastRejection?.errors.isEmpty == false)
        #expect(gateway.resolver.tier(of: "repo.read_file", tenant: "acme") == "read")
    }
}

/// Records what the gateway tells the executor about changed tiers.
actor TierChangeRecorder: WorkerlessExecutor {
    private(set) var changes: [Set<String>] = []

    nonisolated func execute(_ invocation: ToolInvocation) async -> ToolExecution {
        ToolExecution(
            outcome: .failed(code: "recorded", message: "recording executor"), workerID: nil,
            isolation: invocation.tier.isolation)
    }

    func tiersChanged(_ tiers: Set<String>) async { changes.append(tiers) }
}
