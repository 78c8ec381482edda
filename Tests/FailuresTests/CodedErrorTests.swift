import Failures
import Testing

/// A code set of two, as a module would declare its own.
struct SampleCode: ErrorCode {
    let rawValue: String
    private init(_ rawValue: String) { self.rawValue = rawValue }

    static let storeDown = SampleCode("store_down")
    static let outer = SampleCode("outer")
    static let allCases: [SampleCode] = [.storeDown, .outer]
}

typealias SampleError = CodedError<SampleCode>

/// What a database says: a path and a value a client must never read.
struct DatabaseFailure: Error, Sendable, CustomStringConvertible {
    let sqlState = "23505"
    var description: String { "duplicate key value (tenant)=(acme-secret) in /srv/state/leasehold.sqlite" }
}

@Suite struct CodedErrorTests {
    @Test func theCauseIsNeverInWhatAClientReads() {
        let error = SampleError(.storeDown, "the store cannot be written", cause: DatabaseFailure())
        #expect(error.description == "store_down: the store cannot be written")
        #expect(!error.description.contains("acme-secret") && !error.message.contains("/srv"))
        #expect("\(error)" == error.description, "interpolation is the client's form")
    }

    @Test func theLogFormCarriesTheCause() {
        let error = SampleError(.storeDown, "the store cannot be written", cause: DatabaseFailure())
        #expect(error.logDescription.hasPrefix("store_down: the store cannot be written (cause: "))
        #expect(error.logDescription.contains("(tenant)=(acme-secret) in /srv/state/leasehold.sqlite"))
        #expect(SampleError(.storeDown, "no cause").logDescription == "store_down: no cause")
    }

    @Test func equalityAndHashIgnoreTheCause() {
        let with = SampleError(.storeDown, "the store cannot be written", cause: DatabaseFailure())
        let without = SampleError(.storeDown, "the store cannot be written")
        #expect(with == without)
        #expect(Set([with, without]).count == 1)
        #expect(with != SampleError(.outer, "the store cannot be written"))
        #expect(with != SampleError(.storeDown, "another sentence"))
    }

    @Test func theCauseIsKeptItselfForCodeThatReadsIt() {
        let caught: any Error = DatabaseFailure()
        let kept = SampleError(.storeDown, "x", cause: caught)
        #expect((kept.cause?.error as? DatabaseFailure)?.sqlState == "23505")
        #expect(kept.cause?.description == DatabaseFailure().description)
        #expect(SampleError(.storeDown, "x").cause == nil)
    }

    @Test func aChainReachesTheLogWhole() {
        let inner = SampleError(.storeDown, "the store cannot be read", cause: DatabaseFailure())
        let outer = SampleError(.outer, "the session store is unavailable", cause: inner)
        #expect(outer.description == "outer: the session store is unavailable")
        #expect(outer.logDescription.contains("store_down: the store cannot be read (cause: duplicate key"))
    }

    @Test func codesAreTheirWireForm() {
        #expect(SampleCode.storeDown.description == "store_down")
        #expect(SampleCode.allCases.map(\.rawValue) == ["store_down", "outer"])
    }
}
