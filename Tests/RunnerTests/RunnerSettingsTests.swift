import Foundation
import Sandbox
import Testing
import Yams

@testable import Runner

/// `leasehold.yaml` resolved into ``RunnerSettings``: every default, every key in its place, every
/// value out of range refused with its message, and the flags over the file.
@Suite struct RunnerSettingsTests {
    private func resolve(_ yaml: String, otlpEndpoint: String? = nil) throws -> RunnerSettings {
        try RunnerSettings(try YAMLDecoder().decode(LeaseholdConfig.self, from: yaml), otlpEndpoint: otlpEndpoint)
    }

    @Test func anEmptyFileIsEveryDefault() throws {
        let settings = try RunnerSettings(LeaseholdConfig())
        #expect(settings == RunnerSettings.defaults)
        #expect(try resolve("{}") == RunnerSettings.defaults)
    }

    @Test func eachDefault() {
        let d = RunnerSettings.defaults
        #expect(d.listen == "127.0.0.1:8080")
        #expect(
            d.claims
                == ClaimPolicy(
                    issuer: "leasehold", audience: "leasehold", maximumLifetime: .seconds(900), clockSkew: .seconds(30))
        )
        #expect(d.keysFile == nil && d.keysFile(stateDirectory: "/s") == "/s/keys.json")
        #expect(d.workspaceBases == nil && d.workspaceBases(stateDirectory: "/s") == ["/s-workspaces"])
        #expect(d.http.allowedOrigins.isEmpty && d.http.allowedHosts.isEmpty)
        #expect(d.http.headerTimeout == .seconds(10) && d.http.bodyTimeout == .seconds(30))
        #expect(d.http.keepAliveTimeout == .seconds(75) && d.http.idleTimeout == .seconds(3600))
        #expect(d.http.maximumConnections == 4096 && d.http.maximumConnectionsPerAddress == 256)
        #expect(d.http.maximumHeaderBytes == 32768 && d.http.maximumHeaderFields == 100)
        #expect(d.http.maximumBodyBytes == 4_194_304 && d.http.maximumSSEStreamsPerSession == 4)
        let pool = d.workers.pool
        #expect(pool.idleTimeout == .seconds(300) && pool.spareIdleTimeout == .seconds(60))
        #expect(pool.sparesPerSession == 2 && pool.maximumSpares == 16)
        #expect(pool.maximumCallsPerSession == 8 && pool.maximumWorkers == 512)
        #expect(
            pool.shares.standard == TenantShares.Caps(workers: 128, callsInFlight: 64) && pool.shares.overrides.isEmpty)
        #expect(d.workers.cgroups && d.workers.executable == nil)
        #expect(d.workers.firstHostID == 2_000_000_000 && d.workers.hostIDCount == 65_536)
        #expect(d.audit.checkpoints == AuditCheckpointPolicy(records: 256, interval: .seconds(5)))
        #expect(d.audit.batchedSyncInterval == .milliseconds(5))
        #expect(d.audit.unauthenticatedRefusals == RefusalSampling(interval: .seconds(10), maximumSources: 256))
        #expect(d.audit.reserveBytes == 64 << 20)
        #expect(d.tenants.sessions == TenantSessionLimits(standard: 10_000))
        #expect(d.tenants.disk == DiskQuotas(standard: DiskQuotas.defaultLimits))
        #expect(
            d.tenants.disk.standard.tenant.bytes == 10_240 << 20 && d.tenants.disk.standard.tenant.files == 1_000_000)
        #expect(d.policyReloadInterval == .seconds(2))
        #expect(d.nodeID == nil && d.otlpEndpoint == nil && d.oauth == OAuthConfig())
        #expect(d.metrics.listen == nil && !d.metrics.perTenantLabels)
    }

    @Test func everyKeyLandsInItsPlace() throws {
        let settings = try resolve(
            """
            listen: 0.0.0.0:9000
            issuer: iss
            audience: aud
            claim_max_lifetime_seconds: 600
            clock_skew_seconds: 5
            keys_file: /k.json
            allowed_origins: [https://a.example]
            allowed_hosts: [a.example]
            policy_reload_interval_seconds: 7
            node_id: node-a
            workspace_bases: [/w]
            worker_executable: /bin/w
            worker_idle_timeout_seconds: 30
            worker_max_calls_per_session: 3
            worker_max_live: 40
            worker_max_spares: 4
            worker_spares_per_session: 1
            worker_spare_idle_timeout_seconds: 9
            worker_host_ids: {first: 100000, count: 10}
            worker_cgroups: "off"
            audit_checkpoint_records: 10
            audit_checkpoint_seconds: 2
            audit_batched_sync_ms: 20
            audit_unauthenticated_interval_seconds: 3
            audit_unauthenticated_sources: 7
            audit_reserve_mib: 0
            http: {max_body_bytes: 2048, header_timeout_seconds: 1.5}
            tenant_limits:
              worker_max_live: 8
              calls_in_flight: 9
              sessions: 11
              disk_mib: 12
              tenants: {acme: {sessions: 13, worker_max_live: 20}}
            metrics: {listen: 127.0.0.1:9464, per_tenant_labels: true}
            otlp_endpoint: http://collector:4318
            """)
        #expect(settings.listen == "0.0.0.0:9000")
        #expect(
            settings.claims
                == ClaimPolicy(issuer: "iss", audience: "aud", maximumLifetime: .seconds(600), clockSkew: .seconds(5)))
        #expect(settings.keysFile(stateDirectory: "/s") == "/k.json")
        #expect(settings.http.allowedOrigins == ["https://a.example"] && settings.http.allowedHosts == ["a.example"])
        #expect(settings.http.maximumBodyBytes == 2048 && settings.http.headerTimeout == .milliseconds(1500))
        #expect(settings.policyReloadInterval == .seconds(7))
        #expect(settings.nodeID == "node-a" && settings.workspaceBases(stateDirectory: "/s") == ["/w"])
        #expect(settings.workers.executable == "/bin/w" && !settings.workers.cgroups)
        #expect(settings.workers.firstHostID == 100_000 && settings.workers.hostIDCount == 10)
        let pool = settings.workers.pool
        #expect(pool.idleTimeout == .seconds(30) && pool.maximumCallsPerSession == 3 && pool.maximumWorkers == 40)
        #expect(pool.maximumSpares == 4 && pool.sparesPerSession == 1 && pool.spareIdleTimeout == .seconds(9))
        #expect(pool.shares.standard == TenantShares.Caps(workers: 8, callsInFlight: 9))
        #expect(pool.shares.overrides["acme"] == TenantShares.Caps(workers: 20, callsInFlight: 9))
        #expect(settings.audit.checkpoints == AuditCheckpointPolicy(records: 10, interval: .seconds(2)))
        #expect(settings.audit.batchedSyncInterval == .milliseconds(20))
        #expect(settings.audit.unauthenticatedRefusals == RefusalSampling(interval: .seconds(3), maximumSources: 7))
        #expect(settings.audit.reserveBytes == 0)
        #expect(settings.tenants.sessions == TenantSessionLimits(standard: 11, overrides: ["acme": 13]))
        #expect(settings.tenants.disk.standard.tenant.bytes == 12 << 20)
        #expect(settings.metrics.listen == "127.0.0.1:9464" && settings.metrics.perTenantLabels)
        #expect(settings.otlpEndpoint == "http://collector:4318")
    }

    @Test func aZeroReloadIntervalMeansOnlyOnSighup() throws {
        #expect(try resolve("policy_reload_interval_seconds: 0").policyReloadInterval == nil)
    }

    @Test func eachValueOutOfRangeIsRefusedWithItsMessage() {
        let cases: [(String, String)] = [
            ("worker_cgroups: maybe", "worker_cgroups is \"maybe\"; use auto or off"),
            ("audit_batched_sync_ms: 0", "audit_batched_sync_ms must be between 1 and 1000, not 0"),
            ("audit_checkpoint_records: 0", "audit_checkpoint_records must be between 1 and 1000000, not 0"),
            ("audit_checkpoint_seconds: 3601", "audit_checkpoint_seconds must be between 1 and 3600, not 3601"),
            (
                "audit_unauthenticated_interval_seconds: 0",
                "audit_unauthenticated_interval_seconds must be between 1 and 3600, not 0"
            ),
            ("audit_unauthenticated_sources: 0", "audit_unauthenticated_sources must be between 1 and 1000000, not 0"),
            ("audit_reserve_mib: -1", "audit_reserve_mib must be between 0 and 65536, not -1"),
            ("worker_max_spares: 4097", "worker_max_spares must be between 0 and 4096, not 4097"),
            ("worker_spares_per_session: 9", "worker_spares_per_session must be between 0 and 8, not 9"),
            (
                "worker_spare_idle_timeout_seconds: 0",
                "worker_spare_idle_timeout_seconds must be between 1 and 3600, not 0"
            ),
            ("http: {max_body_bytes: 10}", "http.max_body_bytes must be between 1024 and 1073741824, not 10"),
            (
                "http: {header_timeout_seconds: 0}",
                "http.header_timeout_seconds must be between 0.1 and 3600.0 seconds, not 0.0"
            ),
            (
                "worker_max_live: 10\ntenant_limits: {worker_max_live: 11}",
                "tenant_limits worker_max_live must be between 1 and worker_max_live (10), not 11"
            ),
            (
                "tenant_limits: {calls_in_flight: 0}",
                "tenant_limits calls_in_flight must be between 1 and 100000, not 0"
            ),
            ("tenant_limits: {sessions: 0}", "tenant_limits sessions must be between 1 and 1000000, not 0"),
            ("tenant_limits: {disk_mib: 0}", "tenant_limits disk_mib must be between 1 and 1073741824, not 0"),
            (
                "tenant_limits: {tenants: {acme: {workspace_disk_files: 0}}}",
                "tenant_limits.tenants.acme workspace_disk_files must be between 1 and 1000000000, not 0"
            ),
            (
                "tenant_limits: {tenants: {'no way': {sessions: 2}}}",
                "tenant_limits.tenants names \"no way\", which is not a tenant id"
            ),
        ]
        for (yaml, message) in cases {
            #expect(throws: ConfigError.self, "\(yaml)") { _ = try resolve(yaml) }
            do {
                _ = try resolve(yaml)
            } catch {
                #expect("\(error)" == message, "\(yaml)")
            }
        }
    }

    @Test func flagsOverTheFile() throws {
        let file = try resolve(
            "listen: 127.0.0.1:9000\nmetrics: {listen: 127.0.0.1:9464}\notlp_endpoint: http://file:4318\nhttp: {max_body_bytes: 2048}"
        )
        // Without flags, the file.
        let http = try file.httpSettings()
        #expect(http.host == "127.0.0.1" && http.port == 9000 && http.maximumBodyBytes == 2048)
        let metrics = try #require(try file.metricsListen())
        #expect(metrics.host == "127.0.0.1" && metrics.port == 9464)
        #expect(file.otlpEndpoint == "http://file:4318")
        // `--http`, `--metrics`, `--otlp-endpoint` over it; the file's bounds stay.
        let flagged = try file.httpSettings(listen: "[::1]:7000")
        #expect(flagged.host == "::1" && flagged.port == 7000 && flagged.maximumBodyBytes == 2048)
        let metricsFlag = try #require(try file.metricsListen("0.0.0.0:1"))
        #expect(metricsFlag.host == "0.0.0.0" && metricsFlag.port == 1)
        let traced = try resolve("otlp_endpoint: http://file:4318", otlpEndpoint: "http://flag:4318")
        #expect(traced.otlpEndpoint == "http://flag:4318")
        // Neither: the defaults.
        let none = try resolve("{}")
        #expect(try none.httpSettings().port == 8080 && none.otlpEndpoint == nil)
        #expect(try none.metricsListen() == nil)
        #expect(throws: ConfigError.self) { try none.httpSettings(listen: "no-port") }
    }
}
