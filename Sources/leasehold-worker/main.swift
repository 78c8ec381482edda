import SandboxProtocol

// The confined worker. It currently implements only the protocol handshake: the runner's
// executor does not start workers yet (see Sandbox.UnavailableExecutor), and any operation
// request is answered with a typed error rather than a made-up result.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

func writeFrame(_ frame: Frame) {
    let bytes = frame.encoded()
    var offset = 0
    while offset < bytes.count {
        let written = bytes[offset...].withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
        if written < 0 {
            if errno == EINTR { continue }
            exit(74)
        }
        offset += written
    }
}

if CommandLine.arguments.dropFirst().first == "--version" {
    print("leasehold-worker protocol \(Frame.protocolVersion)")
    exit(0)
}

var decoder = FrameDecoder()
var chunk = [UInt8](repeating: 0, count: 65536)
readLoop: while true {
    let count = chunk.withUnsafeMutableBytes { read(0, $0.baseAddress, $0.count) }
    if count < 0 {
        if errno == EINTR { continue }
        exit(74)
    }
    if count == 0 { break }
    decoder.append(chunk[0..<count])
    do {
        while let frame = try decoder.next() {
            switch frame.kind {
            case .hello:
                guard frame.payload == [Frame.protocolVersion] else {
                    writeFrame(Frame(kind: .error, payload: Array("protocol_mismatch".utf8)))
                    exit(65)
                }
                writeFrame(Frame(kind: .ready, payload: [Frame.protocolVersion]))
            default:
                writeFrame(Frame(kind: .error, payload: Array("unsupported_operation".utf8)))
            }
        }
    } catch {
        writeFrame(Frame(kind: .error, payload: Array("bad_frame: \(error.reason)".utf8)))
        exit(65)
    }
}
exit(0)
