/// Where a top-level member's value lies in a JSON object's bytes, without decoding it.
///
/// Upstream results pass through unchanged: a decoder and encoder would reorder keys, rewrite
/// numbers and escapes. Written by hand because neither FoundationEssentials' JSONDecoder nor
/// JSONSerialization gives byte ranges; it only skips values (strings with their escapes,
/// nesting up to ``maximumDepth``) and refuses what it cannot skip. The runner still validates
/// a span before it sends it on.
public enum JSONSpan {
    /// Deeper nesting is refused rather than followed.
    public static let maximumDepth = 256

    /// The byte range of the value of `key` among the top-level members of the object in
    /// `bytes`; nil when `bytes` is not an object, has no such member, or cannot be skipped.
    public static func member(_ key: String, in bytes: some RandomAccessCollection<UInt8>) -> Range<Int>? {
        let data = Array(bytes)
        var index = 0
        skipSpace(data, &index)
        guard index < data.count, data[index] == UInt8(ascii: "{") else { return nil }
        index += 1
        let wanted = Array(key.utf8)
        skipSpace(data, &index)
        if index < data.count, data[index] == UInt8(ascii: "}") { return nil }
        while index < data.count {
            skipSpace(data, &index)
            guard index < data.count, data[index] == UInt8(ascii: "\"") else { return nil }
            let nameStart = index + 1
            guard skipString(data, &index) else { return nil }
            let name = data[nameStart..<(index - 1)]
            skipSpace(data, &index)
            guard index < data.count, data[index] == UInt8(ascii: ":") else { return nil }
            index += 1
            skipSpace(data, &index)
            let valueStart = index
            guard skipValue(data, &index, depth: 0) else { return nil }
            // A key spelled with escapes is compared as written: MCP keys never need them.
            if name.elementsEqual(wanted) { return valueStart..<index }
            skipSpace(data, &index)
            guard index < data.count else { return nil }
            if data[index] == UInt8(ascii: ",") {
                index += 1
                continue
            }
            return nil
        }
        return nil
    }

    private static func skipSpace(_ data: [UInt8], _ index: inout Int) {
        while index < data.count, data[index] == 0x20 || data[index] == 0x0A || data[index] == 0x0D || data[index] == 0x09 {
            index += 1
        }
    }

    /// From an opening quote to just past the closing one.
    private static func skipString(_ data: [UInt8], _ index: inout Int) -> Bool {
        index += 1
        while index < data.count {
            switch data[index] {
            case UInt8(ascii: "\""):
                index += 1
                return true
            case UInt8(ascii: "\\"):
                index += 2
            case 0..<0x20:
                return false
            default:
                index += 1
            }
        }
        return false
    }

    private static func skipValue(_ data: [UInt8], _ index: inout Int, depth: Int) -> Bool {
        guard depth < maximumDepth, index < data.count else { return false }
        switch data[index] {
        case UInt8(ascii: "\""):
            return skipString(data, &index)
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            let close = data[index] == UInt8(ascii: "{") ? UInt8(ascii: "}") : UInt8(ascii: "]")
            let isObject = close == UInt8(ascii: "}")
            index += 1
            skipSpace(data, &index)
            if index < data.count, data[index] == close {
                index += 1
                return true
            }
            while index < data.count {
                skipSpace(data, &index)
                if isObject {
                    guard index < data.count, data[index] == UInt8(ascii: "\""), skipString(data, &index) else { return false }
                    skipSpace(data, &index)
                    guard index < data.count, data[index] == UInt8(ascii: ":") else { return false }
                    index += 1
                    skipSpace(data, &index)
                }
                guard skipValue(data, &index, depth: depth + 1) else { return false }
                skipSpace(data, &index)
                guard index < data.count else { return false }
                if data[index] == UInt8(ascii: ",") {
                    index += 1
                } else if data[index] == close {
                    index += 1
                    return true
                } else {
                    return false
                }
            }
            return false
        default:
            // A number or a literal: up to the next delimiter.
            let start = index
            while index < data.count {
                let byte = data[index]
                if byte == UInt8(ascii: ",") || byte == UInt8(ascii: "}") || byte == UInt8(ascii: "]") || byte == 0x20
                    || byte == 0x0A || byte == 0x0D || byte == 0x09
                {
                    break
                }
                index += 1
            }
            return index > start
        }
    }
}
