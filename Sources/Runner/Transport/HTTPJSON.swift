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

    /// Decodes a JSON request body, refusing a member `T` does not know (see ``RequestBody``).
    static func decode<T: RequestBody>(_ type: T.Type, from request: inout Request, limit: Int = 1 << 20)
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
        let data = Data(buffer: buffer)
        // Not an object: the decode below says what is wrong with it.
        if let names = try? decoder.decode(MemberNames.self, from: data).names {
            let known = T.fieldNames
            if let unknown = names.filter({ !known.contains($0) }).sorted().first {
                throw APIError.invalid(
                    "unknown field \(displayName(unknown)) (the fields are: \(known.sorted().joined(separator: ", ")))")
            }
        }
        do {
            return try decoder.decode(T.self, from: data)
        } catch let DecodingError.keyNotFound(key, _) {
            throw APIError.invalid("missing field \(key.stringValue)")
        } catch let DecodingError.typeMismatch(_, context) {
            throw APIError.invalid("wrong type at \(context.codingPath.map(\.stringValue).joined(separator: "."))")
        } catch {
            throw APIError.invalid("the body is not the expected JSON object")
        }
    }

    /// A client's field name as an error message shows it: quoted, at most 64 characters, anything
    /// but printable ASCII escaped (it is the caller's text, echoed into logs and UIs).
    private static func displayName(_ name: String) -> String {
        let scalars = name.unicodeScalars
        let shown = scalars.prefix(64).map { scalar in
            (0x20..<0x7F).contains(scalar.value) && scalar != "\"" && scalar != "\\"
                ? String(scalar) : "\\u{\(String(scalar.value, radix: 16))}"
        }
        return "\"\(shown.joined())\(scalars.count > 64 ? "…" : "")\""
    }

    /// The member names of a JSON object, decoded as a bare key set.
    private struct MemberNames: Decodable {
        let names: [String]

        init(from decoder: any Decoder) throws {
            names = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue)
        }

        struct AnyKey: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }
    }
}

/// Wire form of a session with its claim.
struct SessionWithClaim: Encodable {
    let session: Session
    let claim: String?
}
