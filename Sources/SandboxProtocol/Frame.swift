/// One message between the runner and a worker.
///
/// Wire form: a 4-byte big-endian length of what follows, one kind byte, then the payload.
/// Written by hand because both sides must share it without Foundation and it is a handful of
/// bytes; the payload itself is JSON produced by the caller.
public struct Frame: Hashable, Sendable {
    /// What a frame carries.
    public struct Kind: Hashable, Sendable {
        /// The wire byte.
        public let rawValue: UInt8
        /// Creates a kind from its wire byte.
        public init(rawValue: UInt8) { self.rawValue = rawValue }

        /// Runner -> worker: first frame, carries the protocol version.
        public static let hello = Kind(rawValue: 1)
        /// Worker -> runner: the worker is confined and ready.
        public static let ready = Kind(rawValue: 2)
        /// Runner -> worker: execute one operation.
        public static let request = Kind(rawValue: 3)
        /// Worker -> runner: the result of one operation.
        public static let response = Kind(rawValue: 4)
        /// Either way: a typed failure.
        public static let error = Kind(rawValue: 5)
        /// Worker -> runner, while a request is in flight: an upstream server reported progress
        /// (the payload: the `params` object of its `notifications/progress`, as it sent it). Any
        /// number may precede the `response`.
        public static let progress = Kind(rawValue: 6)
        /// Runner -> worker, while a request is in flight: the client cancelled the call. The
        /// worker answers the request at once (error `cancelled`); one that arrives after the
        /// response is ignored.
        public static let cancel = Kind(rawValue: 7)
    }

    /// The protocol version both sides must agree on in `hello`/`ready` (2: `progress` and
    /// `cancel` frames).
    public static let protocolVersion: UInt8 = 2
    /// Frames larger than this are refused (a confined worker's output is capped far below it).
    public static let maximumPayload = 64 << 20

    /// What the frame carries.
    public var kind: Kind
    /// The payload bytes.
    public var payload: [UInt8]

    /// Creates a frame.
    public init(kind: Kind, payload: [UInt8]) {
        self.kind = kind
        self.payload = payload
    }

    /// The frame's wire bytes.
    public func encoded() -> [UInt8] {
        let length = UInt32(payload.count + 1)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(payload.count + 5)
        bytes.append(UInt8(truncatingIfNeeded: length >> 24))
        bytes.append(UInt8(truncatingIfNeeded: length >> 16))
        bytes.append(UInt8(truncatingIfNeeded: length >> 8))
        bytes.append(UInt8(truncatingIfNeeded: length))
        bytes.append(kind.rawValue)
        bytes.append(contentsOf: payload)
        return bytes
    }
}

/// A frame that could not be decoded.
public struct FrameError: Error, Hashable, Sendable {
    /// Why.
    public let reason: String
}

/// Accumulates bytes from a stream and yields complete frames.
public struct FrameDecoder: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0

    /// Creates an empty decoder.
    public init() {}

    /// Appends bytes read from the peer.
    public mutating func append(_ bytes: some Sequence<UInt8>) {
        buffer.append(contentsOf: bytes)
    }

    /// The next complete frame, nil if more bytes are needed.
    /// - Throws: ``FrameError`` for a zero-length or oversized frame; the stream is then unusable.
    public mutating func next() throws(FrameError) -> Frame? {
        let available = buffer.count - start
        guard available >= 4 else { return nil }
        let length =
            Int(buffer[start]) << 24 | Int(buffer[start + 1]) << 16 | Int(buffer[start + 2]) << 8
            | Int(buffer[start + 3])
        guard length >= 1 else { throw FrameError(reason: "zero-length frame") }
        guard length - 1 <= Frame.maximumPayload else {
            throw FrameError(reason: "frame of \(length) bytes exceeds the \(Frame.maximumPayload)-byte limit")
        }
        guard available >= 4 + length else { return nil }
        let kind = Frame.Kind(rawValue: buffer[start + 4])
        let payload = Array(buffer[(start + 5)..<(start + 4 + length)])
        start += 4 + length
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 1 << 16 {
            buffer.removeFirst(start)
            start = 0
        }
        return Frame(kind: kind, payload: payload)
    }
}
