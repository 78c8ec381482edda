import Foundation
import Logging
import Synchronization
import Testing

@testable import Runner

/// `--log-format json`: each line one JSON object any parser reads, whatever the message holds.
@Suite(.timeLimit(.minutes(1))) struct JSONLogHandlerTests {
    @Test func eachLineIsOneJSONObjectWithMetadataAtTheTop() throws {
        let lines = Mutex<[[UInt8]]>([])
        var handler = JSONLogHandler(label: "leasehold") { line in lines.withLock { $0.append(line) } }
        handler.logLevel = .info
        handler[metadataKey: "node"] = "n1"
        var logger = Logger(label: "leasehold", factory: { _ in handler })
        logger.logLevel = .info
        logger.debug("not written")
        logger.info(
            "a \"quoted\"\nmessage\u{1}",
            metadata: [
                "request_id": "7", "msg": "cannot replace the message",
                "nested": ["list": ["a", .stringConvertible(2)], "k": "v"],
            ])
        let written = lines.withLock { $0 }
        #expect(written.count == 1)
        let line = try #require(written.first)
        #expect(line.last == UInt8(ascii: "\n"))
        #expect(line.dropLast().contains(UInt8(ascii: "\n")) == false)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any])
        #expect(object["msg"] as? String == "a \"quoted\"\nmessage\u{1}")
        #expect(object["level"] as? String == "info")
        #expect(object["logger"] as? String == "leasehold")
        #expect(object["request_id"] as? String == "7")
        #expect(object["node"] as? String == "n1")
        #expect((object["nested"] as? [String: Any])?["list"] as? [String] == ["a", "2"])
        let time = try #require(object["ts"] as? String)
        #expect(try Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(time) <= Date())
    }
}
