// swift-tools-version:6.2
import PackageDescription

let package = Package(
    name: "leasehold",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "leasehold", targets: ["leasehold"]),
        .executable(name: "leasehold-worker", targets: ["leasehold-worker"]),
        .library(name: "Runner", targets: ["Runner"]),
    ],
    dependencies: [
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk.git", exact: "0.12.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        // Several runner nodes share sessions, bindings, approvals and the audit trail in PostgreSQL.
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-extras/swift-extras-base64.git", from: "1.2.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        // OTLP over HTTP/protobuf only: the gRPC trait would add grpc-swift to every build.
        .package(url: "https://github.com/swift-otel/swift-otel.git", from: "1.6.0", traits: ["OTLPHTTP"]),
    ],
    targets: [
        // C on the runner's side: kernel feature probes, the clone-to-execve confinement path and
        // seccomp compilation (libseccomp), capability dropping (libcap).
        .target(
            name: "CSandbox",
            linkerSettings: [.linkedLibrary("seccomp"), .linkedLibrary("cap")]
        ),
        // C on the worker's side: syscalls without a libc wrapper Swift can call (openat2,
        // seccomp), no external libraries so the worker links statically.
        .target(name: "CWorker"),
        // The one error shape (a typed code, a message, a cause for logs only); no dependencies and
        // no Foundation, so every module (the static worker's too) can share it.
        .target(name: "Failures"),
        // Frames and error codes exchanged with workers; no Foundation so both sides can share it.
        .target(name: "SandboxProtocol", dependencies: ["Failures"]),
        .target(
            name: "Sandbox",
            dependencies: [
                "CSandbox", "Failures", "SandboxProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "WorkspaceRegistry",
            dependencies: ["Failures"]
        ),
        .target(
            name: "Runner",
            dependencies: [
                "Failures",
                "Sandbox",
                "SandboxProtocol",
                "WorkspaceRegistry",
                .product(name: "MCP", package: "swift-sdk"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "GRDB", package: "GRDB.swift"),
                // The sqlite3 C API GRDB is built on: the audit log fsyncs its WAL through SQLite's
                // own file handle (batched audit sync), which GRDB has no call for.
                .product(name: "GRDBSQLite", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "ExtrasBase64", package: "swift-extras-base64"),
                // `transport: http` upstream servers: streamed request bodies and SSE answers.
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "OTel", package: "swift-otel"),
            ]
        ),
        .executableTarget(
            name: "leasehold",
            dependencies: [
                "Runner",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Statically linked: read and write tiers mount no system directories at all, so the
        // worker must run with nothing but itself (no dynamic loader, no shared libraries).
        .executableTarget(
            name: "leasehold-worker",
            dependencies: ["SandboxProtocol", "CWorker"],
            // Synchronization must follow FoundationEssentials on the link line, which a modulemap
            // link directive does not guarantee; the modulemap names the other two.
            linkerSettings: [.unsafeFlags(["-static-executable"]), .linkedLibrary("swiftSynchronization")]
        ),
        // `make bench`: server-side figures measured in-process (claims, scope resolution).
        .executableTarget(
            name: "leasehold-bench",
            dependencies: ["Runner", .product(name: "MCP", package: "swift-sdk")],
            path: "Benchmarks/LeaseholdBench"
        ),
        .testTarget(name: "FailuresTests", dependencies: ["Failures"]),
        .testTarget(name: "SandboxProtocolTests", dependencies: ["SandboxProtocol"]),
        // Fixtures/try-syscall.c is compiled by the tests themselves (static, with gcc) and run
        // inside workers; SwiftPM must not treat it as a source of the test target.
        .testTarget(
            name: "SandboxTests",
            dependencies: ["Sandbox", "CSandbox", "SandboxProtocol", .product(name: "NIOPosix", package: "swift-nio")],
            exclude: ["Fixtures"]
        ),
        .testTarget(name: "WorkspaceRegistryTests", dependencies: ["WorkspaceRegistry"]),
        .testTarget(
            name: "RunnerTests",
            dependencies: [
                "Runner",
                // Migration tests build a database in an earlier schema.
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "MCP", package: "swift-sdk"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                // A fake Streamable HTTP server for HTTPUpstream's tests.
                .product(name: "Hummingbird", package: "hummingbird"),
                // A connection of the audit trail's own, to bound a statement that gets no answer.
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            resources: []
        ),
    ]
)

// Shared settings for every target (swift-log's Package.swift pattern).
for target in package.targets where target.type != .system && target.name != "CSandbox" {
    var settings = target.swiftSettings ?? []
    settings.append(.swiftLanguageMode(.v6))
    settings.append(.enableUpcomingFeature("ExistentialAny"))
    target.swiftSettings = settings
}
