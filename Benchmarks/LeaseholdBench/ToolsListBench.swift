import Foundation
import MCP
import Runner

/// Figure 2: the server-side work of `tools/list` for one session, split in stages.
///
/// - `scope_compile`: `Scope(session:claimAllowedTools:endpointServer:catalog:)` (done per request by
///   `Gateway.authenticate`).
/// - `visible_tools`: `resolver.listingJSON(in: scope)` (`Gateway.listToolsJSON`): the visible set,
///   the names handed to the connection registry, and the result JSON assembled from per-tool
///   fragments encoded once per catalog and policy (the first sample of each tool pays for its
///   fragment; warm-up covers that, as a long-running runner does).
/// - `name_set`: reading the names `listingJSON` returned.
/// - `encode`: splicing the result into the JSON-RPC envelope, as `HotMethodEdge` answers
///   `tools/list` over HTTP. `sdk_encode`: the same response as the MCP SDK's `Server.send` would
///   encode it (`JSONEncoder` over `Response<ListTools>`), for comparison; stdio still answers so.
/// - `resolution` = scope_compile + visible_tools + name_set; `response` = resolution + encode.
struct ToolsListResult: Encodable {
    let catalogTools: Int
    let visibleTools: Int
    let allowPatterns: Int
    let denyPatterns: Int
    let responseBytes: Int
    let warmup: Int
    let resolverBuildMs: Double
    let stages: [String: Summary]

    enum CodingKeys: String, CodingKey {
        case catalogTools = "catalog_tools"
        case visibleTools = "visible_tools"
        case allowPatterns = "allow_patterns"
        case denyPatterns = "deny_patterns"
        case responseBytes = "response_bytes"
        case warmup
        case resolverBuildMs = "resolver_build_ms"
        case stages
    }
}

enum ToolsListBench {
    /// Which stages a run times (`--profile` narrows to one so callgrind sees only that work).
    enum Only: String {
        case all, resolve, encode
    }

    struct Setup {
        let catalog: Catalog
        let resolver: ScopeResolver
        let session: Session
        let buildMs: Double
    }

    static func setup(tools count: Int, policies: String) throws -> Setup {
        let base = try RiskPolicy.load(directory: policies)
        let policy = try RiskPolicy(
            tiers: base.tiers, rules: base.rules.map { ($0.pattern.text, $0.tier) } + Fixture.policyRules,
            version: base.version + "+bench")
        // The catalog holds `count` tools in all: the built-in repo/shell tools plus upstream fixtures.
        let catalog = try Catalog(
            extra: Fixture.tools(count: count - BuiltinTools.workspace.count),
            bundles: ["support-desk": ["kb.*", "support.*", "crm.contacts_get"], "readers": ["kb.*", "docs.*"]])
        let clock = ContinuousClock()
        let start = clock.now
        let resolver = ScopeResolver(catalog: catalog, policy: policy)
        let buildMs = (clock.now - start).nanoseconds / 1e6
        return Setup(catalog: catalog, resolver: resolver, session: try Fixture.session(), buildMs: buildMs)
    }

    static func run(tools count: Int, samples: Int, warmup: Int, policies: String, only: Only = .all) throws
        -> ToolsListResult
    {
        let setup = try setup(tools: count, policies: policies)
        let session = setup.session
        let resolver = setup.resolver
        let catalog = setup.catalog

        // Sanity: the fixture must exercise allow, deny, unmapped and the built-ins, or the figure means nothing.
        let scope = try Scope(session: session, claimAllowedTools: nil, endpointServer: nil, catalog: catalog)
        let visible = resolver.visibleTools(in: scope).map(\.mcpTool)
        let names = Set(visible.map(\.name))
        guard names.contains("system.search_tools"), names.contains("system.execute_tool") else {
            throw BenchError("built-in system tools are missing from tools/list")
        }
        if let leaked = names.first(where: {
            $0.hasSuffix("_admin") || $0.hasSuffix("_delete") || $0.hasPrefix("billing.") || $0.hasPrefix("legal.")
        }) {
            throw BenchError("denied tool \(leaked) is visible: the fixture or the resolver is wrong")
        }
        guard names.contains("kb.contacts_get"), visible.count > 2 + count / 20 else {
            throw BenchError("only \(visible.count) of \(count) tools visible: the allow list matches too little")
        }

        let clock = ContinuousClock()
        var scopeTimes: [Double] = []
        var visibleTimes: [Double] = []
        var nameSetTimes: [Double] = []
        var encodeTimes: [Double] = []
        var sdkEncodeTimes: [Double] = []
        var resolutionTimes: [Double] = []
        var responseTimes: [Double] = []
        var responseBytes = 0
        for iteration in 0..<(warmup + samples) {
            let t0 = clock.now
            let scope = try Scope(session: session, claimAllowedTools: nil, endpointServer: nil, catalog: catalog)
            let t1 = clock.now
            let (listedNames, json) = resolver.listingJSON(in: scope)
            let t2 = clock.now
            let names = listedNames
            let t3 = clock.now
            var bytes = 0
            var t5 = t3
            if only != .resolve {
                var data = Data(#"{"jsonrpc":"2.0","id":"#.utf8)
                data.append(contentsOf: Array(String(iteration).utf8))
                data.append(contentsOf: Array(#","result":"#.utf8))
                data.append(json)
                data.append(UInt8(ascii: "}"))
                bytes = data.count
                t5 = clock.now
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                let sdk = try encoder.encode(
                    Response<ListTools>(id: .number(iteration), result: ListTools.Result(tools: resolver.listing(in: scope))))
                consume(sdk.count)
            }
            let t6 = clock.now
            let t4 = t5
            consume(names.count &+ bytes)
            responseBytes = bytes
            guard iteration >= warmup else { continue }
            scopeTimes.append((t1 - t0).nanoseconds)
            visibleTimes.append((t2 - t1).nanoseconds)
            nameSetTimes.append((t3 - t2).nanoseconds)
            encodeTimes.append((t4 - t3).nanoseconds)
            sdkEncodeTimes.append((t6 - t5).nanoseconds)
            resolutionTimes.append((t3 - t0).nanoseconds)
            responseTimes.append((t4 - t0).nanoseconds)
        }
        var stages: [String: Summary] = [
            "scope_compile": Summary(nanoseconds: scopeTimes),
            "visible_tools": Summary(nanoseconds: visibleTimes),
            "name_set": Summary(nanoseconds: nameSetTimes),
            "resolution": Summary(nanoseconds: resolutionTimes),
        ]
        if only != .resolve {
            stages["encode"] = Summary(nanoseconds: encodeTimes)
            stages["sdk_encode"] = Summary(nanoseconds: sdkEncodeTimes)
            stages["response"] = Summary(nanoseconds: responseTimes)
        }
        let resolution = stages["resolution"]!
        note(
            "tools/list \(count) tools (\(visible.count) visible): resolution median \(fmt(resolution.medianUs)) us, "
                + "p99 \(fmt(resolution.p99Us)) us"
                + (stages["encode"].map { "; encode median \(fmt($0.medianUs)) us" } ?? ""))
        return ToolsListResult(
            catalogTools: catalog.tools.count, visibleTools: visible.count, allowPatterns: Fixture.allowed.count,
            denyPatterns: Fixture.denied.count, responseBytes: responseBytes, warmup: warmup,
            resolverBuildMs: setup.buildMs, stages: stages)
    }
}
