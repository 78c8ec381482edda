import Foundation
import Testing

@testable import Runner

/// An upstream's progress reaches the client under the client's own token, with only the fields
/// the protocol defines, as one SSE event whatever the bytes hold.
struct ProgressRelayTests {
    @Test func aReportBecomesTheClientsNotificationUnderItsToken() throws {
        let params = Array(
            #"{"progressToken":"progress_x","progress":2,"total":5,"message":"two","extra":{"x":1}}"#.utf8)
        let data = try #require(ProgressRelay.notification(token: "client-7" as NSString, params: params))
        let message = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect(message["method"] as? String == "notifications/progress")
        let out = try #require(message["params"] as? [String: Any])
        #expect(out["progressToken"] as? String == "client-7")
        #expect(out["progress"] as? Double == 2 && out["total"] as? Double == 5 && out["message"] as? String == "two")
        #expect(out["extra"] == nil, "only progress, total and message are passed on")
    }

    @Test func aReportWithoutANumericProgressIsDropped() {
        for params in [#"{"progress":"2"}"#, #"{"progress":true}"#, #"{}"#, "[1]", "not json"] {
            #expect(
                ProgressRelay.notification(token: NSNumber(value: 1), params: Array(params.utf8)) == nil, "\(params)")
        }
    }

    @Test func onlyStringAndIntegerTokensCount() throws {
        func token(_ json: String) throws -> Any? {
            ProgressRelay.token(inParams: try JSONSerialization.jsonObject(with: Data(json.utf8)))
        }
        #expect(try token(#"{"_meta":{"progressToken":"a"}}"#) as? String == "a")
        #expect((try token(#"{"_meta":{"progressToken":7}}"#) as? NSNumber)?.intValue == 7)
        #expect(try token(#"{"_meta":{"progressToken":true}}"#) == nil)
        #expect(try token(#"{"_meta":{"progressToken":1.5}}"#) == nil)
        #expect(try token(#"{"_meta":{"progressToken":{"a":1}}}"#) == nil)
        #expect(try token(#"{"_meta":{}}"#) == nil)
    }

    @Test func aMessageWithNewlinesIsOneEvent() {
        var event = ProgressRelay.event(Data("{\"a\":\n1}".utf8))
        let text = event.readString(length: event.readableBytes) ?? ""
        #expect(text == "event: message\ndata: {\"a\":\ndata: 1}\n\n")
    }

    @Test func aCancellationIsReadFromItsNotificationOnly() {
        #expect(
            HotMethodEdge.cancelledRequest(
                Data(#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":77}}"#.utf8)) == "77")
        #expect(
            HotMethodEdge.cancelledRequest(
                Data(#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"x"}}"#.utf8)) == "x")
        #expect(
            HotMethodEdge.cancelledRequest(
                Data(#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":true}}"#.utf8)) == nil)
        #expect(
            HotMethodEdge.cancelledRequest(
                Data(#"{"jsonrpc":"2.0","id":1,"method":"notifications/cancelled","params":{"requestId":77}}"#.utf8))
                == nil)
        #expect(
            HotMethodEdge.cancelledRequest(
                Data(#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"notifications/cancelled"}}"#.utf8))
                == nil)
    }
}
