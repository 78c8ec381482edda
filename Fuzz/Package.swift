// swift-tools-version:6.2
// Fuzz targets for the parsers behind jwt-kit, Yams and the MCP SDK, which the per-file swiftc
// build in scripts/fuzz.sh cannot compile alone. Each target's directory (pkg/<target>/) holds
// symlinks to the Runner source files it needs plus Fuzz/targets/<target>.swift, so the parser is
// compiled (and instrumented) from the very files the runner is built from; the dependencies are
// built without instrumentation. Built by scripts/fuzz.sh with its own scratch path.
// The dependency requirements are the main Package.swift's.
import PackageDescription

let fuzz: [SwiftSetting] = [.unsafeFlags(["-sanitize=fuzzer,address", "-parse-as-library"])]
let link: [LinkerSetting] = [.unsafeFlags(["-sanitize=fuzzer,address"])]

let package = Package(
    name: "leasehold-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/swift-extras/swift-extras-base64.git", from: "1.2.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk.git", exact: "0.12.1"),
    ],
    targets: [
        .executableTarget(
            name: "claims",
            dependencies: [
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ExtrasBase64", package: "swift-extras-base64"),
                "Failures",
            ],
            path: "pkg/claims", swiftSettings: fuzz, linkerSettings: link),
        .executableTarget(
            name: "policy_yaml",
            dependencies: [
                "Sandbox", "WorkspaceRegistry",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "pkg/policy_yaml", swiftSettings: fuzz, linkerSettings: link),
        .executableTarget(
            name: "jsonrpc_edge", dependencies: [.product(name: "MCP", package: "swift-sdk")],
            path: "pkg/jsonrpc_edge", swiftSettings: fuzz, linkerSettings: link),
        .executableTarget(
            name: "config_yaml",
            dependencies: [
                "Sandbox", "WorkspaceRegistry",
                .product(name: "Yams", package: "Yams"),
                .product(name: "MCP", package: "swift-sdk"),
            ],
            path: "pkg/config_yaml", swiftSettings: fuzz, linkerSettings: link),
        .executableTarget(
            name: "hot_edge", dependencies: [.product(name: "MCP", package: "swift-sdk")],
            path: "pkg/hot_edge", swiftSettings: fuzz, linkerSettings: link),
        // The two main-package modules the policy files import, reduced to the files they use
        // (the rest of Sandbox needs NIO); CSandbox is the main package's, whole.
        .target(name: "Sandbox", dependencies: ["CSandbox"], path: "pkg/Sandbox", swiftSettings: fuzz),
        .target(
            name: "CSandbox", path: "pkg/CSandbox",
            linkerSettings: [.linkedLibrary("seccomp"), .linkedLibrary("cap")]),
        .target(name: "WorkspaceRegistry", path: "pkg/WorkspaceRegistry", swiftSettings: fuzz),
        // The one error shape `Refusal` is (the main package's Sources/Failures, whole).
        .target(name: "Failures", path: "pkg/Failures", swiftSettings: fuzz),
    ]
)
