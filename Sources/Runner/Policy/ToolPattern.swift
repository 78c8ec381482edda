/// A tool pattern: an exact name, or a name with `*` wildcards (`repo.*`, `kb.support_*`, `*`).
///
/// `*` matches any run of characters, dots included. Matching is case-sensitive and byte-wise.
/// Written by hand (rather than with a glob or regex library) because the language is just
/// literal bytes and `*`, and `tools/list` over 10,000 tools must match in microseconds.
public struct ToolPattern: Hashable, Sendable, CustomStringConvertible {
    /// The pattern as written.
    public let text: String
    private let segments: [[UInt8]]
    private let anchoredStart: Bool
    private let anchoredEnd: Bool
    /// True when the pattern has no wildcard.
    public let isExact: Bool

    /// Parses a pattern; nil when it has characters outside `[A-Za-z0-9_.*-]` or is empty/too long.
    public init?(_ text: String) {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.count <= ToolName.maximumLength else { return nil }
        guard bytes.allSatisfy({ ToolName.isNameByte($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "*") })
        else { return nil }
        self.text = text
        self.anchoredStart = bytes.first != UInt8(ascii: "*")
        self.anchoredEnd = bytes.last != UInt8(ascii: "*")
        self.isExact = !bytes.contains(UInt8(ascii: "*"))
        self.segments = bytes.split(separator: UInt8(ascii: "*"), omittingEmptySubsequences: true).map(Array.init)
    }

    /// How specific the pattern is: exact beats wildcard, then more literal bytes win.
    public var specificity: Specificity { Specificity(exact: isExact, literals: literalLength) }

    /// Orders patterns for "most specific pattern wins".
    public struct Specificity: Comparable, Hashable, Sendable {
        let exact: Bool
        let literals: Int
        public static func < (lhs: Self, rhs: Self) -> Bool {
            (lhs.exact ? 1 : 0, lhs.literals) < (rhs.exact ? 1 : 0, rhs.literals)
        }
    }

    /// A name both patterns match, or nil when no name matches both.
    ///
    /// A breadth-first search over pairs of positions in the two patterns (each `*` may absorb
    /// any byte or nothing), so it finds a shortest common name; patterns are at most 128 bytes,
    /// so there are at most 129 x 129 states. Written by hand: no library intersects globs.
    public func overlap(with other: ToolPattern) -> String? {
        let a = Array(text.utf8)
        let b = Array(other.text.utf8)
        let star = UInt8(ascii: "*")
        struct State: Hashable {
            let i: Int
            let j: Int
        }
        // Every `*` may match nothing: close a state over skipping stars.
        func closure(_ state: State) -> [State] {
            var result = [state]
            var index = 0
            while index < result.count {
                let s = result[index]
                if s.i < a.count, a[s.i] == star { result.append(State(i: s.i + 1, j: s.j)) }
                if s.j < b.count, b[s.j] == star { result.append(State(i: s.i, j: s.j + 1)) }
                index += 1
            }
            return result
        }
        // Bytes worth trying: every literal in either pattern, plus one name byte in neither.
        var alphabet = Set(a + b)
        alphabet.remove(star)
        if let spare = Array("abcdefghijklmnopqrstuvwxyz0123456789".utf8).first(where: { !alphabet.contains($0) }) {
            alphabet.insert(spare)
        }
        let start = State(i: 0, j: 0)
        var parent: [State: (State, UInt8)] = [:]
        var visited: Set<State> = []
        var queue: [State] = []
        for s in closure(start) where visited.insert(s).inserted { queue.append(s) }
        var head = 0
        while head < queue.count {
            let state = queue[head]
            head += 1
            if state.i == a.count && state.j == b.count {
                var bytes: [UInt8] = []
                var cursor = state
                while let (previous, byte) = parent[cursor] {
                    if byte != 0 { bytes.append(byte) }
                    cursor = previous
                }
                return String(decoding: bytes.reversed(), as: UTF8.self)
            }
            for byte in alphabet.sorted() {
                var nextI: [Int] = []
                if state.i < a.count {
                    if a[state.i] == star {
                        nextI.append(state.i)
                    } else if a[state.i] == byte {
                        nextI.append(state.i + 1)
                    }
                }
                var nextJ: [Int] = []
                if state.j < b.count {
                    if b[state.j] == star {
                        nextJ.append(state.j)
                    } else if b[state.j] == byte {
                        nextJ.append(state.j + 1)
                    }
                }
                for i in nextI {
                    for j in nextJ {
                        for next in closure(State(i: i, j: j)) where visited.insert(next).inserted {
                            parent[next] = (state, byte)
                            queue.append(next)
                        }
                    }
                }
            }
            // Epsilon moves recorded with byte 0 so the witness skips them.
            for next in closure(state) where visited.insert(next).inserted {
                parent[next] = (state, 0)
                queue.append(next)
            }
        }
        return nil
    }

    /// The number of literal (non-`*`) bytes: the "most specific pattern wins" measure.
    public var literalLength: Int { segments.reduce(0) { $0 + $1.count } }

    /// True when `name` matches the pattern.
    public func matches(_ name: String) -> Bool {
        var name = name
        return name.withUTF8 { matches(bytes: $0) }
    }

    /// Byte-level matcher: anchored first and last segments, greedy-leftmost for the middle ones
    /// (correct for `*`-only globs because every `*` can absorb any run).
    func matches(bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        if segments.isEmpty { return !anchoredStart || bytes.isEmpty ? true : false }
        var position = 0
        var end = bytes.count
        var remaining = segments[...]
        if anchoredStart {
            let first = remaining.removeFirst()
            guard Self.hasPrefix(bytes, first, at: 0) else { return false }
            position = first.count
            if remaining.isEmpty && anchoredEnd { return position == bytes.count }
        }
        if anchoredEnd, let last = remaining.last {
            remaining.removeLast()
            guard end - last.count >= position, Self.hasPrefix(bytes, last, at: end - last.count) else { return false }
            end -= last.count
        }
        for segment in remaining {
            guard let found = Self.find(segment, in: bytes, from: position, to: end) else { return false }
            position = found + segment.count
        }
        return position <= end
    }

    private static func hasPrefix(_ bytes: UnsafeBufferPointer<UInt8>, _ segment: [UInt8], at offset: Int) -> Bool {
        guard offset >= 0, offset + segment.count <= bytes.count else { return false }
        for index in 0..<segment.count where bytes[offset + index] != segment[index] { return false }
        return true
    }

    private static func find(_ segment: [UInt8], in bytes: UnsafeBufferPointer<UInt8>, from: Int, to: Int) -> Int? {
        guard to - from >= segment.count else { return nil }
        var start = from
        while start + segment.count <= to {
            if hasPrefix(bytes, segment, at: start) { return start }
            start += 1
        }
        return nil
    }

    /// The pattern as written.
    public var description: String { text }
}

/// A compiled list of patterns: exact names in a hash set, wildcard patterns checked in order.
public struct PatternSet: Hashable, Sendable {
    /// The patterns as given.
    public let patterns: [ToolPattern]
    private let exact: [String: ToolPattern]
    private let wildcards: [ToolPattern]

    /// Compiles patterns.
    public init(_ patterns: [ToolPattern]) {
        self.patterns = patterns
        var exact: [String: ToolPattern] = [:]
        var wildcards: [ToolPattern] = []
        for pattern in patterns {
            if pattern.isExact { exact[pattern.text] = pattern } else { wildcards.append(pattern) }
        }
        self.exact = exact
        self.wildcards = wildcards
    }

    /// Parses pattern strings; throws naming the first bad one.
    public init(parsing texts: [String]) throws(PatternError) {
        var patterns: [ToolPattern] = []
        for text in texts {
            guard let pattern = ToolPattern(text) else { throw PatternError(pattern: text) }
            patterns.append(pattern)
        }
        self.init(patterns)
    }

    /// The first pattern matching `name`, exact ones first.
    public func firstMatch(_ name: String) -> ToolPattern? {
        if let hit = exact[name] { return hit }
        var name = name
        return name.withUTF8 { bytes in wildcards.first { $0.matches(bytes: bytes) } }
    }
}

/// A pattern with characters outside `[A-Za-z0-9_.*-]`, empty, or too long.
public struct PatternError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The offending pattern.
    public let pattern: String
    /// A sentence naming it.
    public var description: String {
        "invalid tool pattern \"\(pattern)\": use 1-128 characters of [A-Za-z0-9_.-] and * wildcards"
    }
}
