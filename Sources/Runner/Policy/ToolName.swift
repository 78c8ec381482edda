/// Tool names are `<server>.<tool>`, case-sensitive ASCII: `[A-Za-z0-9_-]` segments joined by `.`.
///
/// Keeping names to this alphabet means a look-alike (Cyrillic `е`, full-width `．`) is simply
/// another name that matches nothing, never a second spelling of a real tool.
public enum ToolName {
    /// The longest tool name accepted.
    public static let maximumLength = 128

    /// True when `name` is a well-formed tool name with a server prefix.
    public static func isValid(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard !bytes.isEmpty, bytes.count <= maximumLength else { return false }
        guard let dot = bytes.firstIndex(of: UInt8(ascii: ".")), dot > 0, dot < bytes.count - 1 else { return false }
        var previousWasDot = false
        for byte in bytes {
            if byte == UInt8(ascii: ".") {
                if previousWasDot { return false }
                previousWasDot = true
            } else {
                guard isNameByte(byte) else { return false }
                previousWasDot = false
            }
        }
        return !previousWasDot
    }

    /// The server part of a tool name (`repo` for `repo.read_file`).
    public static func server(of name: String) -> Substring {
        name.prefix { $0 != "." }
    }

    /// A caller-supplied name as it may appear in messages and logs: valid names as they are;
    /// anything else with every non-printable or non-ASCII scalar escaped (`\u{202E}`), cut at
    /// 128 scalars, so a name cannot reorder, hide or forge text in an operator's terminal.
    public static func display(_ name: String) -> String {
        if isValid(name) { return name }
        var shown = ""
        for (index, scalar) in name.unicodeScalars.enumerated() {
            if index == maximumLength {
                shown += "..."
                break
            }
            if scalar.value >= 0x20 && scalar.value < 0x7F && scalar != "\\" && scalar != "\"" {
                shown.unicodeScalars.append(scalar)
            } else {
                shown += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            }
        }
        return "\"" + shown + "\""
    }

    static func isNameByte(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
            || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
    }
}
