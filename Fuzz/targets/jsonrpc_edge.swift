// libFuzzer target: the exact JSON of the MCP edge (Sources/Runner/Support/ExactJSON.swift), which
// turns a request body's `params.arguments` (and a worker's results) into the SDK's `Value`
// without the SDK decoder's rewriting of data-URL-looking strings. The input is one request body.
// Properties: no crash; `value(from:)` is exact (a `Value` without doubles, encoded by the SDK's
// encoder, parses back to the same `Value`); `callArguments(in:id:)` of a single `tools/call`
// gives exactly what `value(from:)` gives for its arguments.
import Foundation
import MCP

/// Whether `value` holds a double anywhere (doubles may not survive an encode-parse round trip
/// digit for digit, which is JSON's business, not the edge's).
private func holdsDouble(_ value: Value) -> Bool {
    switch value {
    case .double: return true
    case .array(let values): return values.contains(where: holdsDouble)
    case .object(let values): return values.values.contains(where: holdsDouble)
    default: return false
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzJSONRPCEdge(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let body = Data(UnsafeBufferPointer(start: data, count: size))
    let parsed = try? ExactJSON.value(from: body)
    if let parsed, !holdsDouble(parsed), let encoded = try? JSONEncoder().encode(parsed) {
        guard let again = try? ExactJSON.value(from: encoded) else {
            fatalError("jsonrpc_edge: the encoding of a parsed value does not parse")
        }
        guard again == parsed else { fatalError("jsonrpc_edge: a value changed in an encode-parse round trip") }
    }
    let arguments = ExactJSON.callArguments(in: body, id: nil)
    if case .object(let message)? = parsed, message["method"] == .string("tools/call"),
        case .object(let params)? = message["params"]
    {
        switch params["arguments"] {
        case .none:
            guard case .some(.none) = arguments else { fatalError("jsonrpc_edge: absent arguments not reported") }
        case .object(let object):
            guard case .some(.some(let found)) = arguments, found == object else {
                fatalError("jsonrpc_edge: callArguments disagrees with value(from:)")
            }
        default:
            guard arguments == nil else { fatalError("jsonrpc_edge: non-object arguments accepted") }
        }
    }
    // A batch of the same request: the arguments of its `tools/call` found by id.
    if case .object(let message)? = parsed, case .string(let id)? = message["id"] {
        var batch = Data("[".utf8)
        batch.append(body)
        batch.append(contentsOf: Array(",{}]".utf8))
        _ = ExactJSON.callArguments(in: batch, id: id)
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

@_cdecl("jsonrpc_edge_main")
func jsonrpcEdgeMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzzJSONRPCEdge)
}
