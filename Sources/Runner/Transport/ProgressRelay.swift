import Foundation
import Hummingbird
import MCP
import NIOCore
import Sandbox

/// A client's progress token, and the notifications it gets under it.
///
/// An upstream server reports progress under the token Leasehold gave it for the call (never the
/// client's); each report becomes the client's `notifications/progress` under the client's own
/// token, with only the fields the protocol defines (`progress`, `total`, `message`).
enum ProgressRelay {
    /// The SDK's form of a token from ``token(inParams:)``.
    static func sdkToken(_ token: Any) -> ProgressToken? {
        if let text = token as? String { return .string(text) }
        if let number = token as? NSNumber { return .integer(number.intValue) }
        return nil
    }

    /// The fields of a server's progress `params` that are passed on; nil when `progress` is not
    /// a number.
    static func fields(_ params: [UInt8]) -> (progress: Double, total: Double?, message: String?)? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(params)) as? [String: Any],
            let progress = object["progress"] as? NSNumber, String(cString: progress.objCType) != "c"
        else { return nil }
        let total = (object["total"] as? NSNumber).flatMap {
            String(cString: $0.objCType) == "c" ? nil : $0.doubleValue
        }
        return (progress.doubleValue, total, (object["message"] as? String).map { String($0.prefix(1024)) })
    }

    /// The client's `notifications/progress` message for a server's report; nil for a report
    /// without a numeric `progress`.
    static func notification(token: Any, params: [UInt8]) -> Data? {
        guard let fields = fields(params) else { return nil }
        var out: [String: Any] = ["progressToken": token, "progress": fields.progress]
        if let total = fields.total { out["total"] = total }
        if let message = fields.message { out["message"] = message }
        let message: [String: Any] = ["jsonrpc": "2.0", "method": "notifications/progress", "params": out]
        return try? JSONSerialization.data(withJSONObject: message, options: [.withoutEscapingSlashes])
    }

    /// One SSE event carrying `message` (each line of it a `data:` line, so a message holding a
    /// raw newline stays one event).
    static func event(_ message: Data) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeString("event: message\n")
        for line in message.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            buffer.writeString("data: ")
            buffer.writeBytes(line)
            buffer.writeString("\n")
        }
        buffer.writeString("\n")
        return buffer
    }

    /// The SSE body of a call whose client asked for progress: each report under the client's
    /// `token`, then `answer`'s response. A reader gone mid-stream cancels the call and waits for
    /// its end, so its outcome is still recorded.
    static func eventStream(
        reports: AsyncStream<[UInt8]>, token: UncheckedToken, answer task: Task<Data, Never>,
        cancellation: CallCancellation
    ) -> ResponseBody {
        ResponseBody { writer in
            do {
                for await params in reports {
                    if let notification = notification(token: token.value, params: params) {
                        try await writer.write(event(notification))
                    }
                }
                try await writer.write(event(await task.value))
                try await writer.finish(nil)
            } catch {
                cancellation.cancel()
                _ = await task.value
                throw error
            }
        }
    }
}
