// libFuzzer target: the runner<->worker frame codec (Sources/SandboxProtocol), as both sides read
// it: bytes from the peer in arbitrary chunks, frames out, then the request/response payload
// parsers and the JSON span scanner. Bad input must end in a FrameError or nil, never a trap.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrameCodec(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let first = bytes.first else { return 0 }
    // The first byte picks the chunk size the peer's bytes arrive in (1...256).
    let chunk = Int(first) + 1
    var decoder = FrameDecoder()
    var offset = 1
    var frames = 0
    reading: while offset < bytes.count {
        let end = min(bytes.count, offset + chunk)
        decoder.append(bytes[offset..<end])
        offset = end
        while true {
            let frame: Frame?
            do {
                frame = try decoder.next()
            } catch {
                break reading  // the stream is unusable from here: the reader closes it
            }
            guard let frame else { break }
            frames += 1
            _ = WorkerMessage.parseRequest(frame.payload)
            _ = WorkerMessage.parseResponse(frame.payload)
            _ = WorkerMessage.toolsChanged(frame.payload)
            _ = JSONSpan.member("result", in: frame.payload)
            // What one side encodes, the other decodes back to the same frame.
            var echo = FrameDecoder()
            echo.append(frame.encoded())
            guard (try? echo.next()) == frame else { fatalError("frame did not survive encode/decode") }
        }
    }
    _ = frames
    return 0
}
