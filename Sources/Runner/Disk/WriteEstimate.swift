import MCP
import Sandbox

#if canImport(Glibc)
    import Glibc
#endif

/// How much a call may grow its workspace, estimated before it runs from its tier and arguments.
///
/// - `repo.write_file`: the new content rounded up to 4 KiB blocks, minus what the file it replaces
///   holds now (looked up without following a symlink), plus one inode for a new file.
/// - `repo.apply_patch`: the bytes of its added lines and one inode per file it creates
///   (`--- /dev/null`); a patch that adds nothing (deletions, removed lines, renames) does not grow.
/// - any other tool of a writing, non-exec tier: one block and one inode, the least it may add.
/// - exec tiers: measured after the call instead (``DiskChange/exec``).
///
/// An estimate, not an account: the workspace is re-measured whenever the estimate says it is
/// near its quota, and after every exec call.
enum WriteEstimate {
    static let block: Int64 = 4096

    static func change(
        tool: String, profile: SeccompProfileName, arguments: [String: Value]?, root: String
    ) -> DiskChange {
        switch profile {
        case .read: return .none
        case .exec: return .exec
        case .write: break
        }
        switch tool {
        case "repo.write_file":
            guard case .string(let path)? = arguments?["path"], case .string(let content)? = arguments?["content"]
            else {
                return .write(DiskUsage(bytes: block, files: 1))
            }
            var size = Int64(content.utf8.count)
            if case .string("base64")? = arguments?["encoding"] { size = size / 4 * 3 }
            let new = rounded(size)
            guard let existing = allocated(path, in: root) else { return .write(DiskUsage(bytes: new, files: 1)) }
            return .write(DiskUsage(bytes: new - existing, files: 0))
        case "repo.apply_patch":
            guard case .string(let patch)? = arguments?["patch"] else { return .none }
            var added: Int64 = 0
            var created: Int64 = 0
            for line in patch.split(separator: "\n", omittingEmptySubsequences: false) {
                if line.hasPrefix("+++") { continue }
                if line.hasPrefix("--- /dev/null") {
                    created += 1
                } else if line.hasPrefix("+") {
                    added += Int64(line.utf8.count)
                }
            }
            return .write(DiskUsage(bytes: added == 0 ? 0 : rounded(added), files: created))
        default:
            return .write(DiskUsage(bytes: block, files: 1))
        }
    }

    static func rounded(_ bytes: Int64) -> Int64 { (bytes + block - 1) / block * block }

    /// The allocated bytes of the regular file at `path` under `root`, nil when there is none (or
    /// it cannot be looked up safely): every component opened with `O_NOFOLLOW` relative to the
    /// last, `..` refused, so the lookup never leaves the workspace.
    static func allocated(_ path: String, in root: String) -> Int64? {
        let components = path.split(separator: "/").filter { $0 != "." }
        guard !path.hasPrefix("/"), let name = components.last, !components.contains("..") else { return nil }
        var fd = open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        for component in components.dropLast() {
            let next = openat(fd, String(component), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard next >= 0 else { return nil }
            close(fd)
            fd = next
        }
        var st = stat()
        guard fstatat(fd, String(name), &st, AT_SYMLINK_NOFOLLOW) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            return nil
        }
        return Int64(st.st_blocks) * 512
    }
}
