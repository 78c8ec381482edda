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
}
