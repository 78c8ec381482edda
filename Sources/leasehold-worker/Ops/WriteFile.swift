#if canImport(Glibc)
    import Glibc
#endif

/// `repo.write_file`: replace or create one file atomically (temp file + fsync + rename).
enum WriteFile {
    struct Arguments: ToolArguments {
        static let fields: Set<String> = ["path", "content", "encoding", "create_only", "create_parents"]
        let path: String
        let content: String
        let encoding: String?
        let createOnly: Bool?
        let createParents: Bool?

        enum CodingKeys: String, CodingKey {
            case path, content, encoding
            case createOnly = "create_only"
            case createParents = "create_parents"
        }
    }

    struct Result: Encodable {
        let path: String
        let bytesWritten: Int
        let created: Bool

        enum CodingKeys: String, CodingKey {
            case path, created
            case bytesWritten = "bytes_written"
        }
    }

    static func run(_ raw: ArraySlice<UInt8>, _ context: Context) throws(ToolError) -> [UInt8] {
        let args = try Arguments.decode(raw)
        try context.requireWritable()
        let path = try Paths.check(args.path)
        let bytes: [UInt8]
        switch args.encoding ?? "utf8" {
        case "utf8": bytes = Array(args.content.utf8)
        case "base64":
            guard let decoded = Base64.decode(args.content) else {
                throw ToolError.invalidArguments("argument 'content' is not valid base64")
            }
            bytes = decoded
        default: throw ToolError.invalidArguments("argument 'encoding' must be \"utf8\" or \"base64\"")
        }
        guard bytes.count <= context.hello.fileSizeBytes else {
            throw ToolError(
                .fileTooLarge, "content of \(bytes.count) bytes exceeds the tier's \(context.hello.fileSizeBytes)-byte file limit")
        }
        let (parentPath, name) = try Paths.splitParent(path)
        let createOnly = args.createOnly ?? false
        let parent = try ParentDirectory.open(
            context.workspace, parentPath, createParents: args.createParents ?? false, shown: args.path)
        defer { parent.release() }
        let existing = try existingTarget(parent.fd, name, shown: args.path)
        if createOnly, existing != nil {
            throw ToolError(.alreadyExists, "path \(ToolError.quoted(args.path)) already exists (create_only)")
        }
        // Keep an existing file's permission bits; new files are 0644.
        let mode = existing.map { $0.st_mode & 0o777 } ?? 0o644
        let staged = try StagedFile.stage(dirfd: parent.fd, name: name, bytes: bytes, mode: mode, shown: args.path)
        try staged.commit(noReplace: createOnly)
        return Results.encode(Result(path: args.path, bytesWritten: bytes.count, created: existing == nil))
    }

    /// The target's lstat, nil when it does not exist; anything but a regular file is refused.
    static func existingTarget(_ dirfd: Int32, _ name: String, shown: String) throws(ToolError) -> stat? {
        var st = stat()
        if fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 {
            if errno == ENOENT { return nil }
            throw ToolError.forPath(shown, errno: errno, action: "write")
        }
        switch FileKind(st.st_mode) {
        case .file: return st
        case .dir: throw ToolError(.isADirectory, "path \(ToolError.quoted(shown)) is a directory")
        case let kind:
            throw ToolError(
                .notRegularFile, "path \(ToolError.quoted(shown)) is a \(kind.rawValue); only regular files are written")
        }
    }
}
