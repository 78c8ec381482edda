#if canImport(Glibc)
    import Glibc
#endif

/// One `host:port` a stdio upstream server's `network:` grants: the only kind of place its
/// workers may reach, through the runner's egress proxy (``EgressProxy``).
///
/// Strict on purpose: a DNS name or an IP literal (IPv6 in brackets) and a port, nothing else: no
/// wildcards, no ranges, no scheme or path. Names are compared as written (lower-cased); the proxy
/// never resolves a name to decide whether it is granted, so `localhost:80` and `127.0.0.1:80`
/// are two different grants.
public struct EgressTarget: Sendable, Hashable, CustomStringConvertible {
    /// The port of the runner's egress proxy on 127.0.0.1 inside a granted worker's network
    /// namespace (its own namespace: every granted worker uses the same port).
    public static let proxyPort = 3128
    /// What a granted server's `HTTP_PROXY`, `HTTPS_PROXY` and `ALL_PROXY` say.
    public static let proxyURL = "http://127.0.0.1:\(proxyPort)"
    /// A lower-cased DNS name, a dotted IPv4 address, or an IPv6 address in its canonical form
    /// (without brackets).
    public var host: String
    /// 1-65535.
    public var port: Int

    /// Why a text is not a target, in words an operator can act on.
    public struct ParseError: Error, Sendable, Hashable {
        /// What is wrong.
        public var reason: String
    }

    /// `host:port`, with an IPv6 host in brackets.
    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// Parses `host:port` (`[v6]:port` for IPv6).
    public init(parsing text: String) throws(ParseError) {
        let host: String
        let portText: Substring
        if text.contains("/") || text.contains("@") {
            throw ParseError(reason: "\(text): a grant is host:port, without a scheme, user or path")
        }
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else {
                throw ParseError(reason: "\(text): an IPv6 address needs its closing ]")
            }
            let inner = String(text[text.index(after: text.startIndex)..<close])
            guard let canonical = Self.canonical(inner, family: AF_INET6) else {
                throw ParseError(reason: "\(text): \(inner) is not an IPv6 address")
            }
            host = canonical
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { throw ParseError(reason: "\(text): a port is required (host:port)") }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw ParseError(reason: "\(text): a port is required (host:port)")
            }
            let name = text[..<colon]
            portText = text[text.index(after: colon)...]
            guard !name.contains(":") else {
                throw ParseError(reason: "\(text): an IPv6 address goes in brackets ([::1]:443)")
            }
            if name.contains("*") {
                throw ParseError(reason: "\(text): wildcards are not allowed; name each host")
            }
            if !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }) {
                guard let canonical = Self.canonical(String(name), family: AF_INET), canonical == name else {
                    throw ParseError(reason: "\(text): \(name) is not a dotted IPv4 address")
                }
                host = canonical
            } else {
                guard Self.isDNSName(name) else {
                    throw ParseError(
                        reason: "\(text): \(name) is not a host name (labels of a-z, 0-9 and -, at most 253 characters)"
                    )
                }
                host = name.lowercased()
            }
        }
        guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
            let port = Int(portText), (1...65535).contains(port)
        else {
            throw ParseError(reason: "\(text): the port must be a number from 1 to 65535")
        }
        self.host = host
        self.port = port
    }

    /// A DNS name: labels of letters, digits and inner hyphens, 1-63 characters each, 253 in all,
    /// and a last label that is not all digits (that would be a mistyped address).
    static func isDNSName(_ name: Substring) -> Bool {
        guard !name.isEmpty, name.utf8.count <= 253 else { return false }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            guard (1...63).contains(label.utf8.count), label.first != "-", label.last != "-",
                label.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x7A).contains($0 | 0x20) || $0 == 0x2D })
            else { return false }
        }
        return !(labels.last?.allSatisfy { $0.isNumber } ?? true)
    }

    /// The canonical text of an address of `family`, nil when `text` is not one.
    static func canonical(_ text: String, family: Int32) -> String? {
        var storage = in6_addr()
        guard inet_pton(family, text, &storage) == 1 else { return nil }
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(family, &storage, &buffer, socklen_t(buffer.count)) != nil else { return nil }
        return String(cString: buffer)
    }
}
