import Foundation
import MCP
import Sandbox
import Testing
import WorkspaceRegistry
import Yams

@testable import Runner

#if canImport(Glibc)
    import Glibc
#endif

/// A scratch directory removed at the end of a test.
private final class Scratch {
    let path: String
    init() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("disk-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: true)
        path = base.resolvingSymlinksInPath().path
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    func write(_ name: String, bytes: Int) throws {
        let url = URL(fileURLWithPath: path + "/" + name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try Data(repeating: 0x61, count: bytes).write(to: url)
    }

    func allocated(_ name: String) -> Int64 {
        var st = stat()
        return lstat(path + "/" + name, &st) == 0 ? Int64(st.st_blocks) * 512 : -1
    }
}

/// ``DiskWalk``: what a workspace holds, without following links out of it.
@Suite struct DiskWalkTests {
    static let unbounded = DiskUsage(bytes: .max / 2, files: .max / 2)

    @Test func countsNestedFilesAndDirectoriesByAllocatedBlocks() throws {
        let scratch = try Scratch()
        try scratch.write("a.txt", bytes: 10_000)
        try scratch.write("d/e/f/b.txt", bytes: 100)
        let measured = try DiskWalk.measure(root: scratch.path, bound: Self.unbounded)
        #expect(measured.incomplete == nil)
        // root, a.txt, d, d/e, d/e/f, b.txt
        #expect(measured.usage.files == 6)
        let files = scratch.allocated("a.txt") + scratch.allocated("d/e/f/b.txt")
        let directories = ["", "d", "d/e", "d/e/f"].map { scratch.allocated($0) }.reduce(0, +)
        #expect(measured.usage.bytes == files + directories)
        #expect(files >= 10_000 + 100)
    }

    @Test func symlinksAreCountedNotFollowed() throws {
        let outside = try Scratch()
        try outside.write("big.bin", bytes: 1 << 20)
        let scratch = try Scratch()
        try scratch.write("small.txt", bytes: 10)
        #expect(symlink(outside.path, scratch.path + "/dirlink") == 0)
        #expect(symlink(outside.path + "/big.bin", scratch.path + "/filelink") == 0)
        let measured = try DiskWalk.measure(root: scratch.path, bound: Self.unbounded)
        #expect(measured.usage.files == 4)
        #expect(measured.usage.bytes < 1 << 20)
        // A root that is itself a symlink is not opened at all.
        #expect(throws: DiskWalk.RootUnavailable.self) {
            _ = try DiskWalk.measure(root: scratch.path + "/dirlink", bound: Self.unbounded)
        }
    }

    @Test func hardLinksAreCountedOnce() throws {
        let scratch = try Scratch()
        try scratch.write("one.bin", bytes: 1 << 20)
        #expect(link(scratch.path + "/one.bin", scratch.path + "/two.bin") == 0)
        try FileManager.default.createDirectory(atPath: scratch.path + "/sub", withIntermediateDirectories: false)
        #expect(link(scratch.path + "/one.bin", scratch.path + "/sub/three.bin") == 0)
        let measured = try DiskWalk.measure(root: scratch.path, bound: Self.unbounded)
        #expect(measured.usage.files == 3)  // root, sub, the one inode
        #expect(measured.usage.bytes < 2 << 20)
        #expect(measured.usage.bytes >= 1 << 20)
    }

    @Test func stopsPastItsBoundAndBelowItsDepth() throws {
        let scratch = try Scratch()
        for index in 0..<50 { try scratch.write("f\(index)", bytes: 1) }
        let bounded = try DiskWalk.measure(root: scratch.path, bound: DiskUsage(bytes: .max / 2, files: 10))
        #expect(bounded.incomplete == .overBound)
        #expect(bounded.usage.files == 11)
        let deep = (0...DiskWalk.maximumDepth).map { _ in "d" }.joined(separator: "/")
        try FileManager.default.createDirectory(atPath: scratch.path + "/" + deep, withIntermediateDirectories: true)
        #expect(try DiskWalk.measure(root: scratch.path, bound: Self.unbounded).incomplete == .tooDeep)
    }
}

/// `tenant_limits` disk keys and `audit_reserve_mib`: read exactly, a bad value stops `serve`.
@Suite struct DiskQuotaConfigTests {
    func config(_ yaml: String) throws -> LeaseholdConfig {
        try YAMLDecoder().decode(LeaseholdConfig.self, from: yaml)
    }

    @Test func defaultsAndOverridesAreRead() throws {
        let defaults = try LeaseholdConfig().diskQuotas()
        #expect(defaults.standard == DiskQuotas.defaultLimits)
        #expect(defaults.standard.tenant == DiskUsage(bytes: 10 << 30, files: 1_000_000))
        #expect(defaults.standard.workspace == DiskUsage(bytes: 4 << 30, files: 500_000))
        #expect(try LeaseholdConfig().auditReserveBytes() == 64 << 20)
        let configured = try config(
            """
            audit_reserve_mib: 0
            tenant_limits:
              disk_mib: 100
              workspace_disk_files: 50
              tenants:
                small: {workspace_disk_mib: 2, disk_files: 7}
            """)
        let quotas = try configured.diskQuotas()
        #expect(try configured.auditReserveBytes() == 0)
        #expect(quotas.standard.tenant == DiskUsage(bytes: 100 << 20, files: 1_000_000))
        #expect(quotas.standard.workspace == DiskUsage(bytes: 4 << 30, files: 50))
        #expect(quotas.limits("small").tenant == DiskUsage(bytes: 100 << 20, files: 7))
        #expect(quotas.limits("small").workspace == DiskUsage(bytes: 2 << 20, files: 50))
        #expect(quotas.limits("other") == quotas.standard)
    }

    @Test func badValuesAreRefused() throws {
        for bad in [
            "tenant_limits: {disk_mib: 0}", "tenant_limits: {disk_files: -1}",
            "tenant_limits: {workspace_disk_mib: 2000000000}", "tenant_limits: {workspace_disk_files: 0}",
            "tenant_limits: {tenants: {'../etc': {disk_mib: 1}}}",
            "tenant_limits: {tenants: {acme: {workspace_disk_files: 0}}}",
        ] {
            #expect(throws: ConfigError.self, "\(bad)") { _ = try config(bad).diskQuotas() }
        }
        for bad in ["audit_reserve_mib: -1", "audit_reserve_mib: 100000"] {
            #expect(throws: ConfigError.self, "\(bad)") { _ = try config(bad).auditReserveBytes() }
        }
    }
}

/// ``DiskDecision`` and ``WriteEstimate``: who may grow, who is frozen.
@Suite struct DiskDecisionTests {
    static let limits = DiskQuotas.Limits(
        tenant: DiskUsage(bytes: 100_000, files: 100), workspace: DiskUsage(bytes: 50_000, files: 50))

    func facts(
        workspace: DiskUsage, tenant: DiskUsage? = nil, full: Bool = false,
        incomplete: DiskMeasurement.Incomplete? = nil
    )
        -> DiskDecision.Facts
    {
        DiskDecision.Facts(
            tenant: "t", workspace: "w", workspaceUsage: workspace, tenantUsage: tenant ?? workspace,
            limits: Self.limits, incomplete: incomplete, filesystemFull: full)
    }

    @Test func writesFitOrAreRefused() {
        let under = facts(workspace: DiskUsage(bytes: 40_000, files: 10))
        #expect(DiskDecision.decide(.write(DiskUsage(bytes: 10_000, files: 1)), under) == .allow(frozen: false))
        guard case .refuse(let reason) = DiskDecision.decide(.write(DiskUsage(bytes: 10_001, files: 1)), under) else {
            Issue.record("a write past the workspace quota was allowed")
            return
        }
        #expect(reason.contains("workspace w"))
        // The tenant's other workspaces count too.
        let tenantFull = facts(workspace: DiskUsage(bytes: 1_000, files: 1), tenant: DiskUsage(bytes: 99_000, files: 1))
        guard case .refuse(let tenantReason) = DiskDecision.decide(.write(DiskUsage(bytes: 4096, files: 1)), tenantFull)
        else {
            Issue.record("a write past the tenant quota was allowed")
            return
        }
        #expect(tenantReason.contains("tenant t"))
        // Files are a quota of their own.
        let manyFiles = facts(workspace: DiskUsage(bytes: 0, files: 50))
        #expect(DiskDecision.decide(.write(DiskUsage(bytes: 0, files: 1)), manyFiles) != .allow(frozen: false))
    }

    @Test func overQuotaFreezesExecAndStillAllowsShrinking() {
        let over = facts(workspace: DiskUsage(bytes: 60_000, files: 10))
        #expect(DiskDecision.decide(.exec, over) == .allow(frozen: true))
        #expect(
            DiskDecision.decide(.exec, facts(workspace: DiskUsage(bytes: 50_000, files: 1))) == .allow(frozen: true))
        #expect(
            DiskDecision.decide(.exec, facts(workspace: DiskUsage(bytes: 49_999, files: 49))) == .allow(frozen: false))
        #expect(DiskDecision.decide(.write(DiskUsage(bytes: -4096, files: 0)), over) == .allow(frozen: true))
        #expect(DiskDecision.decide(.write(DiskUsage(bytes: 4096, files: 0)), over) != .allow(frozen: false))
        #expect(DiskDecision.decide(.none, over) == .allow(frozen: false))
    }

    @Test func aFullFilesystemOrAnUnmeasurableTreeFreezes() {
        let small = DiskUsage(bytes: 1, files: 1)
        #expect(DiskDecision.decide(.exec, facts(workspace: small, full: true)) == .allow(frozen: true))
        #expect(DiskDecision.decide(.write(small), facts(workspace: small, full: true)) != .allow(frozen: false))
        #expect(DiskDecision.decide(.exec, facts(workspace: small, incomplete: .tooDeep)) == .allow(frozen: true))
        #expect(
            DiskDecision.decide(.write(small), facts(workspace: small, incomplete: .unreadable))
                != .allow(frozen: false))
        #expect(DiskDecision.decide(.exec, facts(workspace: small, incomplete: .overBound)) == .allow(frozen: true))
    }

    @Test func writeEstimates() throws {
        let scratch = try Scratch()
        try scratch.write("sub/old.txt", bytes: 20_000)
        let old = scratch.allocated("sub/old.txt")
        func change(_ tool: String, _ arguments: [String: Value], profile: SeccompProfileName = .write) -> DiskChange {
            WriteEstimate.change(tool: tool, profile: profile, arguments: arguments, root: scratch.path)
        }
        #expect(
            change("repo.write_file", ["path": "new.txt", "content": "abc"]) == .write(DiskUsage(bytes: 4096, files: 1))
        )
        #expect(
            change("repo.write_file", ["path": "sub/old.txt", "content": ""])
                == .write(DiskUsage(bytes: -old, files: 0)))
        #expect(
            change(
                "repo.write_file", ["path": "./sub/old.txt", "content": .string(String(repeating: "x", count: 40_000))])
                == .write(DiskUsage(bytes: 40_960 - old, files: 0)))
        // A path through a symlink or above the root is never looked up: a new file, as far as the estimate goes.
        #expect(symlink(scratch.path + "/sub", scratch.path + "/link") == 0)
        #expect(
            change("repo.write_file", ["path": "link/old.txt", "content": ""]) == .write(DiskUsage(bytes: 0, files: 1)))
        #expect(change("repo.write_file", ["path": "../x", "content": ""]) == .write(DiskUsage(bytes: 0, files: 1)))
        let deleting = "--- a/sub/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-aaa\n"
        #expect(change("repo.apply_patch", ["patch": .string(deleting)]) == .write(.zero))
        let creating = "--- /dev/null\n+++ b/n.txt\n@@ -0,0 +1 @@\n+hello\n"
        #expect(change("repo.apply_patch", ["patch": .string(creating)]) == .write(DiskUsage(bytes: 4096, files: 1)))
        #expect(change("shell.run", ["command": "true"], profile: .exec) == .exec)
        #expect(change("repo.read_file", ["path": "x"], profile: .read) == DiskChange.none)
    }
}

/// ``AuditReserve``: a ballast whose blocks are really allocated, freed on demand.
@Suite struct AuditReserveTests {
    @Test func isAllocatedReleasedAndAllocatedAgainWhenThereIsRoom() throws {
        let scratch = try Scratch()
        let reserve = AuditReserve(stateDirectory: scratch.path, bytes: 4 << 20)
        #expect(!reserve.isInPlace)
        #expect(reserve.allocate())
        #expect(reserve.isInPlace && !reserve.isReleased)
        #expect(scratch.allocated("audit-reserve") >= 4 << 20)
        // A file already allocated (a restart) is kept as it is.
        #expect(AuditReserve(stateDirectory: scratch.path, bytes: 4 << 20).allocate())
        #expect(reserve.release())
        #expect(!reserve.release(), "released once")
        #expect(reserve.isReleased)
        #expect(scratch.allocated("audit-reserve") == -1)
        // This filesystem has far more than twice the reserve free: it comes back.
        #expect(reserve.rebalance() != nil)
        #expect(reserve.isInPlace && scratch.allocated("audit-reserve") >= 4 << 20)
        #expect(reserve.rebalance() == nil, "in place with room to spare: nothing to do")
        // No reserve configured: never in place, never released.
        let none = AuditReserve(stateDirectory: scratch.path, bytes: 0)
        #expect(!none.allocate() && !none.isReleased && none.rebalance() == nil)
    }
}

/// ``DiskLedger``: admitted growth is held while calls run; an exec call is measured after it.
@Suite struct DiskLedgerTests {
    fileprivate func ledger(_ scratch: Scratch, workspaceMiB: Int64) throws -> DiskLedger {
        let store = try SQLiteStore(path: scratch.path + "/state.sqlite")
        let audit = try AuditLog(path: scratch.path + "/audit.sqlite", node: "test")
        let limits = DiskQuotas.Limits(
            tenant: DiskUsage(bytes: 1 << 40, files: 1 << 30),
            workspace: DiskUsage(bytes: workspaceMiB << 20, files: 1000))
        return DiskLedger(
            quotas: DiskQuotas(overrides: ["t": limits]), registry: WorkspaceRegistry(backend: store), audit: audit)
    }

    @Test func concurrentWritesCannotAllSqueezeUnderTheQuota() async throws {
        let scratch = try Scratch()
        let root = scratch.path + "/ws"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: false)
        let disk = try ledger(scratch, workspaceMiB: 1)
        let workspace = Workspace(tenantID: "t", workspaceID: "w", root: root)
        let half = DiskChange.write(DiskUsage(bytes: 400 << 10, files: 1))
        let first = try await disk.admit(workspace, half)
        let second = try await disk.admit(workspace, half)
        // Two writes still running hold 800 KiB of the 1 MiB: a third does not fit.
        await #expect(throws: Refusal.self) { _ = try await disk.admit(workspace, half) }
        await disk.settle(first)
        await disk.settle(second)
        // Settled as estimates, walked again before refusing: nothing was really written.
        let third = try await disk.admit(workspace, half)
        await disk.settle(third)
        #expect(await disk.status(of: workspace).bytes < 400 << 10)
    }

    @Test func anExecCallIsMeasuredAfterItAndFreezesTheWorkspace() async throws {
        let scratch = try Scratch()
        try scratch.write("ws/seed.txt", bytes: 10)
        let disk = try ledger(scratch, workspaceMiB: 1)
        let workspace = Workspace(tenantID: "t", workspaceID: "w", root: scratch.path + "/ws")
        let exec = try await disk.admit(workspace, .exec)
        #expect(!exec.frozen)
        try scratch.write("ws/big.bin", bytes: 2 << 20)  // what the call wrote
        await disk.settle(exec)
        #expect(try await disk.admit(workspace, .exec).frozen)
        await #expect(throws: Refusal.self) {
            _ = try await disk.admit(workspace, .write(DiskUsage(bytes: 4096, files: 1)))
        }
        let status = await disk.status(of: workspace)
        #expect(status.frozen && status.bytes > 2 << 20 && status.quotaBytes == 1 << 20)
        // A shrinking write is admitted; once the tree is under the quota again it thaws.
        let shrink = try await disk.admit(workspace, .write(DiskUsage(bytes: -(2 << 20), files: 0)))
        try FileManager.default.removeItem(atPath: scratch.path + "/ws/big.bin")
        await disk.settle(shrink)
        #expect(!(try await disk.admit(workspace, .exec).frozen))
        #expect(!(await disk.status(of: workspace).frozen))
    }
}
