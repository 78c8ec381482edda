/// A set of catalog tool indices, one bit per tool.
///
/// Scope resolution works on these rather than on names: each pattern's matches over the catalog
/// are computed once (``PatternMaskCache``), and a session's visible set is a handful of word-wide
/// AND/OR operations, so `tools/list` costs the same whether a session has 5 patterns or 50.
struct ToolBitSet: Hashable, Sendable {
    private(set) var words: [UInt64]
    /// The number of tools the set ranges over.
    let count: Int

    /// The empty set over `count` tools.
    init(count: Int) {
        self.count = count
        self.words = Array(repeating: 0, count: (count + 63) / 64)
    }

    /// Every tool of `count`.
    static func all(_ count: Int) -> ToolBitSet {
        var set = ToolBitSet(count: count)
        for index in set.words.indices { set.words[index] = ~0 }
        set.clearPadding()
        return set
    }

    func contains(_ index: Int) -> Bool {
        words[index >> 6] & (1 << UInt64(index & 63)) != 0
    }

    mutating func insert(_ index: Int) {
        words[index >> 6] |= 1 << UInt64(index & 63)
    }

    mutating func formUnion(_ other: ToolBitSet) {
        precondition(count == other.count, "bit sets over different catalogs")
        for index in words.indices { words[index] |= other.words[index] }
    }

    mutating func formIntersection(_ other: ToolBitSet) {
        precondition(count == other.count, "bit sets over different catalogs")
        for index in words.indices { words[index] &= other.words[index] }
    }

    /// The tools not in the set.
    var complement: ToolBitSet {
        var result = self
        for index in result.words.indices { result.words[index] = ~result.words[index] }
        result.clearPadding()
        return result
    }

    /// Calls `body` with each member, in increasing order.
    func forEach(_ body: (Int) -> Void) {
        for (wordIndex, word) in words.enumerated() {
            var remaining = word
            while remaining != 0 {
                body(wordIndex << 6 + remaining.trailingZeroBitCount)
                remaining &= remaining - 1
            }
        }
    }

    /// The number of members.
    var population: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }

    private mutating func clearPadding() {
        let used = count & 63
        if used != 0 { words[words.count - 1] &= (1 << UInt64(used)) - 1 }
    }
}
