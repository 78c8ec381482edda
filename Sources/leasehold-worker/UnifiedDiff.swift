/// A parsed unified diff. The parser is hand-written because no well-kept Swift library parses
/// unified diffs; it accepts what `git diff` and `diff -u` emit: `diff --git` headers with
/// rename/new/deleted extended headers, plain `---`/`+++` pairs, `/dev/null` for creations and
/// deletions, `@@` hunks and `\ No newline at end of file` markers. Binary patches are refused.
struct UnifiedDiff {
    struct Line {
        enum Kind { case context, removed, added }
        let kind: Kind
        let text: [UInt8]
    }

    struct Hunk {
        let oldStart: Int
        let oldCount: Int
        let newStart: Int
        let newCount: Int
        var lines: [Line] = []
        /// The old side's last line has no newline at end of file.
        var oldNoNewline = false
        /// The new side's last line has no newline at end of file.
        var newNoNewline = false
    }

    struct FilePatch {
        /// nil: the file is created.
        var oldPath: String?
        /// nil: the file is deleted.
        var newPath: String?
        var hunks: [Hunk] = []
        var isRename = false
    }

    struct ParseError: Error {
        let message: String
    }

    var files: [FilePatch] = []

    init(_ text: [UInt8]) throws(ParseError) {
        var lines = text.split(separator: 0x0A, omittingEmptySubsequences: false).map(Array.init)
        if lines.last == [] { lines.removeLast() }
        var index = 0
        var current: FilePatch?
        var gitHeader = false
        var sawHeader = false  // current has ---/+++ or rename/new/deleted info

        func finish() {
            if let patch = current { files.append(patch) }
            current = nil
            gitHeader = false
            sawHeader = false
        }

        while index < lines.count {
            var line = lines[index]
            if line.last == 0x0D { line.removeLast() }
            if line.starts(with: Array("diff --git ".utf8)) {
                finish()
                let (a, b) = UnifiedDiff.gitHeaderPaths(Array(line.dropFirst(11)))
                current = FilePatch(oldPath: a, newPath: b)
                gitHeader = true
                index += 1
                continue
            }
            if line.starts(with: Array("--- ".utf8)), index + 1 < lines.count, lines[index + 1].starts(with: Array("+++ ".utf8)) {
                if current == nil || !gitHeader || sawHeader {
                    finish()
                    current = FilePatch()
                }
                var next = lines[index + 1]
                if next.last == 0x0D { next.removeLast() }
                let old = try UnifiedDiff.headerPath(Array(line.dropFirst(4)))
                let new = try UnifiedDiff.headerPath(Array(next.dropFirst(4)))
                current?.oldPath = old
                current?.newPath = new
                sawHeader = true
                index += 2
                continue
            }
            if gitHeader, current != nil, current!.hunks.isEmpty {
                let text = String(decoding: line, as: UTF8.self)
                if text.hasPrefix("rename from ") {
                    current!.oldPath = try UnifiedDiff.unquote(Array(line.dropFirst(12)))
                    current!.isRename = true
                } else if text.hasPrefix("rename to ") {
                    current!.newPath = try UnifiedDiff.unquote(Array(line.dropFirst(10)))
                    current!.isRename = true
                } else if text.hasPrefix("new file mode") {
                    current!.oldPath = nil
                } else if text.hasPrefix("deleted file mode") {
                    current!.newPath = nil
                } else if text.hasPrefix("GIT binary patch") || text.hasPrefix("Binary files") {
                    throw ParseError(message: "binary patches are not supported")
                }
            }
            if line.starts(with: Array("@@ ".utf8)) {
                guard current != nil else { throw ParseError(message: "line \(index + 1): hunk before any file header") }
                var hunk = try UnifiedDiff.hunkHeader(line, lineNumber: index + 1)
                index += 1
                var oldLeft = hunk.oldCount
                var newLeft = hunk.newCount
                while oldLeft > 0 || newLeft > 0 || (index < lines.count && lines[index].first == 0x5C) {
                    guard index < lines.count else {
                        throw ParseError(message: "line \(index + 1): hunk ends before its \(hunk.oldCount)/\(hunk.newCount) lines")
                    }
                    var body = lines[index]
                    if body.last == 0x0D && !(body.first == 0x5C) {
                        // Keep CR: a CRLF file's lines carry it in the file too.
                    }
                    index += 1
                    guard let marker = body.first else {
                        // An empty line inside a hunk: a context line whose trailing space was stripped.
                        body = [0x20]
                        guard oldLeft > 0, newLeft > 0 else { throw ParseError(message: "line \(index): hunk longer than its header says") }
                        hunk.lines.append(Line(kind: .context, text: []))
                        oldLeft -= 1
                        newLeft -= 1
                        continue
                    }
                    let rest = Array(body.dropFirst())
                    switch marker {
                    case 0x20:
                        guard oldLeft > 0, newLeft > 0 else { throw ParseError(message: "line \(index): hunk longer than its header says") }
                        hunk.lines.append(Line(kind: .context, text: rest))
                        oldLeft -= 1
                        newLeft -= 1
                    case 0x2D:
                        guard oldLeft > 0 else { throw ParseError(message: "line \(index): hunk longer than its header says") }
                        hunk.lines.append(Line(kind: .removed, text: rest))
                        oldLeft -= 1
                    case 0x2B:
                        guard newLeft > 0 else { throw ParseError(message: "line \(index): hunk longer than its header says") }
                        hunk.lines.append(Line(kind: .added, text: rest))
                        newLeft -= 1
                    case 0x5C:
                        // "\ No newline at end of file" applies to the line before it.
                        switch hunk.lines.last?.kind {
                        case .context?:
                            hunk.oldNoNewline = true
                            hunk.newNoNewline = true
                        case .removed?: hunk.oldNoNewline = true
                        case .added?: hunk.newNoNewline = true
                        case nil: break
                        }
                    default:
                        throw ParseError(message: "line \(index): unexpected line inside a hunk")
                    }
                }
                current!.hunks.append(hunk)
                continue
            }
            index += 1
        }
        finish()
        guard !files.isEmpty else { throw ParseError(message: "the patch holds no file changes") }
        for file in files where file.oldPath == nil && file.newPath == nil {
            _ = file
            throw ParseError(message: "a file patch names neither an old nor a new path")
        }
    }

    /// `a/x b/y` from a `diff --git` line (fallback paths for renames and mode-only changes).
    static func gitHeaderPaths(_ rest: [UInt8]) -> (String?, String?) {
        guard rest.starts(with: [0x61, 0x2F]) else { return (nil, nil) }
        // Paths may hold " b/" themselves: prefer the split whose two sides are equal.
        var splits: [Int] = []
        for index in 2..<max(2, rest.count - 2) where rest[index] == 0x20 && rest[index + 1] == 0x62 && rest[index + 2] == 0x2F {
            splits.append(index)
        }
        guard let fallback = splits.last else { return (nil, nil) }
        let chosen = splits.first { Array(rest[2..<$0]) == Array(rest[($0 + 3)...]) } ?? fallback
        return (String(decoding: rest[2..<chosen], as: UTF8.self), String(decoding: rest[(chosen + 3)...], as: UTF8.self))
    }

    /// A `---`/`+++` path: `/dev/null` is nil, a/ and b/ prefixes dropped, a trailing tab-separated
    /// timestamp dropped, C-quoted names unquoted.
    static func headerPath(_ raw: [UInt8]) throws(ParseError) -> String? {
        var bytes = raw
        if bytes.first != 0x22, let tab = bytes.firstIndex(of: 0x09) { bytes = Array(bytes[..<tab]) }
        let path = try unquote(bytes)
        if path == "/dev/null" { return nil }
        if path.hasPrefix("a/") || path.hasPrefix("b/") { return String(path.dropFirst(2)) }
        return path
    }

    /// git's C-style quoting ("a\tb", "\303\251").
    static func unquote(_ raw: [UInt8]) throws(ParseError) -> String {
        guard raw.first == 0x22 else { return String(decoding: raw, as: UTF8.self) }
        var out: [UInt8] = []
        var index = 1
        while index < raw.count {
            let byte = raw[index]
            if byte == 0x22 { return String(decoding: out, as: UTF8.self) }
            if byte == 0x5C, index + 1 < raw.count {
                let next = raw[index + 1]
                index += 2
                switch next {
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "\""): out.append(0x22)
                case UInt8(ascii: "\\"): out.append(0x5C)
                case UInt8(ascii: "0")...UInt8(ascii: "7"):
                    var value = Int(next - 0x30)
                    var digits = 1
                    while digits < 3, index < raw.count, (0x30...0x37).contains(raw[index]) {
                        value = value * 8 + Int(raw[index] - 0x30)
                        index += 1
                        digits += 1
                    }
                    out.append(UInt8(truncatingIfNeeded: value))
                default: out.append(next)
                }
                continue
            }
            out.append(byte)
            index += 1
        }
        throw ParseError(message: "unterminated quoted path")
    }

    /// `@@ -a[,b] +c[,d] @@ ...`.
    static func hunkHeader(_ line: [UInt8], lineNumber: Int) throws(ParseError) -> Hunk {
        let text = String(decoding: line, as: UTF8.self)
        let parts = text.split(separator: " ")
        guard parts.count >= 4, parts[0] == "@@", parts[1].hasPrefix("-"), parts[2].hasPrefix("+"), parts[3] == "@@",
            let old = range(parts[1].dropFirst()), let new = range(parts[2].dropFirst())
        else { throw ParseError(message: "line \(lineNumber): malformed hunk header") }
        return Hunk(oldStart: old.0, oldCount: old.1, newStart: new.0, newCount: new.1)
    }

    private static func range(_ text: Substring) -> (Int, Int)? {
        let pieces = text.split(separator: ",", omittingEmptySubsequences: false)
        guard pieces.count <= 2, let start = Int(pieces[0]), start >= 0, start < 1 << 40 else { return nil }
        if pieces.count == 1 { return (start, 1) }
        guard let count = Int(pieces[1]), count >= 0, count < 1 << 40 else { return nil }
        return (start, count)
    }
}
