#if canImport(Glibc)
    import Glibc
#endif

/// .gitignore rules, written by hand because no well-kept Swift library implements gitignore(5);
/// glob matching itself is glibc fnmatch(3) (see ``Glob``). Supported: comments, blank lines,
/// `\#` and `\!` escapes, trailing-space trimming, `!` negation, directory-only `dir/`,
/// anchored patterns (a slash anywhere but the end), and `**`. Not read: .git/info/exclude and
/// the global excludes file (they live outside what a tenant controls in its tree).
struct GitIgnore {
    struct Rule {
        let glob: Glob
        let negated: Bool
        let directoryOnly: Bool
    }

    /// The rules of one .gitignore file, in file order.
    let rules: [Rule]
    /// Segments of the directory holding the file, relative to the workspace.
    let base: [[CChar]]

    init(contents: ArraySlice<UInt8>, base: [[CChar]]) {
        self.base = base
        var rules: [Rule] = []
        for rawLine in contents.split(separator: 0x0A, omittingEmptySubsequences: true) {
            var line = Array(rawLine)
            if line.last == 0x0D { line.removeLast() }
            // Trailing spaces are ignored unless escaped with a backslash.
            while line.last == 0x20 && !(line.count >= 2 && line[line.count - 2] == 0x5C) { line.removeLast() }
            guard let first = line.first, first != 0x23 else { continue }  // blank or "#"
            var negated = false
            if first == 0x21 {  // "!"
                negated = true
                line.removeFirst()
            } else if first == 0x5C, line.count > 1, line[1] == 0x23 || line[1] == 0x21 {
                line.removeFirst()  // "\#" / "\!" are literal
            }
            var directoryOnly = false
            while line.last == 0x2F {
                directoryOnly = true
                line.removeLast()
            }
            guard !line.isEmpty else { continue }
            rules.append(Rule(glob: Glob(String(decoding: line, as: UTF8.self)), negated: negated, directoryOnly: directoryOnly))
        }
        self.rules = rules
    }

    /// nil: no rule of this file matches; true: ignored; false: re-included by a negation.
    func decision(path: [[CChar]], isDirectory: Bool) -> Bool? {
        guard path.count > base.count, Array(path[0..<base.count]) == base else { return nil }
        let relative = Array(path[base.count...])
        for rule in rules.reversed() {
            if rule.directoryOnly && !isDirectory { continue }
            if rule.glob.matches(path: relative) { return !rule.negated }
        }
        return nil
    }
}

/// The .gitignore files in force at one point of a walk, root first.
struct IgnoreStack {
    var files: [GitIgnore] = []

    /// The last matching rule wins, and deeper files come after shallower ones.
    func isIgnored(path: [[CChar]], isDirectory: Bool) -> Bool {
        for file in files.reversed() {
            if let decision = file.decision(path: path, isDirectory: isDirectory) { return decision }
        }
        return false
    }
}
