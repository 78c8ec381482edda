import SandboxProtocol

#if canImport(Glibc)
    import Glibc
#endif

/// The frame channel to the runner (a connected AF_UNIX stream socket on fd 3). Blocking I/O:
/// the worker is single-threaded and serves one request at a time.
struct Channel {
    let fd: Int32
    private var decoder = FrameDecoder()
    private var chunk = [UInt8](repeating: 0, count: 1 << 16)

    init(fd: Int32) { self.fd = fd }

    /// The next frame; nil at EOF. Throws for a malformed frame (the stream is then unusable).
    mutating func next() throws(ChannelError) -> Frame? {
        while true {
            do {
                if let frame = try decoder.next() { return frame }
            } catch {
                throw ChannelError(reason: error.reason)
            }
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw ChannelError(reason: "read from the channel failed (errno \(errno))")
            }
            if count == 0 { return nil }
            decoder.append(chunk[0..<count])
        }
    }

    /// A frame already read, without reading more; nil when none is whole yet.
    mutating func buffered() throws(ChannelError) -> Frame? {
        do {
            return try decoder.next()
        } catch {
            throw ChannelError(reason: error.reason)
        }
    }

    /// Reads what the channel holds now (call it when poll says it is readable); false at EOF.
    mutating func fill() throws(ChannelError) -> Bool {
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw ChannelError(reason: "read from the channel failed (errno \(errno))")
            }
            if count == 0 { return false }
            decoder.append(chunk[0..<count])
            return true
        }
    }

    /// Writes one frame; a runner that went away ends the worker (nobody is left to serve).
    func send(_ frame: Frame) {
        let bytes = frame.encoded()
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0 {
                if errno == EINTR { continue }
                exit(74)
            }
            offset += written
        }
    }

    /// An `error` frame: `{"code": ..., "message": ...}`, the same object an error result carries.
    func sendError(code: WorkerErrorCode, message: String) {
        let body = ErrorBody(code: code.rawValue, message: message, detail: [:])
        send(Frame(kind: .error, payload: Results.encode(body)))
    }
}

/// A channel that cannot carry frames any more (malformed frame or failed read).
struct ChannelError: Error {
    let reason: String
}
