#if canImport(Glibc)
    import Glibc
#endif

/// `repo.apply_patch`: a unified diff applied all or nothing. Every target is read and every hunk
/// applied in memory first; only when all succeed are the results staged as temporary files, and
/// only when every temporary file is written are they renamed into place. Any failure before the
/// renames removes what was staged, so the workspace is unchanged.
enum ApplyPatch {
    struct Arguments: ToolArguments {
        static let fields: Set<String> = ["patch"]
        let patch: String
    }

    struct FileResult: Encodable {
        let path: String
        let action: String
        let hunks: Int
    }

    struct Result: Encodable {
        let files: [FileResult]
    }

    /// One file's planned change.
    struct Plan {
        let source: String?
        let destination: String?
        let content: [UInt8]
        let mode: mode_t
        let action: String
        let hunks: Int
    }

    static let patchCap = 32 << 20

    static func run(_ raw: ArraySlice<UInt8>, _ context: Context) throws(ToolError) -> [UInt8] {
        let args = try Arguments.decode(raw)
        try context.requireWritable()
        guard args.patch.utf8.count <= patchCap else {
            throw ToolError.invalidArguments("argument 'patch' is larger than \(patchCap) bytes")
        }
        let diff: UnifiedDiff
        do {
            diff = try UnifiedDiff(Array(args.patch.utf8))
        } catch {
            throw ToolError(.patchFailed, "the patch cannot be parsed: \(error.message)")
        }

        // Phase 1: read and apply everything in memory.
        var plans: [Plan] = []
        var touched = Set<String>()
        for file in diff.files {
            for path in [file.oldPath, file.newPath].compactMap({ $0 }) {
                _ = try Paths.check(path)
            }
            let shown = file.newPath ?? file.oldPath ?? ""
            for path in Set([file.oldPath, file.newPath].compactMap { $0 }) {
                guard touched.insert(path).inserted else {
                    throw ToolError(.patchFailed, "the patch changes \(ToolError.quoted(path)) more than once", detail: ["file": .string(path)])
                }
            }
            var original: [UInt8] = []
            var mode: mode_t = 0o644
            if let old = file.oldPath {
                let (fd, st) = try Paths.openRegularForReading(context.workspace, old)
                defer { close(fd) }
                guard Int(st.st_size) <= max(context.hello.fileSizeBytes, patchCap) else {
                    throw ToolError(.fileTooLarge, "path \(ToolError.quoted(old)) is too large to patch")
                }
                original = [UInt8](repeating: 0, count: Int(st.st_size))
                let count = try ReadFile.pread(fd, &original, at: 0, old)
                original.removeLast(original.count - count)
                mode = st.st_mode & 0o777
            }
            if let new = file.newPath, new != file.oldPath {
                try requireAbsent(context.workspace, new)
            }
            let content = try apply(file.hunks, to: original, file: shown)
            if file.newPath == nil && !content.isEmpty {
                throw ToolError(
                    .patchFailed, "deleting \(ToolError.quoted(shown)): the patch does not remove all of its content",
                    detail: ["file": .string(shown)])
            }
            guard content.count <= context.hello.fileSizeBytes else {
                throw ToolError(.fileTooLarge, "patched \(ToolError.quoted(shown)) exceeds the tier's file size limit")
            }
            let action =
                file.oldPath == nil ? "created" : file.newPath == nil ? "deleted" : file.oldPath != file.newPath ? "renamed" : "modified"
            plans.append(Plan(source: file.oldPath, destination: file.newPath, content: content, mode: mode, action: action, hunks: file.hunks.count))
        }

        // Phase 2: stage every result beside its target.
        var staged: [(StagedFile, ParentDirectory)] = []
        func unwind() {
            for (file, parent) in staged.reversed() {
                file.discard()
                parent.rollback()
            }
        }
        for plan in plans {
            guard let destination = plan.destination else { continue }
            do throws(ToolError) {
                let (parentPath, name) = try Paths.splitParent(destination)
                let parent = try ParentDirectory.open(
                    context.workspace, parentPath, createParents: plan.action != "modified", shown: destination)
                do throws(ToolError) {
                    _ = try WriteFile.existingTarget(parent.fd, name, shown: destination)
                    let file = try StagedFile.stage(dirfd: parent.fd, name: name, bytes: plan.content, mode: plan.mode, shown: destination)
                    staged.append((file, parent))
                } catch {
                    parent.rollback()
                    throw error
                }
            } catch {
                unwind()
                throw error
            }
        }

        // Phase 3: rename into place, then remove deleted files and rename sources.
        var index = 0
        for plan in plans where plan.destination != nil {
            let (file, _) = staged[index]
            index += 1
            // New names must not appear between the check and now; modified files are replaced.
            try file.commit(noReplace: plan.action != "modified")
        }
        for (_, parent) in staged { parent.release() }
        for plan in plans {
            guard let source = plan.source, plan.action == "deleted" || plan.action == "renamed" else { continue }
            let (parentPath, name) = try Paths.splitParent(source)
            let parent = try Paths.open(context.workspace, parentPath, flags: O_RDONLY | O_DIRECTORY, shown: source)
            defer { close(parent) }
            if unlinkat(parent, name, 0) != 0 { throw ToolError.forPath(source, errno: errno, action: "delete") }
        }
        return Results.encode(
            Result(files: plans.map { FileResult(path: $0.destination ?? $0.source ?? "", action: $0.action, hunks: $0.hunks) }))
    }

    /// A file the patch creates (or renames to) must not exist yet.
    static func requireAbsent(_ workspace: Int32, _ path: String) throws(ToolError) {
        let fd = Paths.tryOpen(workspace, path, flags: Paths.oPath | O_NOFOLLOW)
        if fd >= 0 {
            close(fd)
            throw ToolError(.patchFailed, "path \(ToolError.quoted(path)) already exists", detail: ["file": .string(path)])
        }
        if fd != -ENOENT { throw ToolError.forPath(path, errno: -fd) }
    }

    /// Applies hunks in order with exact context; a hunk may have moved (offset search), never fuzzed.
    static func apply(_ hunks: [UnifiedDiff.Hunk], to content: [UInt8], file: String) throws(ToolError) -> [UInt8] {
        var lines = content.split(separator: 0x0A, omittingEmptySubsequences: false).map(Array.init)
        var endsWithNewline = true
        if content.isEmpty {
            lines = []
        } else if content.last == 0x0A {
            lines.removeLast()
        } else {
            endsWithNewline = false
        }
        var result: [[UInt8]] = []
        var cursor = 0
        for (number, hunk) in hunks.enumerated() {
            let old = hunk.lines.filter { $0.kind != .added }.map(\.text)
            let new = hunk.lines.filter { $0.kind != .removed }.map(\.text)
            let expected = hunk.oldCount == 0 ? hunk.oldStart : max(0, hunk.oldStart - 1)
            guard let position = locate(old, in: lines, near: expected, from: cursor) else {
                throw ToolError(
                    .patchFailed,
                    "hunk \(number + 1) of \(ToolError.quoted(file)) does not apply: its context does not match the file",
                    detail: ["file": .string(file), "hunk": .int(number + 1)])
            }
            result.append(contentsOf: lines[cursor..<position])
            result.append(contentsOf: new)
            cursor = position + old.count
            if cursor == lines.count {
                endsWithNewline = !hunk.newNoNewline
            }
        }
        result.append(contentsOf: lines[cursor...])
        var out: [UInt8] = []
        for (index, line) in result.enumerated() {
            out.append(contentsOf: line)
            if index < result.count - 1 || endsWithNewline { out.append(0x0A) }
        }
        return out
    }

    private static func locate(_ old: [[UInt8]], in lines: [[UInt8]], near expected: Int, from cursor: Int) -> Int? {
        let last = lines.count - old.count
        guard last >= cursor else { return nil }
        func matches(_ at: Int) -> Bool {
            for (offset, line) in old.enumerated() where lines[at + offset] != line { return false }
            return true
        }
        let start = min(max(expected, cursor), last)
        var distance = 0
        while start - distance >= cursor || start + distance <= last {
            if start + distance <= last && matches(start + distance) { return start + distance }
            if distance > 0 && start - distance >= cursor && matches(start - distance) { return start - distance }
            distance += 1
        }
        return nil
    }
}
