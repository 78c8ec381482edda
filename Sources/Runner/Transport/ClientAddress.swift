import NIOCore

/// The key under which a client's connections and unauthenticated refusals are counted.
///
/// An IPv4 address counts as itself (an IPv4-mapped IPv6 address too). An IPv6 address counts as
/// its /64: one host is routinely given a whole /64, so counting single addresses would let it
/// pick 2^64 sources and walk around every per-address bound.
enum ClientAddress {
    /// `203.0.113.7`, `2001:db8:1:2::/64`, or `unknown` (no address, or a unix socket).
    static func key(_ address: SocketAddress?) -> String {
        switch address {
        case .v4:
            return address?.ipAddress ?? "unknown"
        case .v6(let v6):
            var raw = v6.address.sin6_addr
            let bytes = withUnsafeBytes(of: &raw) { Array($0) }
            guard bytes.count == 16 else { return "unknown" }
            if bytes[0..<10].allSatisfy({ $0 == 0 }) && bytes[10] == 0xff && bytes[11] == 0xff {
                return bytes[12..<16].map(String.init).joined(separator: ".")
            }
            let groups = stride(from: 0, to: 8, by: 2).map {
                String(UInt16(bytes[$0]) << 8 | UInt16(bytes[$0 + 1]), radix: 16)
            }
            return groups.joined(separator: ":") + "::/64"
        default:
            return "unknown"
        }
    }

    /// The key of a textual IP address; nil when it is not one.
    static func key(ipAddress: String) -> String? {
        (try? SocketAddress(ipAddress: ipAddress, port: 0)).map { key($0) }
    }
}

/// The few answers the connection guards write themselves, below the HTTP codec: before a request
/// head exists (or instead of the answer to one that never completed), always closing after.
enum RawHTTPAnswer {
    /// `HTTP/1.1 <status>` with `Connection: close` and a JSON-RPC error body whose message is
    /// `message` (`<code>: <sentence>`, like every other refusal).
    static func bytes(status: Int, reason: String, message: String) -> ByteBuffer {
        let escaped = message.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
        let body = #"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"\#(escaped)"}}"#
        let head =
            "HTTP/1.1 \(status) \(reason)\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n"
            + "Connection: close\r\n\r\n"
        return ByteBuffer(string: head + body)
    }
}
