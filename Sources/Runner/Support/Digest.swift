import Crypto

/// SHA-256 helpers (swift-crypto).
public enum Digest {
    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// Lowercase hex SHA-256 of `bytes`.
    public static func sha256Hex(_ bytes: some Sequence<UInt8>) -> String {
        let digest = SHA256.hash(data: Array(bytes))
        // Hex into one buffer: building the string a byte at a time with String(radix:) showed up
        // in the audit trail's profile (every record hashes its body).
        return String(unsafeUninitializedCapacity: 64) { buffer in
            var index = 0
            for byte in digest {
                buffer[index] = hexDigits[Int(byte >> 4)]
                buffer[index + 1] = hexDigits[Int(byte & 0x0F)]
                index += 2
            }
            return 64
        }
    }
}
