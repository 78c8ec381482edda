import Testing

@testable import Sandbox

/// The spare bookkeeping on its own: bounds per key and per runner, least recently used first,
/// and every id handed out once.
@Suite struct SpareShelfTests {
    let t0 = ContinuousClock.now

    @Test func aKeyGetsAtMostItsShare() {
        var shelf = SpareShelf<String, ContinuousClock.Instant>(perKey: 2, maximum: 16)
        #expect(shelf.want("s1", at: t0) == .prepare(evicting: nil))
        #expect(shelf.want("s1", at: t0) == .prepare(evicting: nil))
        #expect(shelf.want("s1", at: t0) == .none, "two per key, ready or being confined")
        shelf.prepared("s1", id: "w1")
        #expect(shelf.want("s1", at: t0) == .none)
        #expect(shelf.take("s1") == "w1")
        #expect(shelf.want("s1", at: t0) == .prepare(evicting: nil), "taking one frees its place")
    }

    @Test func everyIdIsHandedOutOnceOldestFirst() {
        var shelf = SpareShelf<String, ContinuousClock.Instant>(perKey: 3, maximum: 16)
        for _ in 0..<3 { _ = shelf.want("s1", at: t0) }
        shelf.prepared("s1", id: "w1")
        shelf.prepared("s1", id: "w2")
        shelf.prepared("s1", id: nil)  // a preparation that failed
        #expect(shelf.take("s1") == "w1")
        #expect(shelf.take("s1") == "w2")
        #expect(shelf.take("s1") == nil)
        #expect(shelf.count == 0)
    }

    @Test func aKeyNeverTakesAnotherKeysSpare() {
        var shelf = SpareShelf<String, ContinuousClock.Instant>(perKey: 1, maximum: 16)
        _ = shelf.want("acme|s1", at: t0)
        shelf.prepared("acme|s1", id: "w1")
        #expect(shelf.take("globex|s2") == nil)
        #expect(shelf.take("acme|s1") == "w1")
    }

    @Test func theRunnerBoundEvictsTheLeastRecentlyUsedReadySpare() {
        var shelf = SpareShelf<String, ContinuousClock.Instant>(perKey: 2, maximum: 3)
        _ = shelf.want("s1", at: t0)
        _ = shelf.want("s1", at: t0)
        shelf.prepared("s1", id: "a1")
        shelf.prepared("s1", id: "a2")
        _ = shelf.want("s2", at: t0 + .seconds(1))
        shelf.prepared("s2", id: "b1")
        #expect(shelf.count == 3)
        // s3 is newest: s1 (asked at t0) gives up its oldest ready spare.
        #expect(shelf.want("s3", at: t0 + .seconds(2)) == .prepare(evicting: "a1"))
        #expect(shelf.count == 3)
        #expect(shelf.take("s1") == "a2", "the evicted spare is gone from the shelf")
        #expect(shelf.take("s1") == nil)
    }

    @Test func aFullShelfOfPreparationsOrOfTheKeysOwnSparesRefuses() {
        var shelf = SpareShelf<String, ContinuousClock.Instant>(perKey: 2, maximum: 1)
        _ = shelf.want("s1", at: t0)
        #expect(shelf.want("s2", at: t0 + .seconds(1)) == .none, "nothing ready to make room with")
        shelf.prepared("s1", id: "a1")
        #expect(shelf.want("s1", at: t0 + .seconds(2)) == .none, "a key never evicts its own spare")
        #expect(shelf.count == 1)
    }

    @Test func zeroTurnsSparesOff() {
        var off = SpareShelf<String, ContinuousClock.Instant>(perKey: 2, maximum: 0)
        #expect(off.want("s1", at: t0) == .none)
        var none = SpareShelf<String, ContinuousClock.Instant>(perKey: 0, maximum: 16)
        #expect(none.want("s1", at: t0) == .none)
    }

    @Test func aDiscardedSpareIsNeverHandedOut() {
        var shelf = SpareShelf<String, ContinuousClock.Instant>(perKey: 2, maximum: 16)
        _ = shelf.want("s1", at: t0)
        _ = shelf.want("s1", at: t0)
        shelf.prepared("s1", id: "w1")
        shelf.prepared("s1", id: "w2")
        shelf.discard("w1", of: "s1")
        #expect(shelf.take("s1") == "w2")
        #expect(shelf.take("s1") == nil)
        #expect(shelf.held(by: "s1") == 0 && !shelf.isPreparing("s1"))
    }
}
