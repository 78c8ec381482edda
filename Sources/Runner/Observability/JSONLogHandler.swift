import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// A swift-log handler writing one JSON object per line to standard error (`serve --log-format
/// json`): `ts` (RFC 3339, UTC, milliseconds), `level`, `logger`, `msg`, then the metadata as
/// top-level keys (nested metadata as objects and arrays).
///
/// Written here because swift-log ships only a text handler and no well-kept JSON handler is among
/// the packages the build machines hold; it is a formatter, nothing more. Each line goes out in
/// one `write(2)`, so lines from concurrent tasks never interleave.
public struct JSONLogHandler: LogHandler {
    /// The label of the logger, as `logger`.
    public let label: String
    /// Metadata of this handler (merged under each message's own).
    public var metadata: Logger.Metadata = [:]
    /// The lowest level written.
    public var logLevel: Logger.Level = .info

    /// Where lines go; standard error unless a test captures them.
    private let sink: @Sendable ([UInt8]) -> Void

    /// A handler writing to standard error.
    public init(label: String) {
        self.init(label: label) { line in
            line.withUnsafeBufferPointer { buffer in
                var offset = 0
                while offset < buffer.count {
                    let written = Glibc.write(2, buffer.baseAddress! + offset, buffer.count - offset)
                    if written <= 0 {
                        if written < 0 && errno == EINTR { continue }
                        return
                    }
                    offset += written
                }
            }
        }
    }

    /// A handler writing each line (with its newline) to `sink`.
    public init(label: String, sink: @escaping @Sendable ([UInt8]) -> Void) {
        self.label = label
        self.sink = sink
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line: [UInt8] = []
        line.reserveCapacity(256)
        line.append(contentsOf: #"{"ts":"#.utf8)
        Self.string(Self.timestamp(), into: &line)
        line.append(contentsOf: #","level":"#.utf8)
        Self.string(event.level.rawValue, into: &line)
        line.append(contentsOf: #","logger":"#.utf8)
        Self.string(label, into: &line)
        line.append(contentsOf: #","msg":"#.utf8)
        Self.string(event.message.description, into: &line)
        var merged = metadata
        if let own = event.metadata { merged.merge(own) { _, new in new } }
        // The fixed keys win over metadata of the same name; the rest in a stable order.
        for (key, value) in merged.sorted(by: { $0.key < $1.key })
        where !["ts", "level", "logger", "msg"].contains(key) {
            line.append(UInt8(ascii: ","))
            Self.string(key, into: &line)
            line.append(UInt8(ascii: ":"))
            Self.value(value, into: &line)
        }
        if event.level >= .error {
            line.append(contentsOf: #","source":"#.utf8)
            Self.string("\(event.file):\(event.line)", into: &line)
        }
        line.append(contentsOf: "}\n".utf8)
        sink(line)
    }

    private static func value(_ value: Logger.Metadata.Value, into out: inout [UInt8]) {
        switch value {
        case .string(let text): string(text, into: &out)
        case .stringConvertible(let convertible): string(convertible.description, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                self.value(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .dictionary(let entries):
            out.append(UInt8(ascii: "{"))
            for (index, (key, item)) in entries.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                string(key, into: &out)
                out.append(UInt8(ascii: ":"))
                self.value(item, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// A JSON string: quotes, backslashes and control characters escaped (RFC 8259 §7).
    static func string(_ text: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: #"\""#.utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: #"\\"#.utf8)
            case UInt8(ascii: "\n"): out.append(contentsOf: #"\n"#.utf8)
            case UInt8(ascii: "\r"): out.append(contentsOf: #"\r"#.utf8)
            case UInt8(ascii: "\t"): out.append(contentsOf: #"\t"#.utf8)
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: #"\u00"#.utf8)
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xf)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }

    private static let timeFormat = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    private static func timestamp() -> String {
        timeFormat.format(Date())
    }
}
