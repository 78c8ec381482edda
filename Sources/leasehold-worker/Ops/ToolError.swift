import SandboxProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// A tool failure reported to the caller as an error result (`{"error": {"code", "message", ...}}`),
/// never a crash. The code is stable and machine-readable; the message says what was refused and why.
struct ToolError: Error {
    /// The code, e.g. `not_found`.
    var code: WorkerErrorCode
    /// Operator-facing text; never holds more than the caller's own (bounded, escaped) path.
    var message: String
    /// Extra keys of the error object (e.g. `file` and `hunk` of `patch_failed`).
    var detail: [String: DetailValue] = [:]

    init(_ code: WorkerErrorCode, _ message: String, detail: [String: DetailValue] = [:]) {
        self.code = code
        self.message = message
        self.detail = detail
    }

    /// A detail value: the few JSON shapes errors carry.
    enum DetailValue: Encodable {
        case string(String)
        case int(Int)

        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .string(let value): try container.encode(value)
            case .int(let value): try container.encode(value)
            }
        }
    }

    static func invalidArguments(_ message: String) -> ToolError {
        ToolError(.invalidArguments, message)
    }

    /// Maps the errno of resolving or opening `path` to the stable codes every tool shares.
    static func forPath(_ path: String, errno code: Int32, action: String = "open") -> ToolError {
        let shown = quoted(path)
        switch code {
        case EXDEV, ELOOP:
            return ToolError(.pathOutsideWorkspace, "path \(shown) resolves outside the workspace")
        case ENOENT:
            return ToolError(.notFound, "path \(shown) does not exist")
        case ENOTDIR:
            return ToolError(.notADirectory, "a component of path \(shown) is not a directory")
        case EISDIR:
            return ToolError(.isADirectory, "path \(shown) is a directory")
        case ENAMETOOLONG:
            return ToolError(.pathTooLong, "path \(shown) is too long")
        case EACCES, EPERM:
            return ToolError(.permissionDenied, "permission denied to \(action) \(shown)")
        case ENXIO:
            return ToolError(.notRegularFile, "path \(shown) is not a regular file")
        case EEXIST:
            return ToolError(.alreadyExists, "path \(shown) already exists")
        case EROFS:
            return ToolError(.readOnlyWorkspace, "the workspace is read-only; cannot \(action) \(shown)")
        case ENOSPC, EDQUOT:
            return ToolError(.noSpace, "no space left to \(action) \(shown)")
        case EFBIG:
            return ToolError(.fileTooLarge, "the file size limit was reached writing \(shown)")
        case ETXTBSY:
            return ToolError(.busy, "path \(shown) is busy")
        default:
            return ToolError(.ioError, "cannot \(action) \(shown): \(errnoName(code))")
        }
    }

    /// The caller's path for a message: at most 200 bytes, control characters and quotes escaped,
    /// so a message can never carry anything but a bounded rendering of what the caller sent.
    static func quoted(_ path: String) -> String {
        var out = "'"
        var count = 0
        for scalar in path.unicodeScalars {
            if count >= 200 {
                out += "..."
                break
            }
            switch scalar {
            case "'": out += "\\'"
            case "\\": out += "\\\\"
            case _ where scalar.value < 0x20 || scalar.value == 0x7f:
                out += "\\x" + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
            count += 1
        }
        return out + "'"
    }

    /// A short symbolic name for an errno (messages stay locale-free: the worker never calls setlocale).
    static func errnoName(_ code: Int32) -> String {
        switch code {
        case EIO: return "EIO"
        case EBADF: return "EBADF"
        case ENOMEM: return "ENOMEM"
        case EBUSY: return "EBUSY"
        case EINVAL: return "EINVAL"
        case EMFILE: return "EMFILE"
        case ENFILE: return "ENFILE"
        case ENOTEMPTY: return "ENOTEMPTY"
        case ENOSYS: return "ENOSYS"
        case EAGAIN: return "EAGAIN"
        default: return "errno \(code)"
        }
    }
}
