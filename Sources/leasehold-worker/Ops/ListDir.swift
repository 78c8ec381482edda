#if canImport(Glibc)
    import Glibc
#endif

/// `repo.list_dir`: a directory's entries to a depth, in path-byte order, symlinks never followed.
enum ListDir {
    struct Arguments: ToolArguments {
        static let fields: Set<String> = ["path", "depth", "limit"]
        let path: String?
        let depth: Int?
        let limit: Int?
    }

    struct Entry: Encodable {
        let path: String
        let type: String
        let size: Int?
        let hardLink: Bool?

        enum CodingKeys: String, CodingKey {
            case path, type, size
            case hardLink = "hard_link"
        }
    }

    struct Result: Encodable {
        let path: String
        let entries: [Entry]
        let truncated: Bool
    }

    /// Entries looked at in one call at most, whatever the limit: bounds time and memory on huge trees.
    static let walkCap = 200_000

    static func run(_ raw: ArraySlice<UInt8>, _ context: Context) throws(ToolError) -> [UInt8] {
        let args = try Arguments.decode(raw)
        let path = try Paths.check(args.path ?? "")
        let depth = try checkRange(args.depth, "depth", 1...16, default: 1)
        let limit = try checkRange(args.limit, "limit", 1...10_000, default: 1000)
        let root = try Paths.open(context.workspace, path, flags: O_RDONLY | O_DIRECTORY, action: "list")

        var collected: [(path: [UInt8], entry: Entry)] = []
        var truncated = false
        // Depth-first with an explicit stack: (directory fd, its path relative to the workspace, depth).
        var stack: [(fd: Int32, path: [UInt8], level: Int)] = [(root, relativePrefix(path), 1)]
        while let (fd, dirPath, level) = stack.popLast() {
            defer { close(fd) }
            guard let entries = DirectoryReader.entries(of: fd) else { continue }
            for entry in entries {
                if collected.count >= walkCap {
                    truncated = true
                    break
                }
                let childPath = dirPath.isEmpty ? entry.name : dirPath + [0x2F] + entry.name
                guard let st = DirectoryReader.statChild(fd, entry) else { continue }
                let kind = FileKind(st.st_mode)
                // A multiply-linked file's size describes an inode that may also live outside.
                let linked = kind != .dir && st.st_nlink > 1
                collected.append(
                    (
                        childPath,
                        Entry(
                            path: String(decoding: childPath, as: UTF8.self), type: kind.rawValue,
                            size: linked ? nil : Int(st.st_size), hardLink: linked ? true : nil)
                    ))
                if kind == .dir && level < depth && entry.name != Array(".git".utf8) {
                    let child = DirectoryReader.openChildDirectory(fd, entry)
                    if child >= 0 { stack.append((child, childPath, level + 1)) }
                }
            }
            if truncated { break }
        }
        for (fd, _, _) in stack { close(fd) }
        collected.sort { $0.path.lexicographicallyPrecedes($1.path) }
        if collected.count > limit {
            collected.removeLast(collected.count - limit)
            truncated = true
        }
        return Results.encode(Result(path: args.path ?? "", entries: collected.map(\.entry), truncated: truncated))
    }

    /// The caller's directory path as a prefix for entry paths ("" for the root, no "./", no trailing "/").
    static func relativePrefix(_ path: String) -> [UInt8] {
        var prefix = Array(path.utf8)
        while prefix.count > 1 && prefix.last == 0x2F { prefix.removeLast() }
        while prefix.starts(with: [0x2E, 0x2F]) { prefix.removeFirst(2) }
        if prefix == [0x2E] { prefix = [] }
        return prefix
    }
}
