// libFuzzer target: leasehold.yaml (Sources/Runner/Runtime/LeaseholdConfig.swift and the sections
// it decodes: http, tenant_limits, oauth, metrics, worker_host_ids, workspaces, catalog). The input
// is the file's text, decoded exactly as `serve` decodes it (`LeaseholdConfig.decode`, Yams
// underneath, every section refusing keys it does not know), then the `http:` bounds applied the
// way `serve` applies them.
// Properties: no crash; a refusal names the file, and its line (`file:line:`) is a line of the
// text; a top-level or `http:` key the runner does not know is never accepted; decoding is
// repeatable; applied `http:` bounds are inside their documented ranges; a `tenant_limits`
// override accepted names a tenant id; a `listen` address that parses has a port of 0-65535.
import Foundation
import WorkspaceRegistry
import Yams

/// The keys of a mapping node that are plain strings, or nil for a node that is not a mapping.
private func keys(of node: Node?) -> [String]? {
    node?.mapping.map { $0.keys.compactMap(\.string) }
}

/// Lines of `text` as YAML counts them: CR LF, CR, LF, NEL, LS and PS each end a line (a file
/// with old-Mac CR line ends has as many lines as it has CRs, and `file:line` counts them so).
private func yamlLines(_ text: String) -> Int {
    var lines = 1
    var previous: Unicode.Scalar?
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\n" where previous == "\r": break
        case "\n", "\r", "\u{85}", "\u{2028}", "\u{2029}": lines += 1
        default: break
        }
        previous = scalar
    }
    return lines
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzConfigYAML(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // The runner reads the file as UTF-8 and refuses one that is not.
    guard let text = String(bytes: UnsafeBufferPointer(start: data, count: size), encoding: .utf8) else { return 0 }
    let file = "leasehold.yaml"
    let config: LeaseholdConfig
    do {
        config = try LeaseholdConfig.decode(text, file: file)
    } catch {
        guard error.description.hasPrefix(file + ":") else {
            fatalError("config_yaml: a refusal does not name the file: \(error.description)")
        }
        let rest = error.description.dropFirst(file.count + 1)
        if let line = Int(rest.prefix { $0.isNumber }), rest.dropFirst(String(line).count).hasPrefix(":") {
            let lines = yamlLines(text)
            guard (1...max(1, lines)).contains(line) else {
                fatalError("config_yaml: refusal placed at line \(line) of a \(lines)-line file: \(error.description)")
            }
        }
        return 0
    }
    // Accepted: every key it holds is one the runner reads (a merge key `<<` is Yams's to resolve).
    let node = try? Yams.compose(yaml: text)
    let known = Set(LeaseholdConfig.CodingKeys.allCases.map(\.rawValue) + LeaseholdConfig.otherKeys + ["<<"])
    if let top = keys(of: node), let unknown = top.first(where: { !known.contains($0) }) {
        fatalError("config_yaml: unknown top-level key \(unknown.debugDescription) accepted")
    }
    let httpKnown = Set(HTTPLimits.CodingKeys.allCases.map(\.rawValue) + ["<<"])
    if let http = keys(of: node?.mapping?["http"]), let unknown = http.first(where: { !httpKnown.contains($0) }) {
        fatalError("config_yaml: unknown http key \(unknown.debugDescription) accepted")
    }
    // Repeatable.
    guard let again = try? LeaseholdConfig.decode(text, file: file), again.listen == config.listen,
        again.http?.maxBodyBytes == config.http?.maxBodyBytes, again.workspaces?.count == config.workspaces?.count
    else { fatalError("config_yaml: a second decoding of the same text differs") }
    // The HTTP bounds as `serve` applies them.
    var settings = HTTPSettings(host: "127.0.0.1", port: 0)
    if (try? config.http?.apply(to: &settings)) != nil {
        let seconds = { (duration: Duration) in Double(duration.components.seconds) }
        guard (1024...(1 << 20)).contains(settings.maximumHeaderBytes),
            (8...10_000).contains(settings.maximumHeaderFields),
            (1024...(1 << 30)).contains(settings.maximumBodyBytes),
            (1...1_000_000).contains(settings.maximumConnections),
            (0...1_000_000).contains(settings.maximumConnectionsPerAddress),
            (1...1000).contains(settings.maximumSSEStreamsPerSession),
            (0...3600).contains(seconds(settings.headerTimeout)), (0...3600).contains(seconds(settings.bodyTimeout)),
            (0...3600).contains(seconds(settings.keepAliveTimeout)),
            (1...86400).contains(seconds(settings.idleTimeout)),
            settings.headerTimeout > .zero, settings.bodyTimeout > .zero, settings.keepAliveTimeout > .zero
        else { fatalError("config_yaml: http bounds applied outside their ranges: \(settings)") }
    }
    if let limits = config.tenantLimits {
        let resolved = try? limits.resolve(0) { caps, base, _ throws(ConfigError) in caps.sessions ?? base }
        if let resolved, let bad = resolved.overrides.keys.first(where: { !Identifier.isValid($0) }) {
            fatalError("config_yaml: tenant_limits override for \(bad.debugDescription) accepted")
        }
    }
    _ = try? config.oauth?.validated()
    if let listen = config.listen, let (host, port) = try? parseHostPort(listen) {
        guard !host.isEmpty, (0...65535).contains(port) else {
            fatalError("config_yaml: listen \(listen.debugDescription) parsed to \(host):\(port)")
        }
    }
    return 0
}

// SwiftPM links an executable's entry point as `<module>_main`; hand it to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt
) -> CInt

@_cdecl("config_yaml_main")
func configYAMLMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzzConfigYAML)
}
