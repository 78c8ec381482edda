import Testing

@testable import Runner

/// An http upstream's answers are read as they arrive: events come out whole however the bytes
/// were cut, and no event may grow past its bound.
@Suite struct SSEParserTests {
    /// Feeds `chunks` one by one; every event's data as text, the one left open at the end last.
    func events(_ chunks: [String], maximum: Int = 1 << 20) throws -> [String] {
        var parser = SSEParser(maximumEventBytes: maximum)
        var out: [String] = []
        for chunk in chunks {
            out += try parser.feed(Array(chunk.utf8)).map { String(decoding: $0, as: UTF8.self) }
        }
        if let last = parser.finish() { out.append(String(decoding: last, as: UTF8.self)) }
        return out
    }

    @Test func eventsSplitAnywhereComeOutWhole() throws {
        let stream = "event: message\nid: 7\ndata: {\"a\":1}\n\n: a comment\ndata:{\"b\":2}\nretry: 100\n\n"
        #expect(try events([stream]) == [#"{"a":1}"#, #"{"b":2}"#])
        // Every cut of the stream into two chunks, and one byte at a time.
        for cut in 0...stream.utf8.count {
            let bytes = Array(stream.utf8)
            let parts = [
                String(decoding: bytes[..<cut], as: UTF8.self), String(decoding: bytes[cut...], as: UTF8.self),
            ]
            #expect(try events(parts) == [#"{"a":1}"#, #"{"b":2}"#], "cut at \(cut)")
        }
        #expect(try events(stream.map { String($0) }) == [#"{"a":1}"#, #"{"b":2}"#])
    }

    @Test func crlfAndCrEndLinesAlsoWhenSplitBetweenChunks() throws {
        #expect(try events(["data: one\r\n\r\ndata: two\r\r"]) == ["one", "two"])
        // The CR ends one chunk and its LF starts the next: one line end, not two (which would
        // dispatch an empty event between the data lines).
        #expect(try events(["data: a\r", "\ndata: b\r", "\n\r", "\n"]) == ["a\nb"])
    }

    @Test func dataLinesOfOneEventAreJoinedWithNewlines() throws {
        #expect(try events(["data: {\"x\":\ndata:  [1,\ndata\ndata: 2]}\n\n"]) == ["{\"x\":\n [1,\n\n2]}"])
        // Fields other than data, and events without data, give nothing.
        #expect(try events(["event: ping\n\nid: 3\n\n:keepalive\n\n"]) == [])
    }

    @Test func anEventLeftOpenAtTheEndIsRead() throws {
        #expect(try events(["data: last"]) == ["last"])
        #expect(try events(["data: last\n"]) == ["last"])
    }

    @Test func anOversizeEventStopsTheStream() throws {
        var parser = SSEParser(maximumEventBytes: 16)
        #expect(try parser.feed(Array("data: 0123456789\n\n".utf8)).count == 1)
        // Over the bound within one line, split over chunks, and across the lines of one event.
        #expect(throws: SSEParser.Overflow.self) { _ = try parser.feed(Array("data: 0123456789abcdef".utf8)) }
        var split = SSEParser(maximumEventBytes: 16)
        _ = try split.feed(Array("data: 01234".utf8))
        #expect(throws: SSEParser.Overflow.self) { _ = try split.feed(Array("56789abcdef".utf8)) }
        var lines = SSEParser(maximumEventBytes: 16)
        _ = try lines.feed(Array("data: 0123456\n".utf8))
        #expect(throws: SSEParser.Overflow.self) { _ = try lines.feed(Array("data: 789abcdef\n".utf8)) }
    }
}
