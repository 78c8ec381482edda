#if canImport(Glibc)
    import Glibc
#endif

/// `repo.stat`: one path's metadata, without following a final symlink.
enum StatTool {
    struct Arguments: ToolArguments {
        static let fields: Set<String> = ["path"]
        let path: String
    }

    struct Result: Encodable {
        let path: String
        let type: String
        let size: Int
        let mode: String
        let mtime: Int
        let nlink: Int
        let target: String?
    }

    static func run(_ raw: ArraySlice<UInt8>, _ context: Context) throws(ToolError) -> [UInt8] {
        let args = try Arguments.decode(raw)
        let path = try Paths.check(args.path)
        // O_PATH|O_NOFOLLOW opens a final symlink itself; earlier components still resolve beneath.
        let fd = try Paths.open(context.workspace, path, flags: Paths.oPath | O_NOFOLLOW, action: "stat")
        defer { close(fd) }
        let st = try Paths.fstatChecked(fd, args.path)
        let kind = FileKind(st.st_mode)
        if kind != .dir && st.st_nlink > 1 {
            throw ToolError(
                .hardLink, "path \(ToolError.quoted(args.path)) has \(st.st_nlink) hard links; refused because another name may be outside the workspace")
        }
        var target: String?
        if kind == .symlink {
            target = readLink(fd)
        }
        let permissions = String(st.st_mode & 0o7777, radix: 8)
        return Results.encode(
            Result(
                path: args.path, type: kind.rawValue, size: Int(st.st_size),
                mode: String(repeating: "0", count: max(0, 4 - permissions.count)) + permissions,
                mtime: Int(st.st_mtim.tv_sec), nlink: Int(st.st_nlink), target: target))
    }

    /// readlinkat(fd, "") on an O_PATH descriptor of the link: the link's own text, not resolved.
    static func readLink(_ fd: Int32) -> String? {
        var buffer = [CChar](repeating: 0, count: 4097)
        let count = readlinkat(fd, "", &buffer, 4096)
        guard count >= 0 else { return nil }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
