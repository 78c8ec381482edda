import Foundation

// Apart from the relay in ProgressRelay.swift, so the fuzz target of the request parsing that
// reads tokens (Fuzz/targets/hot_edge.swift) compiles without Hummingbird.
extension ProgressRelay {
    /// The `params._meta.progressToken` of a request parsed with JSONSerialization: a string or an
    /// integer (anything else is no token).
    static func token(inParams params: Any?) -> Any? {
        guard let meta = (params as? [String: Any])?["_meta"] as? [String: Any], let token = meta["progressToken"]
        else {
            return nil
        }
        if token is String { return token }
        // An integer: not a boolean (`c`) and not a float (`d`, `f`).
        if let number = token as? NSNumber, !["c", "d", "f"].contains(String(cString: number.objCType)) {
            return number
        }
        return nil
    }

    /// The token of a raw request message (stdio).
    static func token(inMessage body: Data) -> Any? {
        guard let message = try? JSONSerialization.jsonObject(with: body) as? [String: Any] else { return nil }
        return token(inParams: message["params"])
    }
}
