import Foundation
import MCP

/// Canonical JSON bytes (sorted keys, no insignificant whitespace) for argument digests and for
/// handing arguments to workers, via Foundation's JSONEncoder.
public enum CanonicalJSON {
    /// Encodes `value` canonically.
    public static func encode(_ value: Value) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(value))
    }
}
