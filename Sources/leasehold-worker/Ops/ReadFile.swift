import FoundationEssentials

#if canImport(Glibc)
    import Glibc
#endif

/// `repo.read_file`: one page of a regular file, UTF-8 text by default.
enum ReadFile {
    struct Arguments: ToolArguments {
        static let fields: Set<String> = ["path", "offset", "length", "encoding"]
        let path: String
        let offset: Int?
        let length: Int?
        let encoding: String?
    }

    struct Result: Encodable {
        let path: String
        let encoding: String
        let content: String
        let size: Int
        let offset: Int
        let length: Int
        let truncated: Bool
        let nextOffset: Int?

        enum CodingKeys: String, CodingKey {
            case path, encoding, content, size, offset, length, truncated
            case nextOffset = "next_offset"
        }
    }

    /// Bytes looked at for a NUL to call a file binary (git's and ripgrep's heuristic).
    static let binaryProbeBytes = 8192

    static func run(_ raw: ArraySlice<UInt8>, _ context: Context) throws(ToolError) -> [UInt8] {
        let args = try Arguments.decode(raw)
        let path = try Paths.check(args.path)
        let encoding = args.encoding ?? "utf8"
        guard encoding == "utf8" || encoding == "base64" else {
            throw ToolError.invalidArguments("argument 'encoding' must be \"utf8\" or \"base64\"")
        }
        let offset = try checkRange(args.offset, "offset", 0...Int(Int64.max / 2), default: 0)
        let cap = context.outputBytes
        // Base64 inflates by 4/3: cap the raw bytes so the encoded content fits the output cap.
        let maximum = encoding == "base64" ? cap / 4 * 3 : cap
        let requested = try checkRange(args.length, "length", 0...Int(Int64.max / 2), default: maximum)

        let (fd, st) = try Paths.openRegularForReading(context.workspace, path)
        defer { close(fd) }
        let size = Int(st.st_size)

        if encoding == "utf8" {
            // Binary check on the file's head, whatever page is asked for.
            var head = [UInt8](repeating: 0, count: min(binaryProbeBytes, size))
            let headCount = try pread(fd, &head, at: 0, path)
            if head[0..<headCount].contains(0) {
                throw binary(path)
            }
        }

        let start = min(offset, size)
        let wanted = min(requested, maximum, size - start)
        var bytes = [UInt8](repeating: 0, count: wanted)
        let count = try pread(fd, &bytes, at: start, path)
        bytes.removeLast(wanted - count)

        var content: String
        var length = count
        if encoding == "utf8" {
            // A page may end inside a multi-byte scalar: back up to the last scalar boundary so
            // the page is valid UTF-8 and the next page starts at a whole scalar.
            if start + length < size { length = utf8Boundary(bytes, length) }
            guard let text = String(validating: bytes[0..<length], as: UTF8.self) else {
                throw binary(path)
            }
            content = text
        } else {
            content = Base64.encode(bytes[0..<length])
        }
        let end = start + length
        let truncated = end < size
        return Results.encode(
            Result(
                path: args.path, encoding: encoding, content: content, size: size, offset: start,
                length: length, truncated: truncated, nextOffset: truncated ? end : nil))
    }

    static func binary(_ path: String) -> ToolError {
        ToolError(
            .binaryFile, "path \(ToolError.quoted(path)) is not UTF-8 text; read it with encoding \"base64\"")
    }

    /// The largest prefix length <= `length` that does not cut a UTF-8 scalar (at most 3 bytes back).
    static func utf8Boundary(_ bytes: [UInt8], _ length: Int) -> Int {
        var index = length
        var back = 0
        while index > 0 && back < 4 {
            let byte = bytes[index - 1]
            if byte & 0x80 == 0 { return length }  // ASCII ends a scalar
            if byte & 0xC0 == 0xC0 {
                // Lead byte at index-1: is its sequence complete within `length`?
                let need = byte >= 0xF0 ? 4 : byte >= 0xE0 ? 3 : 2
                return (length - (index - 1)) >= need ? length : index - 1
            }
            index -= 1
            back += 1
        }
        return length
    }

    static func pread(_ fd: Int32, _ buffer: inout [UInt8], at offset: Int, _ path: String) throws(ToolError) -> Int {
        var done = 0
        while done < buffer.count {
            let count = buffer.withUnsafeMutableBytes { raw in
                Glibc.pread(fd, raw.baseAddress! + done, raw.count - done, off_t(offset + done))
            }
            if count < 0 {
                if errno == EINTR { continue }
                throw ToolError.forPath(path, errno: errno, action: "read")
            }
            if count == 0 { break }
            done += count
        }
        return done
    }
}
