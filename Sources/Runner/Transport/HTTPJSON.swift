import Foundation
import Hummingbird

/// JSON helpers for the admin API.
enum HTTPJSON {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    static func response(_ status: HTTPResponse.Status, _ value: some Encodable, headers: HTTPFields = [:]) -> Response
    {
        var headers = headers
        headers[.contentType] = "application/json"
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func error(_ error: APIError, headers: HTTPFields = [:]) -> Response {
        response(HTTPResponse.Status(code: error.status), body(of: error), headers: headers)
    }

    /// `{"error": {"code", "message"}}`: the code and the sentence, never the cause.
    static func body(of error: APIError) -> [String: [String: String]] {
        ["error": ["code": error.code.rawValue, "message": error.message]]
    }

    static func decode<T: Decodable>(_ type: T.Type, from request: inout Request, limit: Int = 1 << 20)
        async throws(APIError) -> T
    {
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: limit)
        } catch {
            throw APIError(.bodyTooLarge, "request bodies are limited to \(limit) bytes")
        }
        if let contentType = request.headers[.contentType], !contentType.lowercased().contains("json") {
            throw APIError(.unsupportedMediaType, "send Content-Type: application/json")
        }
        do {
            return try decoder.decode(T.self, from: Data(buffer: buffer))
        } catch let DecodingError.keyNotFound(key, _) {
            throw APIError.invalid("missing field \(key.stringValue)")
        } catch let DecodingError.typeMismatch(_, context) {
            throw APIError.invalid("wrong type at \(context.codingPath.map(\.stringValue).joined(separator: "."))")
        } catch {
            throw APIError.invalid("the body is not the expected JSON object")
        }
    }
}

/// Wire form of a session with its claim.
struct SessionWithClaim: Encodable {
    let session: Session
    let claim: String?
}
