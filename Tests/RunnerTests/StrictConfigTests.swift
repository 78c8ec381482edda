import Foundation
import Testing

@testable import Runner

/// leasehold.yaml refuses every key it does not know, at any depth, with file:line like
/// `policies/`: a misspelt `allowed_hosts` must not silently allow every host.
@Suite struct StrictConfigTests {
    private func load(_ text: String) throws -> (LeaseholdConfig, String) {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("lh-strict-\(UUID().uuidString).yaml")
        defer { try? FileManager.default.removeItem(at: file) }
        try text.write(to: file, atomically: true, encoding: .utf8)
        return (try LeaseholdConfig.load(file: file.path), file.path)
    }

    private func refusal(_ text: String) -> String {
        do {
            _ = try load(text)
            return "loaded"
        } catch {
            return "\(error)"
        }
    }

    @Test func anUnknownKeyIsRefusedWithItsLine() {
        let cases: [(String, String)] = [
            ("listen: 127.0.0.1:0\nallowed_host: [x]\n", ":2: leasehold.yaml: unknown key \"allowed_host\""),
            (
                "worker_host_ids:\n  first: 100000\n  count: 10\n  last: 2\n",
                ":4: worker_host_ids: unknown key \"last\""
            ),
            (
                "tenant_limits:\n  sessions: 3\n  worker_max_liv: 2\n",
                ":3: tenant_limits: unknown key \"worker_max_liv\""
            ),
            (
                "tenant_limits:\n  tenants:\n    acme:\n      sesions: 5\n",
                ":4: tenant_limits.tenants.acme: unknown key \"sesions\""
            ),
            ("http:\n  header_timout_seconds: 5\n", ":2: http: unknown key \"header_timout_seconds\""),
            ("metrics:\n  per_tenant_label: true\n", ":2: metrics: unknown key \"per_tenant_label\""),
            (
                "oauth:\n  issuers:\n    - issuer: x\n      audience: a\n      jwks_fil: f\n",
                ":5: oauth.issuers[]: unknown key \"jwks_fil\""
            ),
        ]
        for (text, expected) in cases {
            let message = refusal(text)
            #expect(message.contains(".yaml" + expected), "\(message)")
        }
    }

    @Test func everyKnownKeyAndTheServersOfOtherReadersLoad() throws {
        let (config, _) = try load(
            """
            listen: 127.0.0.1:0
            allowed_hosts: [leasehold.example]
            worker_max_live: 8
            worker_host_ids: {first: 100000, count: 10}
            tenant_limits:
              calls_in_flight: 4
              tenants:
                acme: {sessions: 5}
            servers: []
            """)
        #expect(config.allowedHosts == ["leasehold.example"] && config.maximumLiveWorkers == 8)
        #expect(config.workerHostIDs?.count == 10 && config.tenantLimits?.tenants?["acme"]?.sessions == 5)
        #expect(LeaseholdConfig.CodingKeys.allCases.count + LeaseholdConfig.otherKeys.count > 30)
    }
}
