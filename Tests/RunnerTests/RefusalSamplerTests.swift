import Foundation
import Testing

@testable import Runner

/// Unauthenticated refusals are counted per source and interval (issue 14, finding 5); refusals of
/// a verified claim stay one record each.
@Suite(.timeLimit(.minutes(1))) struct RefusalSamplerTests {
    private let start = Date(timeIntervalSince1970: 1_700_000_000)

    @Test func aSourcesFirstRefusalIsRecordedAndTheRestCounted() {
        var sampler = RefusalSampler(maximumSources: 8)
        #expect(sampler.refused(source: "198.51.100.7", code: "claim_missing", at: start) == .record)
        for offset in 1..<1000 {
            let code = offset.isMultiple(of: 2) ? "claim_missing" : "claim_invalid"
            #expect(
                sampler.refused(source: "198.51.100.7", code: code, at: start.addingTimeInterval(Double(offset)))
                    == .count)
        }
        // Another source has a first of its own.
        #expect(sampler.refused(source: "203.0.113.9", code: "claim_expired", at: start) == .record)

        let aggregates = sampler.drain()
        #expect(aggregates.count == 1, "a source with only its first refusal needs no aggregate")
        let aggregate = try! #require(aggregates.first)
        #expect(aggregate.source == "198.51.100.7")
        #expect(aggregate.tally.count == 999)
        #expect(aggregate.tally.codes == ["claim_missing": 499, "claim_invalid": 500])
        #expect(aggregate.tally.first == start.addingTimeInterval(1))
        #expect(aggregate.tally.last == start.addingTimeInterval(999))
        #expect(sampler.isEmpty)
        // A new interval: each source's next refusal is written again.
        #expect(sampler.refused(source: "198.51.100.7", code: "claim_missing", at: start) == .record)
        #expect(sampler.drain().isEmpty)
    }

    @Test func theMapOfSourcesIsBoundedAndTheRestShareOneTally() {
        var sampler = RefusalSampler(maximumSources: 2)
        #expect(sampler.refused(source: "a", code: "claim_missing", at: start) == .record)
        #expect(sampler.refused(source: "b", code: "claim_missing", at: start) == .record)
        // Every further source is only counted, together, however many there are.
        for index in 0..<10_000 {
            #expect(sampler.refused(source: "x\(index)", code: "claim_invalid", at: start) == .count)
        }
        #expect(sampler.sources.count == 2)
        #expect(sampler.refused(source: "a", code: "claim_missing", at: start) == .count)
        let aggregates = sampler.drain()
        #expect(aggregates.map(\.source) == ["a", RefusalSampler.overflowSource])
        #expect(aggregates.map(\.tally.count) == [1, 10_000])
        #expect(aggregates.last?.tally.codes == ["claim_invalid": 10_000])
    }

    @Test func theAggregateRecordCarriesSourceCountCodesAndTimes() throws {
        let refusals = UnauthenticatedRefusals(RefusalSampling(interval: .seconds(10), maximumSources: 4))
        _ = refusals.refused(source: "stdio", code: "claim_missing", at: start)
        _ = refusals.refused(source: "stdio", code: "claim_missing", at: start.addingTimeInterval(1))
        _ = refusals.refused(source: "stdio", code: "claim_invalid", at: start.addingTimeInterval(2))
        let aggregate = try #require(refusals.drain().first)
        let event = refusals.event(for: aggregate)
        #expect(event.event == "request.refused.sampled")
        #expect(event.decision == "refused")
        let detail = try #require(event.detail)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(detail.utf8)) as? [String: Any])
        #expect(object["source"] as? String == "stdio")
        #expect(object["count"] as? Int == 2)
        #expect(object["codes"] as? [String: Int] == ["claim_missing": 1, "claim_invalid": 1])
        #expect(object["interval_seconds"] as? Int == 10)
        #expect((object["first"] as? String)?.hasPrefix("2023-11-14T22:13:21") == true)
        #expect((object["last"] as? String)?.hasPrefix("2023-11-14T22:13:22") == true)
    }

    /// Through the gateway: 200 refusals without a verified claim from one source are one record
    /// at once and one at the interval's end; 5 refusals of a verified claim are 5 records.
    @Test func theGatewaySamplesUnauthenticatedRefusalsAndRecordsAuthenticatedOnes() async throws {
        let fixture = try await GatewayFixture()
        let gateway = fixture.gateway
        func events() throws -> [AuditEvent] {
            try gateway.audit.records(limit: 10_000).compactMap(\.event).filter {
                $0.event.hasPrefix("request.refused")
            }
        }
        for index in 0..<200 {
            let token: String? = index.isMultiple(of: 2) ? nil : "not-a-jwt-\(index)"
            #expect(
                await Refusal.Code.of {
                    _ = try await gateway.authenticate(
                        token: token, connectionID: "c\(index)", source: "198.51.100.7")
                } != nil)
        }
        var recorded = try events()
        #expect(recorded.map(\.event) == ["request.refused"])
        #expect(recorded.first?.detail?.hasPrefix("from 198.51.100.7: ") == true)

        await gateway.flushRefusalSamples()
        recorded = try events()
        #expect(recorded.map(\.event) == ["request.refused", "request.refused.sampled"])
        let detail = try #require(recorded.last?.detail)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(detail.utf8)) as? [String: Any])
        #expect(object["source"] as? String == "198.51.100.7")
        #expect(object["count"] as? Int == 199)
        #expect(object["codes"] as? [String: Int] == ["claim_missing": 99, "claim_invalid": 100])
        // Nothing counted since: a flush writes nothing.
        await gateway.flushRefusalSamples()
        #expect(try events().count == 2)

        // A verified claim of a revoked session: every refusal is its own record, with its session.
        let (session, claim) = try await fixture.session()
        _ = try await fixture.admin.revokeSession(id: session.id, by: .operator)
        for index in 0..<5 {
            #expect(
                await Refusal.Code.of {
                    _ = try await gateway.authenticate(
                        token: claim, connectionID: "revoked\(index)", source: "198.51.100.7")
                } == "session_revoked")
        }
        let authenticated = try events().filter { $0.code == "session_revoked" }
        #expect(authenticated.count == 5)
        #expect(authenticated.allSatisfy { $0.session == session.id && $0.tenant == "acme" })
        await gateway.flushRefusalSamples()
        #expect(try events().count == 7)
    }
}
