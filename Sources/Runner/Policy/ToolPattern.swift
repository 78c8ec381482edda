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
