import Crypto

/// Unguessable identifiers for sessions, leases, claims and connections.
public enum RandomID {
    /// `prefix_` followed by 128 random bits in lowercase hex (visible ASCII, safe in headers and paths).
    public static func make(prefix: String) -> String {
        var generator = SystemRandomNumberGenerator()
        let high = generator.next() as UInt64
        let low = generator.next() as UInt64
        return prefix + "_" + hex(high) + hex(low)
    }

    /// A random secret token of 256 bits, base64url, with a readable prefix.
    public static func secret(prefix: String) -> String {
        let key = SymmetricKey(size: .bits256)
        return prefix + "_" + key.withUnsafeBytes { Base64URL.encode($0) }
    }

    private static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
