import Foundation
import Testing

@testable import Sandbox

/// Where worker cgroups go on the kinds of host Leasehold runs on, and what a tier may rely on
/// without them. The texts are `/proc/self/cgroup` and `/proc/self/mountinfo` as those hosts
/// print them.
@Suite struct WorkerCgroupsTests {
    /// A hybrid host (Debian 11-era, and this CI machine): v1 controllers, an empty v2 mount.
    static let hybridMounts = """
        31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
        32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
        33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
        34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
        35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
        39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
        40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
        41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
        """
    static let hybridMembership = """
        9:name=systemd:/
        8:pids:/
        4:memory:/process_api/1215f5
        3:cpuset:/
        2:cpuacct:/
        1:cpu:/
        0::/
        """

    @Test func aHybridHostUsesEachV1HierarchyAtTheRunnersOwnGroup() {
        let found = WorkerCgroups.hierarchies(membership: Self.hybridMembership, mountinfo: Self.hybridMounts)
        let v1 = found.filter { $0.version == .v1 }
        #expect(
            Set(v1.map(\.directory)) == [
                "/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory/process_api/1215f5", "/sys/fs/cgroup/cpu",
            ])
        #expect(v1.first { $0.directory.hasSuffix("1215f5") }?.controllers == [.memory])
        #expect(
            !v1.contains { $0.directory.contains("cpuacct") || $0.directory.contains("cpuset") }, "cpuacct is not cpu")
        #expect(found.contains { $0.version == .v2 && $0.directory == "/sys/fs/cgroup/unified" })
    }

    @Test func aComountedCpuHierarchyIsFound() {
        let mounts = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct"
        let found = WorkerCgroups.hierarchies(membership: "5:cpu,cpuacct:/system.slice/x.service", mountinfo: mounts)
        #expect(found.map(\.directory) == ["/sys/fs/cgroup/cpu,cpuacct/system.slice/x.service"])
        #expect(found.first?.controllers == [.cpu])
    }

    @Test func aSystemdServiceOnAV2HostUsesItsOwnGroup() {
        let mounts =
            "25 20 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate"
        let found = WorkerCgroups.hierarchies(membership: "0::/system.slice/leasehold.service", mountinfo: mounts)
        #expect(found.map(\.directory) == ["/sys/fs/cgroup/system.slice/leasehold.service"])
        #expect(found.first?.version == .v2)
    }

    /// In a container the cgroup mount's root is the container's own group; a path outside it
    /// is not reachable from here and is skipped rather than guessed.
    @Test func aContainersMountRootIsTakenOffThePath() {
        let mounts = """
            700 690 0:40 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory
            701 690 0:41 /docker/abc /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
            """
        let found = WorkerCgroups.hierarchies(
            membership: "4:memory:/docker/abc/runner\n8:pids:/elsewhere", mountinfo: mounts)
        #expect(found.map(\.directory) == ["/sys/fs/cgroup/memory/runner"])
    }

    @Test func escapedMountPointsAreRead() {
        let mounts = #"35 31 0:32 / /sys/fs/cgroup/my\040memory rw - cgroup cgroup rw,memory"#
        let found = WorkerCgroups.hierarchies(membership: "4:memory:/", mountinfo: mounts)
        #expect(found.map(\.directory) == ["/sys/fs/cgroup/my memory"])
    }

    @Test func relativePaths() {
        #expect(WorkerCgroups.relativePath("/", under: "/") == "")
        #expect(WorkerCgroups.relativePath("/a/b", under: "/") == "/a/b")
        #expect(WorkerCgroups.relativePath("/a/b", under: "/a") == "/b")
        #expect(WorkerCgroups.relativePath("/ab", under: "/a") == nil)
        #expect(WorkerCgroups.relativePath("/a", under: "/a") == "")
    }

    /// A tenant id names one group and never a path: anything but plain characters becomes hex.
    @Test func tenantGroupNamesCannotEscapeOrCollide() {
        #expect(WorkerCgroups.groupName("acme") == "acme")
        #expect(WorkerCgroups.groupName("../../x") == "hex.2e2e2f2e2e2f78")
        #expect(WorkerCgroups.groupName("a/b") != WorkerCgroups.groupName("a_b"))
        #expect(WorkerCgroups.groupName("2e") != WorkerCgroups.groupName("."))
        #expect(WorkerCgroups.groupName("hex") == "hex" && WorkerCgroups.groupName("") == "hex.")
    }

    @Test func cpuWeightsMapToV1Shares() {
        #expect(WorkerCgroups.shares(weight: 100) == 1024)
        #expect(WorkerCgroups.shares(weight: 1) == 10)
        #expect(WorkerCgroups.shares(weight: 50_000) == 102_400)
        #expect(WorkerCgroups.shares(weight: 0) == 10)
    }

    // MARK: What a tier may rely on

    static let exec = WorkerTier(
        name: "exec", isolation: .call, profile: .exec,
        limits: WorkerLimits(memoryMiB: 1024, processes: 64, cpuWeight: 100))
    static let read = WorkerTier(name: "read", isolation: .session, profile: .read, limits: WorkerLimits(processes: 1))

    @Test func withoutCgroupsATreeOfProcessesHasNoMemoryLimit() {
        let none = LimitEnforcement(cgroups: nil)
        #expect(none.unenforceable(Self.exec) == ["memory_mib", "cpu_weight"])
        #expect(none.mechanism("processes", for: Self.exec.limits) != nil, "RLIMIT_NPROC per worker user namespace")
        // One process: its address-space rlimit is the whole worker's memory.
        #expect(none.unenforceable(Self.read).isEmpty)
    }

    @Test func bestEffortLetsATierRunAndSaysWhatIsNotHeld() {
        let none = LimitEnforcement(cgroups: nil)
        var exec = Self.exec
        exec.bestEffort = ["memory_mib"]
        #expect(none.unenforceable(exec) == ["cpu_weight"])
        exec.bestEffort = ["memory_mib", "cpu_weight"]
        #expect(none.unenforceable(exec).isEmpty)
        #expect(none.bestEffortInEffect(exec) == ["memory_mib", "cpu_weight"])
    }

    @Test func cgroupsHoldEveryLimit() {
        let all = LimitEnforcement(
            cgroups: WorkerCgroups(version: .v2, parents: [.memory: "/x", .pids: "/x", .cpu: "/x"]))
        #expect(all.unenforceable(Self.exec).isEmpty)
        var exec = Self.exec
        exec.bestEffort = ["memory_mib"]
        #expect(all.bestEffortInEffect(exec).isEmpty, "best-effort only matters where a limit is not held")
        let memoryOnly = LimitEnforcement(cgroups: WorkerCgroups(version: .v1, parents: [.memory: "/m"]))
        #expect(memoryOnly.unenforceable(Self.exec) == ["cpu_weight"])
        var unweighted = Self.exec
        unweighted.limits.cpuWeight = nil
        #expect(memoryOnly.unenforceable(unweighted).isEmpty, "a tier that asks for no weight needs no cpu controller")
    }

    @Test func anExecutorWithoutProcessesHasNothingAtStake() {
        #expect(LimitEnforcement.inProcess.unenforceable(Self.exec).isEmpty)
    }
}
