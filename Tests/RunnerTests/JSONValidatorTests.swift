import Foundation
import Testing

@testable import Runner

/// The splice validator against Foundation's parser, on hand-picked cases and on thousands of
/// mutations of real results: it never accepts what Foundation refuses, and refuses what Foundation
/// accepts only where Foundation is laxer than RFC 8259 (a trailing comma, a leading byte order mark).
@Suite struct JSONValidatorTests {
    static func foundationSaysObject(_ bytes: [UInt8]) -> Bool {
        (try? JSONSerialization.jsonObject(with: Data(bytes), options: [])) is NSDictionary
    }

    /// Foundation's known leniencies, which the validator does not share.
    static func foundationIsLaxer(_ bytes: [UInt8]) -> Bool {
        let text = String(decoding: bytes, as: UTF8.self)
        return text.hasPrefix("\u{FEFF}")
            || text.replacingOccurrences(of: "[ \t\n\r]", with: "", options: .regularExpression).contains(",}")
            || text.replacingOccurrences(of: "[ \t\n\r]", with: "", options: .regularExpression).contains(",]")
    }

    static func agree(_ bytes: [UInt8]) -> Bool {
        let ours = JSONValidator.isObject(bytes)
        let foundation = foundationSaysObject(bytes)
        return ours == foundation || (!ours && foundationIsLaxer(bytes))
    }

    static let seeds: [String] = [
        #"{}"#, #"{"a":1}"#, #" { "a" : [ 1 , -2.5e+3 , 0 , 0.1 , 1E5 , true , false , null ] } "#,
        #"{"content":"data: [1, 2]","path":"a.txt","size":4096,"truncated":false}"#,
        #"{"s":"\"\\\/\b\f\n\r\t\u00e9\u0041","é😀":"ü"}"#,
        #"{"nested":{"a":{"b":{"c":[[[{}]]]}}},"empty":[],"e":""}"#,
        #"{"error":{"code":"not_found","message":"no such file: x"}}"#,
    ]

    @Test func agreesWithFoundationOnChosenCases() {
        var cases = Self.seeds
        cases += [
            "", " ", "[]", "1", "\"x\"", "null", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}", "{\"a\":1}{}",
            "{\"a\":01}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":-}", "{\"a\":1e}", "{\"a\":+1}", "{\"a\":tru}",
            "{\"a\":True}", "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}", "{\"a\":\"\\u12G4\"}", "{'a':1}", "{a:1}",
            "{\"a\":[1,]}", "{\"a\":[,1]}", "{\"a\":NaN}", "{\"a\":Infinity}", "{\"a\":1} x", "\u{FEFF}{}",
            "{\"a\":\"\u{1}\"}", "{\"a\":\"\t\"}", "{\"a\":1}\n", "\n\r\t {}",
        ]
        // Where Foundation is laxer, the validator refuses: nothing it splices is less than RFC 8259 JSON.
        for lax in ["{\"a\":1,}", "{\"a\":[1,]}", "\u{FEFF}{}"] {
            #expect(!JSONValidator.isObject(Array(lax.utf8)) && Self.foundationSaysObject(Array(lax.utf8)))
        }
        for text in cases {
            let bytes = Array(text.utf8)
            #expect(Self.agree(bytes), "\(text.debugDescription)")
        }
    }

    @Test func refusesMalformedUTF8InStrings() {
        let bad: [[UInt8]] = [
            [0xFF], [0xC0, 0x80], [0xC1, 0xBF], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
            [0xF5, 0x80, 0x80, 0x80], [0xC3], [0xE2, 0x82], [0x80], [0xC3, 0x28],
        ]
        for sequence in bad {
            let bytes = Array(#"{"a":""#.utf8) + sequence + Array(#""}"#.utf8)
            #expect(!JSONValidator.isObject(bytes), "\(sequence)")
        }
        let good: [[UInt8]] = [[0xC3, 0xA9], [0xE2, 0x82, 0xAC], [0xF0, 0x9F, 0x98, 0x80], [0xEF, 0xBF, 0xBF]]
        for sequence in good {
            let bytes = Array(#"{"a":""#.utf8) + sequence + Array(#""}"#.utf8)
            #expect(JSONValidator.isObject(bytes), "\(sequence)")
        }
    }

    @Test func boundsNesting() {
        let deep = String(repeating: "[", count: 300) + String(repeating: "]", count: 300)
        #expect(!JSONValidator.isObject(Array(("{\"a\":" + deep + "}").utf8)))
        let fine = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(JSONValidator.isObject(Array(("{\"a\":" + fine + "}").utf8)))
    }

    /// Random single and double mutations of the seeds (a fixed-seed generator, so a failure
    /// reproduces): replaced, inserted and deleted bytes drawn from JSON's own alphabet.
    @Test func agreesWithFoundationOnMutations() {
        var random = SplitMix64(seed: 0x1ea5e401d)
        let alphabet = Array("{}[]:,\"\\ /0123456789.-+eEtrufalsn\u{1}\t\nx".utf8) + [0xC3, 0xA9, 0xFF, 0x80]
        var disagreements: [String] = []
        for _ in 0..<20_000 {
            var bytes = Array(Self.seeds[Int(random.next() % UInt64(Self.seeds.count))].utf8)
            for _ in 0..<(1 + Int(random.next() % 2)) {
                let position = Int(random.next() % UInt64(bytes.count + 1))
                let byte = alphabet[Int(random.next() % UInt64(alphabet.count))]
                switch random.next() % 3 {
                case 0 where position < bytes.count: bytes[position] = byte
                case 1: bytes.insert(byte, at: position)
                default: if position < bytes.count { bytes.remove(at: position) }
                }
            }
            if !Self.agree(bytes) {
                disagreements.append(String(decoding: bytes, as: UTF8.self).debugDescription)
            }
        }
        #expect(disagreements.isEmpty, "\(disagreements.prefix(10))")
    }
}
