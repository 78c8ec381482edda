import Crypto

/// SHA-256 helpers (swift-crypto).
public enum Digest {
    /// Lowercase hex SHA-256 of `bytes`.
    public static func sha256Hex(_ bytes: some Sequence<UInt8>) -> String {
        let digest = SHA256.hash(data: Array(bytes))
        var text = ""
        text.reserveCapacity(64)
        for byte in digest {
            text += byte < 16 ? "0" + String(byte, radix: 16) : String(byte, radix: 16)
        }
        return text
    }
}
