// libFuzzer target: tool patterns (Sources/Runner/Policy/ToolPattern.swift), read from policy
// files, session allow/deny lists and claims. The input is lines: patterns, then after an empty
// line tool names. A pattern parses or is nil; a set's first match must be a pattern that matches.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzToolPattern(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    let parts = text.split(separator: "\n", omittingEmptySubsequences: false)
    let blank = parts.firstIndex(of: "") ?? parts.count
    let patterns = parts[0..<blank].compactMap { ToolPattern(String($0)) }
    let names = parts[min(blank + 1, parts.count)...].map(String.init)
    let set = PatternSet(patterns)
    for name in names {
        let matching = patterns.filter { $0.matches(name) }
        let first = set.firstMatch(name)
        if let first {
            guard first.matches(name) else { fatalError("firstMatch returned a pattern that does not match") }
        } else {
            guard matching.isEmpty else { fatalError("firstMatch missed a matching pattern") }
        }
    }
    _ = try? PatternSet(parsing: parts.map(String.init))
    return 0
}
