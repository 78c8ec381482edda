import Sandbox
import Testing

@Suite struct KernelFeaturesTests {
    /// CI's machine has every feature Leasehold uses (DESIGN.md: Linux 6.x, seccomp, Landlock ABI 7,
    /// openat2, unprivileged user namespaces). A probe that reports one missing there is a bug in
    /// the probe, so this fails rather than skips.
    @Test func probesTheFeaturesThisHostHas() {
        let features = KernelFeatures.probe()
        #expect(features.seccomp.isAvailable)
        #expect(features.openat2.isAvailable)
        #expect(features.userNamespaces.isAvailable)
        #expect((features.landlockABI ?? 0) >= 1)
    }

    @Test func unavailableExecutorNeverFabricatesAResult() async {
        let outcome = await UnavailableExecutor().execute(
            ToolInvocation(
                tool: "repo.read_file", tier: "read", arguments: Array("{}".utf8), tenantID: "acme", workspaceID: "w",
                workspaceRoot: "/srv/acme", sessionID: "s", leaseID: "l", policyVersion: "v"))
        guard case .unavailable(let reason) = outcome else {
            Issue.record("expected .unavailable, got \(outcome)")
            return
        }
        #expect(reason.contains("repo.read_file"))
    }
}
