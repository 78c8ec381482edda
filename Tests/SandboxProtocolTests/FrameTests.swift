import SandboxProtocol
import Testing

@Suite struct FrameTests {
    @Test func roundTripsAcrossArbitraryChunking() throws {
        let frames = [
            Frame(kind: .hello, payload: [Frame.protocolVersion]),
            Frame(kind: .request, payload: Array("{\"op\":\"read\"}".utf8)),
            Frame(kind: .response, payload: []),
        ]
        let bytes = frames.flatMap { $0.encoded() }
        for chunk in [1, 2, 3, 7, bytes.count] {
            var decoder = FrameDecoder()
            var decoded: [Frame] = []
            var offset = 0
            while offset < bytes.count {
                decoder.append(bytes[offset..<min(offset + chunk, bytes.count)])
                offset += chunk
                while let frame = try decoder.next() { decoded.append(frame) }
            }
            #expect(decoded == frames)
        }
    }

    @Test func refusesZeroLengthAndOversizedFrames() {
        var zero = FrameDecoder()
        zero.append([0, 0, 0, 0])
        #expect(throws: FrameError.self) { try zero.next() }

        var huge = FrameDecoder()
        huge.append([0xFF, 0xFF, 0xFF, 0xFF, 1])
        #expect(throws: FrameError.self) { try huge.next() }
    }

    @Test func waitsForTheRestOfAFrame() throws {
        var decoder = FrameDecoder()
        let bytes = Frame(kind: .ready, payload: [1, 2, 3]).encoded()
        decoder.append(bytes.dropLast())
        #expect(try decoder.next() == nil)
        decoder.append(bytes.suffix(1))
        #expect(try decoder.next() == Frame(kind: .ready, payload: [1, 2, 3]))
    }
}
