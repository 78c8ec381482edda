import Foundation
import MCP

// Apart from the parsing in HotMethodEdge.swift, so the fuzz target of the parsing
// (Fuzz/targets/hot_edge.swift) compiles without the gateway.
extension HotMethodEdge {
    /// Runs the request and returns the JSON-RPC response message.
    static func answer(_ call: Call, gateway: Gateway, context: CallContext) async -> Data {
        switch call.method {
        case .list:
            return envelope(
                id: call.id, key: "result", value: await gateway.listToolsJSON(in: context, requestID: call.idText))
        case .call(let name, let arguments):
            do {
                let answer = try await gateway.answer(name, arguments: arguments, in: context, requestID: call.idText)
                return envelope(id: call.id, key: "result", value: ResultEncoder.json(answer))
            } catch {
                // The same error the SDK handler path gives for a refusal.
                return response(id: call.id, error: MCPError.invalidParams(error.description))
            }
        }
    }
}
