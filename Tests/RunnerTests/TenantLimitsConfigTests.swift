import Foundation
import Sandbox
import Testing
import Yams

@testable import Runner

/// `tenant_limits` is operator input: read exactly, and a bad value stops `serve`.
@Suite struct TenantLimitsConfigTests {
    func config(_ yaml: String) throws -> LeaseholdConfig {
        try YAMLDecoder().decode(LeaseholdConfig.self, from: yaml)
    }

    @Test func defaultsAndOverridesAreRead() throws {
        let defaults = try LeaseholdConfig().tenantShares()
        #expect(defaults.standard == .init(workers: 128, callsInFlight: 64))
        let shares = try config(
            """
            worker_max_live: 40
            tenant_limits:
              calls_in_flight: 5
              tenants:
                big: {worker_max_live: 40}
            """
        ).tenantShares()
        #expect(shares.standard == .init(workers: 10, callsInFlight: 5))
        #expect(shares.caps("big") == .init(workers: 40, callsInFlight: 5))
        #expect(shares.caps("other") == shares.standard)
    }

    @Test func badValuesAreRefused() throws {
        for bad in [
            "tenant_limits: {worker_max_live: 0}", "tenant_limits: {calls_in_flight: -1}",
            "worker_max_live: 8\ntenant_limits: {worker_max_live: 9}",
            "tenant_limits: {tenants: {'../etc': {worker_max_live: 1}}}",
            "tenant_limits: {tenants: {acme: {calls_in_flight: 0}}}",
        ] {
            #expect(throws: ConfigError.self, "\(bad)") { _ = try config(bad).tenantShares() }
        }
    }

    @Test func sessionCapsAreReadAndBounded() throws {
        #expect(try LeaseholdConfig().tenantSessionLimits() == TenantSessionLimits(standard: 10_000))
        let limits = try config("tenant_limits:\n  sessions: 50\n  tenants:\n    big: {sessions: 5000}\n    w: {worker_max_live: 2}\n")
            .tenantSessionLimits()
        #expect(limits.limit(for: "big") == 5000)
        #expect(limits.limit(for: "w") == 50, "an override without sessions keeps the standard cap")
        #expect(limits.limit(for: "other") == 50)
        for bad in [
            "tenant_limits: {sessions: 0}", "tenant_limits: {sessions: 1000001}",
            "tenant_limits: {tenants: {acme: {sessions: -3}}}", "tenant_limits: {tenants: {'a b': {sessions: 3}}}",
        ] {
            #expect(throws: ConfigError.self, "\(bad)") { _ = try config(bad).tenantSessionLimits() }
        }
    }
}
