/// Rules for the short ASCII identifiers used for tenants, workspaces, actors, servers and bundles.
public enum Identifier {
    /// The longest identifier accepted.
    public static let maximumLength = 64

    /// True when `value` is 1...64 characters of `[A-Za-z0-9_-]`, starting with a letter or digit.
    ///
    /// Identifiers end up in audit records, log lines and database keys; keeping them to a small
    /// ASCII alphabet rules out look-alike Unicode, separators and control characters.
    public static func isValid(_ value: String) -> Bool {
        let bytes = Array(value.utf8)
        guard !bytes.isEmpty, bytes.count <= maximumLength else { return false }
        guard isAlphanumeric(bytes[0]) else { return false }
        return bytes.allSatisfy { isAlphanumeric($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
    }

    private static func isAlphanumeric(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
    }
}
