// libFuzzer target: the JSON-RPC fast path of the MCP edge. The input is one request body, read by
// - `HotMethodEdge.parse` (Sources/Runner/Transport/HotMethodEdge.swift), the lean edge's parse of
//   `tools/call` / `tools/list`, and `HotMethodEdge.cancelledRequest`, its `notifications/cancelled`;
// - `ModernProtocol.classify` (ModernProtocol.swift), the 2026-07-28 envelope ladder, with no
//   headers and with routing headers mirroring the body, and its result splicing `withFields`;
// - `PipeRequestEnvelope` (PipeRequestEnvelope.swift), what ClaimCarryingTransport reads of a pipe
//   message: its id and the `_meta` claim.
// Properties (JSONSerialization's reading of the same body is the reference): a parsed call names
// the body's method, tool name and arguments, and its id re-serialised by `envelope` is the body's
// id; a body the parse refuses is not a well-formed hot request; the three readers agree on which
// ids are valid; ids as text are at most 128 characters; a request classified without headers is
// classified the same with headers that mirror it; a header value wrapped as `=?base64?…?=`
// unwraps to itself; errors and spliced results are JSON; a body JSONDecoder and JSONSerialization
// read different ids or methods in is refused (`readersAgree`); the pipe envelope's claim is the body's
// (for a document JSONDecoder and JSONSerialization read alike: a key given twice they do not).
import Foundation
import MCP

/// The namespace ProgressRelay+Token.swift extends (the relay itself needs Hummingbird).
enum ProgressRelay {}

private func isHotRequest(_ message: [String: Any]) -> Bool {
    guard let method = message["method"] as? String, method == "tools/call" || method == "tools/list",
        let id = message["id"], ModernProtocol.isValidID(id)
    else { return false }
    guard method == "tools/call" else { return true }
    let params = message["params"] as? [String: Any]
    guard params?["name"] is String else { return false }
    guard let arguments = params?["arguments"] else { return true }
    return arguments is [String: Any]
}

/// Whether two JSONSerialization values are the same JSON (compared as their canonical encoding).
private func same(_ a: Any?, _ b: Any?) -> Bool {
    switch (a, b) {
    case (nil, nil): return true
    case (let a?, let b?):
        let encode = { (value: Any) in
            try? JSONSerialization.data(withJSONObject: [value], options: [.sortedKeys, .fragmentsAllowed])
        }
        return encode(a) != nil && encode(a) == encode(b)
    default: return false
    }
}

private func json(_ data: Data) -> [String: Any]? {
    try? JSONSerialization.jsonObject(with: data, options: []) as? [String: Any]
}

private func checkParse(_ body: Data, _ message: [String: Any]?) {
    guard let call = HotMethodEdge.parse(body) else {
        if let message, isHotRequest(message) {
            fatalError("hot_edge: a well-formed \(message["method"] ?? "") request was not parsed")
        }
        return
    }
    guard let message, isHotRequest(message) else { fatalError("hot_edge: parsed a body that is not a hot request") }
    guard message["method"] as? String == call.methodName else { fatalError("hot_edge: method differs") }
    guard call.idText.count <= 128, call.idText == String(describing: message["id"]!).prefix(128) else {
        fatalError("hot_edge: id text \(call.idText.debugDescription) is not the id's")
    }
    // Re-serialised the way every answer is: the id the body carried, and the value spliced as is.
    let answer = HotMethodEdge.envelope(id: call.id, key: "result", value: Data("{\"k\":[1]}".utf8))
    guard let reply = json(answer), reply["jsonrpc"] as? String == "2.0", same(reply["id"], message["id"]),
        same(reply["result"], ["k": [1]])
    else {
        fatalError(
            "hot_edge: the answer envelope does not carry the request's id: \(String(decoding: answer, as: UTF8.self))")
    }
    let params = message["params"] as? [String: Any]
    if case .call(let name, let arguments) = call.method {
        guard name == params?["name"] as? String else { fatalError("hot_edge: tool name differs") }
        switch (arguments, params?["arguments"]) {
        case (nil, nil): break
        case (let parsed?, let raw?):
            guard case .object(let exact)? = ExactJSON.value(of: raw), exact == parsed else {
                fatalError("hot_edge: arguments differ from the body's")
            }
        default: fatalError("hot_edge: arguments present in one reading only")
        }
        if let token = call.progressToken {
            guard same(token, (params?["_meta"] as? [String: Any])?["progressToken"]) else {
                fatalError("hot_edge: progress token is not the body's")
            }
        }
    }
    for (key, value) in call.traceCarrier {
        guard value.utf8.count <= 512, value == (params?["_meta"] as? [String: Any])?[key] as? String else {
            fatalError("hot_edge: trace carrier \(key) is not the body's")
        }
    }
}

private func checkCancelled(_ body: Data, _ message: [String: Any]?) {
    let expected: String? = {
        guard body.count < 4096, let message, message["method"] as? String == "notifications/cancelled",
            message["id"] == nil, let id = (message["params"] as? [String: Any])?["requestId"],
            ModernProtocol.isValidID(id)
        else { return nil }
        return String(describing: id).prefix(128).description
    }()
    guard HotMethodEdge.cancelledRequest(body) == expected else {
        fatalError("hot_edge: cancelledRequest gave \(String(describing: HotMethodEdge.cancelledRequest(body)))")
    }
}

private func checkModern(_ body: Data, _ message: [String: Any]) {
    let plain = ModernProtocol.classify(message, headers: nil)
    switch plain {
    case .success(let request):
        guard request.method == message["method"] as? String, request.idText.count <= 128,
            ModernProtocol.isValidID(request.id), ModernProtocol.versions.contains(ModernProtocol.version)
        else { fatalError("hot_edge: a classified request differs from its body") }
    case .failure(let rejection):
        guard [400, 404].contains(rejection.httpStatus) else {
            fatalError("hot_edge: envelope refusal \(rejection.code) answered \(rejection.httpStatus)")
        }
        guard let error = json(ModernProtocol.errorMessage(id: message["id"], rejection)),
            (error["error"] as? [String: Any])?["code"] as? Int == rejection.code
        else { fatalError("hot_edge: an envelope refusal is not a JSON-RPC error") }
    }
    // Routing headers mirroring the body (the name wrapped as a client wraps a non-ASCII one).
    let params = message["params"] as? [String: Any]
    let meta = params?["_meta"] as? [String: Any]
    guard let version = meta?[ModernProtocol.protocolVersionKey] as? String, let method = message["method"] as? String
    else { return }
    let name = params?["name"] as? String
    if let name {
        let wrapped = "=?base64?" + Data(name.utf8).base64EncodedString() + "?="
        guard ModernProtocol.decodeHeaderValue(wrapped) == name else {
            fatalError("hot_edge: the wrapped header value of \(name.debugDescription) does not unwrap to it")
        }
    }
    for header in [name, name.map { "=?base64?" + Data($0.utf8).base64EncodedString() + "?=" }] {
        // A plain name that itself looks wrapped is read as wrapped, as a client's would be.
        if let header, ModernProtocol.decodeHeaderValue(header) != name { continue }
        let mirrored = ModernProtocol.classify(
            message, headers: ModernProtocol.Headers(version: version, method: method, name: header))
        switch (plain, mirrored) {
        case (.success, .success): break
        case (.failure(let a), .failure(let b)) where a.code == b.code: break
        default: fatalError("hot_edge: mirroring headers changed the envelope's classification")
        }
    }
}

private func checkPipe(_ body: Data, _ message: [String: Any]?) {
    guard let envelope = try? JSONDecoder().decode(PipeRequestEnvelope.self, from: body), let message else { return }
    // The HTTP edge refuses a body its two readers read different methods or ids in (found here:
    // a member given twice stranded the SDK's stream for the request).
    let id = message["id"].flatMap { $0 is NSNull ? nil : String(describing: $0) }
    if envelope.method != message["method"] as? String || envelope.id?.description != id {
        guard !HotMethodEdge.readersAgree(body) else {
            fatalError("hot_edge: readersAgree passed a body its readers read differently")
        }
    }
    // The pipe reads a message the way the SDK does (JSONDecoder), which differs from
    // JSONSerialization on a key given twice (one keeps the first, the other the last); both
    // readings on the pipe are the SDK's, so the property is for documents both read alike.
    guard let sdk = try? JSONDecoder().decode(Value.self, from: body), sdk == ExactJSON.value(of: message) else {
        return
    }
    let meta = (message["params"] as? [String: Any])?["_meta"] as? [String: Any]
    guard envelope.params?.meta?.claim == meta?["dev.leasehold/claim"] as? String else {
        fatalError("hot_edge: the pipe envelope's claim is not the body's")
    }
    guard envelope.method == message["method"] as? String else { fatalError("hot_edge: pipe method differs") }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHotEdge(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Data(UnsafeBufferPointer(start: data, count: size))
    let message = json(body)
    checkParse(body, message)
    checkCancelled(body, message)
    if let message { checkModern(body, message) }
    checkPipe(body, message)
    // A result spliced with the revision's fields stays a JSON object holding them. The splice is
    // for objects Leasehold encoded, UTF-8 (JSONSerialization also reads UTF-16 and UTF-32, which
    // a NUL byte gives away: `{\0\0\0}\0\0\0` is `{}`; found by a 180-s run, kept as a seed).
    if message != nil, body.first == UInt8(ascii: "{"), !body.contains(0),
        json(ModernProtocol.listResult(body, ttlMs: 5))?["cacheScope"] == nil
    {
        fatalError("hot_edge: a spliced result is not a JSON object with its fields")
    }
    return 0
}

// SwiftPM links an executable's entry point as `<module>_main`; hand it to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("hot_edge_main")
func hotEdgeMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzzHotEdge)
}
