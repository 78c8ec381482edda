/// Server-sent events (`text/event-stream`) read as they arrive: bytes go in chunk by chunk, the
/// `data` of each complete event comes out.
///
/// Written by hand because the one SSE parser in the build graph (the MCP SDK's EventSource
/// dependency) buffers without a bound and hands out strings; an upstream answer must be held to a
/// byte cap while it is read, and a JSON-RPC message is passed on as bytes. Lines end with CRLF,
/// LF or CR (also when a CRLF is split across chunks); a field without a colon has an empty value;
/// `data` lines of one event are joined with LF; `event`, `id`, `retry` and comments are ignored
/// (MCP sends only `message` events and Leasehold does not resume streams). An event without data
/// is skipped.
struct SSEParser: Sendable {
    /// An event (its data so far and the line being read) grew over ``maximumEventBytes``; the
    /// stream cannot be read further.
    struct Overflow: Error, Sendable {
        /// The bound that was passed.
        let maximumEventBytes: Int
    }

    /// The most bytes one event may hold, data and current line together.
    let maximumEventBytes: Int
    private var line: [UInt8] = []
    private var data: [UInt8] = []
    private var hasData = false
    /// The last line ended with CR: an LF at the start of the next chunk belongs to it.
    private var afterCR = false

    init(maximumEventBytes: Int) {
        self.maximumEventBytes = maximumEventBytes
    }

    /// Reads `chunk`; the data of every event it completed, in order.
    mutating func feed(_ chunk: some Collection<UInt8>) throws(Overflow) -> [[UInt8]] {
        var events: [[UInt8]] = []
        var index = chunk.startIndex
        while index != chunk.endIndex {
            if afterCR {
                afterCR = false
                if chunk[index] == 0x0A {
                    index = chunk.index(after: index)
                    continue
                }
            }
            guard let end = chunk[index...].firstIndex(where: { $0 == 0x0A || $0 == 0x0D }) else {
                line.append(contentsOf: chunk[index...])
                try checkSize()
                break
            }
            line.append(contentsOf: chunk[index..<end])
            try checkSize()
            afterCR = chunk[end] == 0x0D
            index = chunk.index(after: end)
            if let event = endLine() { events.append(event) }
        }
        return events
    }

    /// At the end of the stream: the event it left unterminated, if any (a server that closes
    /// the stream right after its last `data:` line still gets its message read).
    mutating func finish() -> [UInt8]? {
        if !line.isEmpty { _ = endLine() }
        return endLine()
    }

    private func checkSize() throws(Overflow) {
        if line.count + data.count > maximumEventBytes { throw Overflow(maximumEventBytes: maximumEventBytes) }
    }

    /// Ends the current line: an empty one dispatches the event.
    private mutating func endLine() -> [UInt8]? {
        defer { line.removeAll(keepingCapacity: true) }
        if line.isEmpty {
            guard hasData else { return nil }
            let event = data
            data = []
            hasData = false
            return event.isEmpty ? nil : event
        }
        if line[0] == UInt8(ascii: ":") { return nil }
        let colon = line.firstIndex(of: UInt8(ascii: ":"))
        let name = line[..<(colon ?? line.endIndex)]
        guard name.elementsEqual("data".utf8) else { return nil }
        var value = colon.map { line[($0 + 1)...] } ?? []
        if value.first == 0x20 { value = value.dropFirst() }
        if hasData { data.append(0x0A) }
        data += value
        hasData = true
        return nil
    }
}
