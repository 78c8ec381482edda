// libFuzzer target: the policy files (Sources/Runner/Policy/PolicyFiles.swift, RiskPolicy.swift):
// Yams composes the YAML, the reader walks the nodes. The input is tiers.yaml, then after a NUL
// byte tools.yaml, then after another NUL byte tenants/acme.yaml (optional), written to a scratch
// policies directory and loaded exactly as the runner loads it. Bad files must give diagnostics
// (never none); a loaded policy must answer tier lookups.
import Foundation
import Sandbox

/// The worker tier of a risk tier is built by the runner's tool dispatch, which the policy parser
/// never calls; RiskPolicy.swift names it, so the harness provides the name. Reaching it is a bug
/// in the harness, not a finding.
enum ToolDispatch {
    static func workerTier(_ name: String, _ tier: RiskTier) -> WorkerTier {
        fatalError("policy_yaml: parsing reached ToolDispatch.workerTier")
    }
}

enum FuzzPolicyDirectory {
    static let path: String = {
        let path = NSTemporaryDirectory() + "/leasehold-fuzz-policy-\(getpid())"
        try! FileManager.default.createDirectory(atPath: path + "/tenants", withIntermediateDirectories: true)
        return path
    }()
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPolicyYAML(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = UnsafeBufferPointer(start: data, count: size)
    let parts = input.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false).map { Data($0) }
    let directory = FuzzPolicyDirectory.path
    let tenant = directory + "/tenants/acme.yaml"
    try! parts[0].write(to: URL(fileURLWithPath: directory + "/tiers.yaml"))
    try! (parts.count > 1 ? parts[1] : Data()).write(to: URL(fileURLWithPath: directory + "/tools.yaml"))
    if parts.count > 2 {
        try! parts[2].write(to: URL(fileURLWithPath: tenant))
    } else {
        try? FileManager.default.removeItem(atPath: tenant)
    }
    do {
        let policy = try PolicyFiles.load(directory: directory)
        for tool in ["fs.read", "fs.write", "shell.run", "vivi.search", "x"] {
            _ = policy.tier(for: tool)
            _ = policy.tier(for: tool, tenant: "acme")
            _ = policy.ambiguity(for: tool)
        }
    } catch {
        guard !error.diagnostics.isEmpty else { fatalError("a policy was refused without a diagnostic") }
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

@_cdecl("policy_yaml_main")
func policyYAMLMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    var argc = argc
    var argv = argv
    return LLVMFuzzerRunDriver(&argc, &argv, fuzzPolicyYAML)
}
