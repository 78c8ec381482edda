import CWorker

#if canImport(Glibc)
    import Glibc
#endif

/// `repo.search`: grep the workspace like ripgrep (skip .git, honour .gitignore, skip binary files,
/// never follow symlinks). Literals are found with glibc memmem over the whole file buffer and
/// line boundaries are computed only around hits; regexes use POSIX regexec over the whole buffer
/// (REG_NEWLINE, REG_STARTEND), because splitting every file into lines first is what makes a
/// naive grep slow.
enum Search {
    struct Arguments: ToolArguments {
        static let fields: Set<String> = [
            "pattern", "regex", "path", "include", "exclude", "case_sensitive", "max_matches", "context_lines",
        ]
        let pattern: String
        let regex: Bool?
        let path: String?
        let include: String?
        let exclude: String?
        let caseSensitive: Bool?
        let maxMatches: Int?
        let contextLines: Int?

        enum CodingKeys: String, CodingKey {
            case pattern, regex, path, include, exclude
            case caseSensitive = "case_sensitive"
            case maxMatches = "max_matches"
            case contextLines = "context_lines"
        }
    }

    struct Match: Encodable {
        let path: String
        let line: Int
        let text: String
        let before: [String]?
        let after: [String]?
    }

    struct Result: Encodable {
        let matches: [Match]
        let filesScanned: Int
        let truncated: Bool

        enum CodingKeys: String, CodingKey {
            case matches, truncated
            case filesScanned = "files_scanned"
        }
    }

    /// Bytes of one line in a result; longer lines are cut (at a scalar boundary).
    static let lineCap = 500
    /// Files bigger than this are skipped: nobody greps a 1 GiB file through an agent tool.
    static let fileCap = 512 << 20

    static func run(_ raw: ArraySlice<UInt8>, _ context: Context, buffer: inout [UInt8]) throws(ToolError) -> [UInt8] {
        let args = try Arguments.decode(raw)
        guard !args.pattern.isEmpty else { throw ToolError.invalidArguments("argument 'pattern' must not be empty") }
        guard !args.pattern.utf8.contains(0) else {
            throw ToolError.invalidArguments("argument 'pattern' contains a NUL byte")
        }
        guard args.pattern.utf8.count <= 4096 else {
            throw ToolError.invalidArguments("argument 'pattern' is longer than 4096 bytes")
        }
        for (name, glob) in [("include", args.include), ("exclude", args.exclude)] {
            if let glob, glob.utf8.contains(0) || glob.isEmpty || glob.utf8.count > 1024 {
                throw ToolError.invalidArguments("argument '\(name)' must be a non-empty glob without NUL bytes")
            }
        }
        let path = try Paths.check(args.path ?? "")
        let maxMatches = try checkRange(args.maxMatches, "max_matches", 1...10_000, default: 200)
        let contextLines = try checkRange(args.contextLines, "context_lines", 0...10, default: 0)
        let caseSensitive = args.caseSensitive ?? true

        let matcher = try Matcher(pattern: args.pattern, regex: args.regex ?? false, caseSensitive: caseSensitive)
        var search = Walk(
            matcher: matcher, maxMatches: maxMatches, contextLines: contextLines, outputCap: context.outputBytes,
            include: args.include.map(Glob.init), exclude: args.exclude.map(Glob.init), buffer: buffer)
        defer { buffer = search.buffer }

        let start = try Paths.open(context.workspace, path, flags: Paths.oPath, action: "search")
        let st: stat
        do throws(ToolError) {
            st = try Paths.fstatChecked(start, path)
        } catch {
            close(start)
            throw error
        }
        close(start)
        let prefix = ListDir.relativePrefix(path)
        let segments = prefix.isEmpty ? [] : prefix.split(separator: 0x2F).map { Array($0).cString }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            let dirfd = try Paths.open(context.workspace, path, flags: O_RDONLY | O_DIRECTORY, action: "search")
            var ignores = IgnoreStack()
            search.loadAncestorIgnores(context.workspace, segments: segments, into: &ignores)
            search.walk(dirfd, path: prefix, segments: segments, ignores: &ignores)
            close(dirfd)
        } else {
            let (fd, _) = try Paths.openRegularForReading(context.workspace, path)
            search.scanFile(fd, path: String(decoding: prefix, as: UTF8.self))
            close(fd)
        }
        return Results.encode(Result(matches: search.matches, filesScanned: search.filesScanned, truncated: search.truncated))
    }
}

extension [UInt8] {
    /// The bytes as a NUL-terminated C string.
    var cString: [CChar] { map { CChar(bitPattern: $0) } + [0] }
}

/// What is searched for.
final class Matcher {
    enum Kind {
        case literal([UInt8])
        case regex
    }

    let kind: Kind
    let foldCase: Bool
    /// Owned regex_t (regfree'd in deinit); a class because regex_t must not move once compiled.
    private var compiled: UnsafeMutablePointer<regex_t>?

    init(pattern: String, regex: Bool, caseSensitive: Bool) throws(ToolError) {
        if regex {
            let re = UnsafeMutablePointer<regex_t>.allocate(capacity: 1)
            let flags = REG_EXTENDED | REG_NEWLINE | (caseSensitive ? 0 : REG_ICASE)
            let rc = regcomp(re, pattern, flags)
            if rc != 0 {
                var message = [CChar](repeating: 0, count: 256)
                regerror(rc, re, &message, message.count)
                re.deallocate()
                let text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                throw ToolError.invalidArguments("argument 'pattern' is not a valid POSIX extended regex: \(text)")
            }
            compiled = re
            kind = .regex
            foldCase = false
        } else {
            // Case-insensitive literals fold ASCII only, like regcomp's REG_ICASE in the C locale
            // the worker runs in.
            kind = .literal(caseSensitive ? Array(pattern.utf8) : Array(pattern.utf8).map(asciiLower))
            foldCase = !caseSensitive
        }
    }

    deinit {
        if let compiled {
            regfree(compiled)
            compiled.deallocate()
        }
    }

    /// The first match at or after `from` in `base[0..<length]`: its start offset, or nil.
    func find(_ base: UnsafePointer<UInt8>, length: Int, from: Int) -> Int? {
        switch kind {
        case .literal(let needle):
            let hit = needle.withUnsafeBytes { n in
                csbw_memmem(base + from, length - from, n.baseAddress, n.count)
            }
            guard let hit else { return nil }
            return UnsafeRawPointer(hit) - UnsafeRawPointer(base)
        case .regex:
            guard let compiled else { return nil }
            var match = regmatch_t(rm_so: regoff_t(from), rm_eo: regoff_t(length))
            let rc = base.withMemoryRebound(to: CChar.self, capacity: length) { text in
                regexec(compiled, text, 1, &match, REG_STARTEND)
            }
            guard rc == 0 else { return nil }
            return Int(match.rm_so)
        }
    }
}

@inline(__always) func asciiLower(_ byte: UInt8) -> UInt8 {
    byte &- 0x41 < 26 ? byte | 0x20 : byte
}


extension Search {
    struct Walk {
        let matcher: Matcher
        let maxMatches: Int
        let contextLines: Int
        let outputCap: Int
        let include: Glob?
        let exclude: Glob?
        var buffer: [UInt8]
        /// Lower-cased copy of the file for case-insensitive literals.
        var folded: [UInt8] = []
        var matches: [Search.Match] = []
        var filesScanned = 0
        var truncated = false
        var outputBytes = 0

        init(
            matcher: Matcher, maxMatches: Int, contextLines: Int, outputCap: Int, include: Glob?, exclude: Glob?,
            buffer: [UInt8]
        ) {
            self.matcher = matcher
            self.maxMatches = maxMatches
            self.contextLines = contextLines
            self.outputCap = outputCap
            self.include = include
            self.exclude = exclude
            self.buffer = buffer
        }

        static let gitName = Array(".git".utf8)
        static let gitignoreName = Array(".gitignore".utf8)

        /// The .gitignore files of the directories above a search that starts below the root.
        mutating func loadAncestorIgnores(_ workspace: Int32, segments: [[CChar]], into ignores: inout IgnoreStack) {
            let names = segments.map { String(cString: $0) }
            guard !names.contains("..") else { return }
            for depth in 0..<segments.count {
                let dir = depth == 0 ? "." : names[0..<depth].joined(separator: "/")
                let fd = Paths.tryOpen(workspace, dir, flags: O_RDONLY | O_DIRECTORY)
                guard fd >= 0 else { return }
                loadIgnore(fd, base: Array(segments[0..<depth]), into: &ignores)
                close(fd)
            }
        }

        mutating func loadIgnore(_ dirfd: Int32, base: [[CChar]], into ignores: inout IgnoreStack) {
            let entry = DirectoryEntry(name: Walk.gitignoreName, type: UInt8(DT_REG))
            let fd = DirectoryReader.openChildFile(dirfd, entry)
            guard fd >= 0 else { return }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_nlink <= 1, st.st_size <= 1 << 20 else {
                return
            }
            var contents = [UInt8](repeating: 0, count: Int(st.st_size))
            guard let count = try? ReadFile.pread(fd, &contents, at: 0, ".gitignore") else { return }
            ignores.files.append(GitIgnore(contents: contents[0..<count], base: base))
        }

        var done: Bool { truncated }

        /// Searches directory `dirfd` (left open) whose workspace-relative path is `path`.
        mutating func walk(_ dirfd: Int32, path: [UInt8], segments: [[CChar]], ignores: inout IgnoreStack) {
            guard let entries = DirectoryReader.entries(of: dirfd) else { return }
            let pushed = entries.contains { $0.name == Walk.gitignoreName }
            if pushed { loadIgnore(dirfd, base: segments, into: &ignores) }
            defer { if pushed { ignores.files.removeLast() } }
            for entry in entries {
                if done { return }
                var type = entry.type
                if type == UInt8(DT_UNKNOWN) {
                    guard let st = DirectoryReader.statChild(dirfd, entry) else { continue }
                    switch st.st_mode & S_IFMT {
                    case S_IFDIR: type = UInt8(DT_DIR)
                    case S_IFREG: type = UInt8(DT_REG)
                    default: continue
                    }
                }
                let isDirectory = type == UInt8(DT_DIR)
                guard isDirectory || type == UInt8(DT_REG) else { continue }  // symlinks, FIFOs, devices
                if isDirectory && entry.name == Walk.gitName { continue }
                let childSegments = segments + [entry.name.cString]
                if ignores.isIgnored(path: childSegments, isDirectory: isDirectory) { continue }
                if let exclude, exclude.matches(path: childSegments) { continue }
                let childPath = path.isEmpty ? entry.name : path + [0x2F] + entry.name
                if isDirectory {
                    let child = DirectoryReader.openChildDirectory(dirfd, entry)
                    guard child >= 0 else { continue }
                    walk(child, path: childPath, segments: childSegments, ignores: &ignores)
                    close(child)
                } else {
                    if let include, !include.matches(path: childSegments) { continue }
                    let fd = DirectoryReader.openChildFile(dirfd, entry)
                    guard fd >= 0 else { continue }
                    scanFile(fd, path: String(decoding: childPath, as: UTF8.self))
                    close(fd)
                }
            }
        }

        /// Reads one file (regular, single link, not binary) and records its matching lines.
        mutating func scanFile(_ fd: Int32, path: String) {
            var st = stat()
            guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_nlink <= 1 else { return }
            let size = Int(st.st_size)
            guard size <= Search.fileCap else { return }
            // One spare byte: a read that fills it means the file grew; we search what fstat saw.
            if buffer.count < size + 1 { buffer = [UInt8](repeating: 0, count: size + 1) }
            var length = 0
            let ok: Bool = buffer.withUnsafeMutableBytes { raw in
                let base = raw.baseAddress!
                while length < size {
                    let count = read(fd, base + length, size - length)
                    if count < 0 {
                        if errno == EINTR { continue }
                        return false
                    }
                    if count == 0 { break }
                    length += count
                }
                return true
            }
            guard ok else { return }
            filesScanned += 1
            guard length > 0 else { return }
            let isBinary = buffer.withUnsafeBytes { raw in memchr(raw.baseAddress!, 0, min(length, 8192)) != nil }
            if isBinary { return }

            if matcher.foldCase {
                if folded.count < length { folded = [UInt8](repeating: 0, count: buffer.count) }
                buffer.withUnsafeBufferPointer { source in
                    folded.withUnsafeMutableBufferPointer { target in
                        for index in 0..<length { target[index] = asciiLower(source[index]) }
                    }
                }
            }
            let text = buffer
            let haystack = matcher.foldCase ? folded : buffer
            haystack.withUnsafeBufferPointer { searched in
                text.withUnsafeBufferPointer { original in
                    scan(searched.baseAddress!, original.baseAddress!, length: length, path: path)
                }
            }
        }

        private mutating func scan(_ searched: UnsafePointer<UInt8>, _ text: UnsafePointer<UInt8>, length: Int, path: String) {
            var from = 0
            var lineNumber = 1
            var counted = 0  // newlines before `counted` are in lineNumber
            while from < length, let hit = matcher.find(searched, length: length, from: from) {
                let lineStart = Walk.lineStart(text, hit)
                let lineEnd = Walk.lineEnd(text, hit, length)
                lineNumber += Walk.countNewlines(text + counted, lineStart - counted)
                counted = lineStart
                var before: [String]?
                var after: [String]?
                if contextLines > 0 {
                    var lines: [String] = []
                    var cursor = lineStart
                    while lines.count < contextLines && cursor > 0 {
                        let end = cursor - 1
                        let start = Walk.lineStart(text, end)
                        lines.append(Walk.render(text, start, end))
                        cursor = start
                    }
                    before = lines.reversed()
                    lines = []
                    cursor = lineEnd
                    while lines.count < contextLines && cursor < length {
                        let start = cursor + 1
                        guard start < length else { break }
                        let end = Walk.lineEnd(text, start, length)
                        lines.append(Walk.render(text, start, end))
                        cursor = end
                    }
                    after = lines
                }
                let line = Walk.render(text, lineStart, lineEnd)
                outputBytes += line.utf8.count + path.utf8.count + 32
                outputBytes += (before ?? []).reduce(0) { $0 + $1.utf8.count + 4 }
                outputBytes += (after ?? []).reduce(0) { $0 + $1.utf8.count + 4 }
                if outputBytes > outputCap && !matches.isEmpty {
                    truncated = true
                    return
                }
                matches.append(Search.Match(path: path, line: lineNumber, text: line, before: before, after: after))
                if matches.count >= maxMatches {
                    truncated = true
                    return
                }
                from = lineEnd + 1
            }
        }

        static func lineStart(_ text: UnsafePointer<UInt8>, _ at: Int) -> Int {
            guard at > 0, let newline = csbw_memrchr(text, 0x0A, at) else { return 0 }
            return UnsafeRawPointer(newline) - UnsafeRawPointer(text) + 1
        }

        static func lineEnd(_ text: UnsafePointer<UInt8>, _ at: Int, _ length: Int) -> Int {
            guard let newline = memchr(text + at, 0x0A, length - at) else { return length }
            return UnsafeRawPointer(newline) - UnsafeRawPointer(text)
        }

        static func countNewlines(_ start: UnsafePointer<UInt8>, _ count: Int) -> Int {
            var lines = 0
            var cursor = UnsafeRawPointer(start)
            let end = cursor + count
            while cursor < end, let newline = memchr(cursor, 0x0A, end - cursor) {
                lines += 1
                cursor = UnsafeRawPointer(newline) + 1
            }
            return lines
        }

        /// A line for the result: at most ``Search/lineCap`` bytes, cut at a scalar boundary, a
        /// trailing CR dropped, invalid UTF-8 replaced.
        static func render(_ text: UnsafePointer<UInt8>, _ start: Int, _ end: Int) -> String {
            var stop = end
            if stop > start && text[stop - 1] == 0x0D { stop -= 1 }
            if stop - start > Search.lineCap {
                stop = start + Search.lineCap
                while stop > start && text[stop] & 0xC0 == 0x80 { stop -= 1 }
            }
            return String(decoding: UnsafeBufferPointer(start: text + start, count: stop - start), as: UTF8.self)
        }
    }
}
