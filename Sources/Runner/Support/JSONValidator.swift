/// Whether bytes are exactly one JSON object (RFC 8259), in valid UTF-8, without building anything.
///
/// The encoder splices a worker's result into the response only if it is one JSON object: a
/// worker must not be able to add keys to the result envelope or break it. Written by hand
/// because the only validator at hand, Foundation's `JSONSerialization`, builds the whole
/// `NSDictionary` tree just to throw it away, and that was 5% of a warm read's CPU; this one only
/// walks the bytes. `JSONValidatorTests` checks it against `JSONSerialization` on a mutation
/// corpus.
enum JSONValidator {
    /// Deeper nesting than this is refused (the worker's results are a few levels deep).
    static let maximumDepth = 256

    static func isObject(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBufferPointer { buffer in
            var reader = Reader(bytes: buffer)
            reader.skipSpace()
            guard reader.peek == UInt8(ascii: "{"), reader.value(depth: 0) else { return false }
            reader.skipSpace()
            return reader.index == buffer.count
        }
    }

    private struct Reader {
        let bytes: UnsafeBufferPointer<UInt8>
        var index = 0

        var peek: UInt8? { index < bytes.count ? bytes[index] : nil }

        mutating func skipSpace() {
            while index < bytes.count {
                switch bytes[index] {
                case 0x20, 0x09, 0x0A, 0x0D: index += 1
                default: return
                }
            }
        }

        mutating func expect(_ byte: UInt8) -> Bool {
            guard peek == byte else { return false }
            index += 1
            return true
        }

        mutating func value(depth: Int) -> Bool {
            guard depth < JSONValidator.maximumDepth, let byte = peek else { return false }
            switch byte {
            case UInt8(ascii: "{"):
                index += 1
                skipSpace()
                if expect(UInt8(ascii: "}")) { return true }
                while true {
                    guard string() else { return false }
                    skipSpace()
                    guard expect(UInt8(ascii: ":")) else { return false }
                    skipSpace()
                    guard value(depth: depth + 1) else { return false }
                    skipSpace()
                    if expect(UInt8(ascii: "}")) { return true }
                    guard expect(UInt8(ascii: ",")) else { return false }
                    skipSpace()
                }
            case UInt8(ascii: "["):
                index += 1
                skipSpace()
                if expect(UInt8(ascii: "]")) { return true }
                while true {
                    guard value(depth: depth + 1) else { return false }
                    skipSpace()
                    if expect(UInt8(ascii: "]")) { return true }
                    guard expect(UInt8(ascii: ",")) else { return false }
                    skipSpace()
                }
            case UInt8(ascii: "\""): return string()
            case UInt8(ascii: "t"): return literal("true")
            case UInt8(ascii: "f"): return literal("false")
            case UInt8(ascii: "n"): return literal("null")
            default: return number()
            }
        }

        mutating func literal(_ word: StaticString) -> Bool {
            let count = word.utf8CodeUnitCount
            guard bytes.count - index >= count else { return false }
            for offset in 0..<count where bytes[index + offset] != word.utf8Start[offset] { return false }
            index += count
            return true
        }

        mutating func digits() -> Int {
            let start = index
            while let byte = peek, byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") { index += 1 }
            return index - start
        }

        mutating func number() -> Bool {
            _ = expect(UInt8(ascii: "-"))
            if expect(UInt8(ascii: "0")) {
                // No leading zeros: "01" is not a number.
            } else {
                guard let first = peek, first >= UInt8(ascii: "1"), first <= UInt8(ascii: "9") else { return false }
                _ = digits()
            }
            if expect(UInt8(ascii: ".")) { guard digits() > 0 else { return false } }
            if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
                index += 1
                if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { index += 1 }
                guard digits() > 0 else { return false }
            }
            return true
        }

        mutating func string() -> Bool {
            guard expect(UInt8(ascii: "\"")) else { return false }
            while index < bytes.count {
                let byte = bytes[index]
                switch byte {
                case UInt8(ascii: "\""):
                    index += 1
                    return true
                case UInt8(ascii: "\\"):
                    index += 1
                    guard let escaped = peek else { return false }
                    index += 1
                    switch escaped {
                    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"),
                        UInt8(ascii: "f"), UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                        continue
                    case UInt8(ascii: "u"):
                        guard bytes.count - index >= 4 else { return false }
                        for _ in 0..<4 {
                            guard isHex(bytes[index]) else { return false }
                            index += 1
                        }
                    default: return false
                    }
                case 0x00..<0x20: return false
                case 0x20..<0x80: index += 1
                default: guard scalar() else { return false }
                }
            }
            return false
        }

        func isHex(_ byte: UInt8) -> Bool {
            (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte | 0x20 >= UInt8(ascii: "a") && byte | 0x20 <= UInt8(ascii: "f"))
        }

        /// One well-formed multi-byte UTF-8 scalar (Unicode 15 table 3-7: no overlong forms, no
        /// surrogates, nothing above U+10FFFF).
        mutating func scalar() -> Bool {
            let lead = bytes[index]
            let length: Int
            var low: UInt8 = 0x80
            var high: UInt8 = 0xBF
            switch lead {
            case 0xC2...0xDF: length = 2
            case 0xE0: length = 3; low = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: length = 3; high = 0x9F
            case 0xF0: length = 4; low = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4: length = 4; high = 0x8F
            default: return false
            }
            guard bytes.count - index >= length else { return false }
            let second = bytes[index + 1]
            guard second >= low, second <= high else { return false }
            for offset in 2..<length where bytes[index + offset] & 0xC0 != 0x80 { return false }
            index += length
            return true
        }
    }
}
