import Foundation
import MCP
import WorkspaceRegistry
import Yams

/// Every tool the gateway knows, by server, plus named bundles of patterns.
///
/// The catalog is what exists; scope resolution decides what a session sees of it.
public struct Catalog: Sendable {
    /// All non-system tools, sorted by name.
    public let tools: [ToolDescriptor]
    /// Tool index by name (system tools included).
    private let byName: [String: ToolDescriptor]
    /// Known server ids.
    public let servers: Set<String>
    /// Bundles by id.
    public let bundles: [String: PatternSet]
    /// The search index over names and descriptions.
    let searchIndex: SearchIndex
    /// The bundles' patterns as written (a rebuilt catalog keeps them).
    let bundlePatterns: [String: [String]]

    /// Builds a catalog from the built-in tools plus `extra` tools and bundles.
    public init(extra: [ToolDescriptor] = [], bundles: [String: [String]] = [:]) throws {
        var byName: [String: ToolDescriptor] = [:]
        for tool in BuiltinTools.system + BuiltinTools.workspace + extra {
            guard ToolName.isValid(tool.name) else {
                throw CatalogError("tool name \"\(tool.name)\" is not <server>.<tool> in [A-Za-z0-9_-]")
            }
            guard byName[tool.name] == nil else { throw CatalogError("tool \(tool.name) is defined twice") }
            if tool.server == "system" && !BuiltinTools.system.contains(tool) {
                throw CatalogError("the system server is reserved for built-in tools (\(tool.name))")
            }
            byName[tool.name] = tool
        }
        var compiled: [String: PatternSet] = [:]
        for (id, patterns) in bundles {
            guard Identifier.isValid(id) else {
                throw CatalogError("bundle id \"\(id)\" is not a short ASCII identifier")
            }
            do {
                compiled[id] = try PatternSet(parsing: patterns)
            } catch {
                throw CatalogError("bundle \(id): \(error)")
            }
        }
        let tools = byName.values.filter { $0.server != "system" }.sorted { $0.name < $1.name }
        self.tools = tools
        self.byName = byName
        self.servers = Set(byName.values.map(\.server))
        self.bundles = compiled
        self.bundlePatterns = bundles
        self.searchIndex = SearchIndex(tools: tools)
    }

    /// This catalog with `server`'s tools replaced by `tools` (an upstream server's latest list).
    public func replacing(server: String, with tools: [ToolDescriptor]) throws -> Catalog {
        let kept = self.tools.filter { $0.server != server && !BuiltinTools.workspace.contains($0) }
        return try Catalog(extra: kept + tools, bundles: bundlePatterns)
    }

    /// The descriptor for a name, system tools included.
    public func tool(named name: String) -> ToolDescriptor? { byName[name] }

    /// Reads extra servers and bundles from a catalog YAML file:
    /// `servers: [{id, tools: [{name, description, input_schema?}]}]`, `bundles: {id: [patterns]}`.
    public static func load(file: String) throws -> Catalog {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw CatalogError("cannot read catalog file \(file)")
        }
        let decoded: CatalogFile
        do {
            decoded = try YAMLDecoder().decode(CatalogFile.self, from: text)
        } catch {
            throw CatalogError("\(file): \(error)")
        }
        return try decoded.catalog()
    }
}

extension CatalogFile {
    /// Builds the catalog.
    public func catalog() throws -> Catalog {
        var extra: [ToolDescriptor] = []
        for server in servers ?? [] {
            guard Identifier.isValid(server.id), !server.id.contains("-") || true else {
                throw CatalogError("server id \"\(server.id)\" is not a short ASCII identifier")
            }
            guard !["repo", "shell", "system"].contains(server.id) else {
                throw CatalogError("server id \(server.id) is reserved for a built-in server")
            }
            for entry in server.tools {
                guard ToolName.server(of: entry.name) == server.id else {
                    throw CatalogError("tool \(entry.name) must be named \(server.id).<tool>")
                }
                extra.append(
                    ToolDescriptor(
                        name: entry.name, description: entry.description ?? "",
                        inputSchema: entry.inputSchema ?? ["type": "object"]))
            }
        }
        return try Catalog(extra: extra, bundles: bundles ?? [:])
    }
}

/// A catalog that cannot be used.
public struct CatalogError: Error, Sendable, CustomStringConvertible {
    /// What is wrong.
    public let description: String
    init(_ description: String) { self.description = description }
}
