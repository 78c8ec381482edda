import Foundation
import Testing

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A real `leasehold serve` process on a loopback port with its own state directory, two tenants
/// (acme, globex) each with a workspace holding a canary, and an operator key known to the test.
final class LeaseholdServer: @unchecked Sendable {
    // @unchecked Sendable: the fields are set once in `start` before the instance is shared; the
    // process handle is only used to terminate it.
    let stateDir: String
    let operatorKey = "lh_op_attack-tests-operator-key-0123456789"
    private(set) var baseURL = ""
    private let process = Process()
    private var stderrLines: [String] = []
    private let linesLock = NSLock()

    static var repositoryRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().path
    }

    static var binary: String {
        ProcessInfo.processInfo.environment["LEASEHOLD_BIN"] ?? repositoryRoot + "/.build/debug/leasehold"
    }

    /// Starts the server; `config` is written as leasehold.yaml when given.
    init(config: String? = nil, extraKeys: [String: String] = [:]) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("lh-attack-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        stateDir = dir.resolvingSymlinksInPath().path
        guard FileManager.default.isExecutableFile(atPath: Self.binary) else {
            throw ServerError("leasehold binary not found at \(Self.binary); run swift build first")
        }
        for tenant in ["acme", "globex"] {
            // Inside the runner's default workspace base, <state dir>-workspaces/<tenant>/.
            let root = stateDir + "-workspaces/" + tenant + "/main"
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            try "CANARY-\(tenant.uppercased())-7f3a".write(
                toFile: root + "/secret.txt", atomically: true, encoding: .utf8)
        }
        var arguments = [
            "serve", "--http", "127.0.0.1:0", "--state-dir", stateDir, "--policies", Self.repositoryRoot + "/policies",
        ]
        if let config {
            try config.write(toFile: stateDir + "/leasehold.yaml", atomically: true, encoding: .utf8)
            arguments += ["--config", stateDir + "/leasehold.yaml"]
        }
        process.executableURL = URL(fileURLWithPath: Self.binary)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["LEASEHOLD_OPERATOR_KEY"] = operatorKey
        environment["LOG_LEVEL"] = "info"
        process.environment = environment
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        let (ready, readyContinuation) = AsyncStream<String>.makeStream()
        errors.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self else { return }
            if data.isEmpty {
                handle.readabilityHandler = nil
                readyContinuation.finish()
                return
            }
            for line in self.completeLines(appending: data) {
                if let range = line.range(of: "leasehold: listening on ") {
                    readyContinuation.yield(String(line[range.upperBound...].prefix { $0 != " " }))
                }
            }
        }
        try process.run()
        for await url in ready {
            baseURL = url
            break
        }
        guard !baseURL.isEmpty else { throw ServerError("leasehold exited before listening:\n\(log)") }
        for tenant in ["acme", "globex"] {
            let (status, body) = try await admin(
                "POST", "/api/v1/workspaces",
                ["tenant_id": tenant, "workspace_id": "main", "root": stateDir + "-workspaces/" + tenant + "/main"])
            guard status == 201 else { throw ServerError("workspace registration failed: \(status) \(body)") }
        }
    }

    private var pendingOutput = ""

    /// Appends output and returns the lines it completed (a chunk may end mid-line).
    private func completeLines(appending data: Data) -> [String] {
        linesLock.withLock {
            pendingOutput += String(decoding: data, as: UTF8.self)
            var lines: [String] = []
            while let newline = pendingOutput.firstIndex(of: "\n") {
                lines.append(String(pendingOutput[..<newline]))
                pendingOutput = String(pendingOutput[pendingOutput.index(after: newline)...])
            }
            stderrLines += lines
            return lines
        }
    }

    deinit {
        stop()
        removeStateDirectories()
    }

    /// Removes the state directory and its `-workspaces` sibling once the server has exited, so a
    /// test run leaves nothing in the temporary directory (each holds an audit reserve of tens of MiB).
    private func removeStateDirectories() {
        for path in [stateDir, stateDir + "-workspaces"] {
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    /// Everything the server wrote to stderr so far.
    var log: String { linesLock.withLock { stderrLines.joined(separator: "\n") } }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    // MARK: HTTP

    struct HTTPResult {
        let status: Int
        let headers: [String: String]
        let body: String

        var json: [String: Any] {
            (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any] ?? [:]
        }

        /// The JSON-RPC message in a JSON body or in the `data:` lines of an SSE body.
        var message: [String: Any] {
            if headers["content-type"]?.contains("text/event-stream") == true {
                for line in body.split(separator: "\n") where line.hasPrefix("data: {") {
                    if let object = try? JSONSerialization.jsonObject(with: Data(line.dropFirst(6).utf8))
                        as? [String: Any]
                    {
                        return object
                    }
                }
                return [:]
            }
            return json
        }

        var errorMessage: String { ((message["error"] as? [String: Any])?["message"] as? String) ?? "" }
        var result: [String: Any] { message["result"] as? [String: Any] ?? [:] }
    }

    func request(
        _ method: String, _ path: String, headers: [String: String] = [:], body: Data? = nil
    ) async throws -> HTTPResult {
        guard let url = URL(string: baseURL + path) else { throw ServerError("bad URL \(baseURL + path)") }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.httpBody = body
        request.timeoutInterval = 20
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let (data, response) = try await URLSession.shared.data(for: request)
        guard let http = response as? HTTPURLResponse else { throw ServerError("not an HTTP response") }
        var lowered: [String: String] = [:]
        for (name, value) in http.allHeaderFields {
            lowered[String(describing: name).lowercased()] = String(describing: value)
        }
        return HTTPResult(status: http.statusCode, headers: lowered, body: String(decoding: data, as: UTF8.self))
    }

    func admin(_ method: String, _ path: String, _ body: [String: Any]? = nil, key: String? = nil) async throws -> (
        Int, [String: Any]
    ) {
        var headers = ["Authorization": "Bearer \(key ?? operatorKey)"]
        var data: Data?
        if let body {
            headers["Content-Type"] = "application/json"
            data = try JSONSerialization.data(withJSONObject: body)
        }
        let result = try await request(method, path, headers: headers, body: data)
        return (result.status, result.json)
    }

    /// Creates a session and returns (session id, lease id, claim).
    func createSession(_ body: [String: Any]) async throws -> (id: String, lease: String, claim: String) {
        let (status, json) = try await admin("POST", "/api/v1/sessions", body)
        guard status == 201, let session = json["session"] as? [String: Any], let claim = json["claim"] as? String,
            let id = session["id"] as? String, let lease = (session["lease"] as? [String: Any])?["id"] as? String
        else { throw ServerError("session creation failed: \(status) \(json)") }
        return (id, lease, claim)
    }

    func freshClaim(_ sessionID: String, _ body: [String: Any] = [:]) async throws -> String {
        let (status, json) = try await admin("POST", "/api/v1/sessions/\(sessionID)/claims", body)
        guard status == 201, let claim = json["claim"] as? String else {
            throw ServerError("claim mint failed: \(status) \(json)")
        }
        return claim
    }

    // MARK: MCP

    static let mcpHeaders = ["Content-Type": "application/json", "Accept": "application/json, text/event-stream"]

    func rpc(_ method: String, id: Int = 1, params: [String: Any]? = nil) -> Data {
        var object: [String: Any] = ["jsonrpc": "2.0", "id": id, "method": method]
        if let params { object["params"] = params }
        return try! JSONSerialization.data(withJSONObject: object)
    }

    static var initializeParams: [String: Any] {
        [
            "protocolVersion": "2025-06-18", "capabilities": [:] as [String: Any],
            "clientInfo": ["name": "attack-tests", "version": "1"],
        ]
    }

    /// POSTs an initialize with `claim`; returns the result and the MCP session id on success.
    func initialize(claim: String?, path: String = "/mcp", extraHeaders: [String: String] = [:]) async throws -> (
        HTTPResult, String?
    ) {
        var headers = Self.mcpHeaders.merging(extraHeaders) { _, new in new }
        if let claim { headers["Authorization"] = "Bearer \(claim)" }
        let result = try await request(
            "POST", path, headers: headers, body: rpc("initialize", params: Self.initializeParams))
        return (result, result.headers["mcp-session-id"])
    }

    /// A JSON-RPC call on an initialized MCP session.
    func call(
        _ method: String, params: [String: Any]? = nil, claim: String?, session: String, path: String = "/mcp",
        id: Int = 2
    ) async throws -> HTTPResult {
        var headers = Self.mcpHeaders
        headers["Mcp-Session-Id"] = session
        if let claim { headers["Authorization"] = "Bearer \(claim)" }
        return try await request("POST", path, headers: headers, body: rpc(method, id: id, params: params))
    }
}

struct ServerError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
