#if canImport(Glibc)
    import Glibc
#endif

/// Glob matching for .gitignore rules and repo.search include/exclude, on top of glibc fnmatch(3).
/// fnmatch has no `**`, so a pattern with slashes is matched segment by segment here and `**`
/// spans any number of whole segments (gitignore(5) semantics).
struct Glob {
    /// Pattern segments, split at `/`.
    let segments: [[CChar]]
    /// The pattern had a slash (other than a trailing one): it matches the whole relative path,
    /// not just the final name.
    let anchored: Bool

    /// `pattern` without a trailing `/`; a leading `/` only anchors.
    init(_ pattern: String) {
        var text = Substring(pattern)
        var anchored = false
        if text.hasPrefix("/") {
            anchored = true
            text = text.dropFirst()
        }
        if text.contains("/") { anchored = true }
        self.anchored = anchored
        segments = text.split(separator: "/", omittingEmptySubsequences: true).map { Array(String($0).utf8CString) }
    }

    /// Whether `path` (segments relative to the pattern's base) matches; `name` is its last segment.
    func matches(path: [[CChar]]) -> Bool {
        guard let name = path.last else { return false }
        if !anchored {
            guard let only = segments.first else { return false }
            return Glob.fnmatchSegment(only, name)
        }
        return Glob.match(segments[...], path[...])
    }

    private static func match(_ pattern: ArraySlice<[CChar]>, _ path: ArraySlice<[CChar]>) -> Bool {
        guard let first = pattern.first else { return path.isEmpty }
        if first == Array("**".utf8CString) {
            let rest = pattern.dropFirst()
            // `**` at the end matches everything below (at least one segment: "a/**" is not "a").
            if rest.isEmpty { return !path.isEmpty }
            var tail = path
            while true {
                if match(rest, tail) { return true }
                if tail.isEmpty { return false }
                tail = tail.dropFirst()
            }
        }
        guard let segment = path.first, fnmatchSegment(first, segment) else { return false }
        return match(pattern.dropFirst(), path.dropFirst())
    }

    static func fnmatchSegment(_ pattern: [CChar], _ name: [CChar]) -> Bool {
        pattern.withUnsafeBufferPointer { p in
            name.withUnsafeBufferPointer { n in fnmatch(p.baseAddress!, n.baseAddress!, 0) == 0 }
        }
    }
}
