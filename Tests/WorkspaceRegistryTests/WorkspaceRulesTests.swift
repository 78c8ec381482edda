import Foundation
import Testing
import WorkspaceRegistry

#if canImport(Glibc)
    import Glibc
#endif

@Suite struct WorkspaceRulesTests {
    let top: String
    let base: String
    let rules: WorkspaceRules

    init() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("wsr-\(UUID().uuidString)").path
        let manager = FileManager.default
        for path in ["base/acme/a/inner", "base/acme/b", "base/globex/g", "state", "other"] {
            try manager.createDirectory(atPath: dir + "/" + path, withIntermediateDirectories: true)
        }
        try "x".write(toFile: dir + "/base/acme/file", atomically: true, encoding: .utf8)
        try manager.createSymbolicLink(atPath: dir + "/base/acme/link", withDestinationPath: dir + "/base/acme/a")
        try manager.createSymbolicLink(atPath: dir + "/base/acme/to-globex", withDestinationPath: dir + "/base/globex/g")
        top = URL(fileURLWithPath: dir).resolvingSymlinksInPath().path
        base = top + "/base"
        rules = WorkspaceRules(
            bases: [try PathChain.resolve(base).get()], protectedPaths: [("state directory", top + "/state")])
    }

    func code(_ root: String, tenant: String = "acme", existing: [Workspace] = []) -> String? {
        do {
            try rules.validate(Workspace(tenantID: tenant, workspaceID: "w", root: root), existing: existing)
            return nil
        } catch {
            return error.code.rawValue
        }
    }

    @Test func acceptsADirectoryInsideTheTenantsOwnPartOfABase() {
        #expect(code(base + "/acme/a") == nil)
        #expect(code(base + "/acme/a/inner") == nil)
    }

    @Test(arguments: ["relative/path", "/", "/etc", "/usr", "/tmp", "/proc/sys/kernel", "/proc/1", "/sys/fs/cgroup", "/root/.ssh", "/usr/local/bin", "/etc/cron.d", "/dev/shm"])
    func refusesHostPathsOutsideTheBase(root: String) {
        let result = code(root)
        #expect(result != nil, "\(root) was accepted")
        #expect(["invalid_root", "root_refused", "root_outside_base"].contains(result ?? ""))
    }

    @Test func refusesAnotherTenantsDirectoryEvenWhenNotRegistered() {
        // globex's directory under the base is globex's whether or not it is registered right now.
        #expect(code(base + "/globex/g") == "root_outside_base")
        #expect(code(base + "/globex") == "root_outside_base")
    }

    @Test func refusesTheTenantDirectoryItselfAndTheBase() {
        #expect(code(base + "/acme") == "root_outside_base")
        #expect(code(base) == "root_outside_base")
    }

    @Test func refusesPathsOutsideEveryBase() {
        #expect(code(top + "/other") == "root_outside_base")
        #expect(code(top + "/state") == "root_refused")
    }

    @Test func refusesNonCanonicalForms() {
        #expect(code(base + "/acme/a/../b") == "invalid_root")
        #expect(code(base + "/acme/./a") == "invalid_root")
        #expect(code(base + "/acme/a/") == "invalid_root")
        #expect(code(base + "//acme/a") == "invalid_root")
    }

    @Test func refusesSymlinksFilesAndMissingPaths() {
        #expect(code(base + "/acme/link") == "invalid_root")
        #expect(code(base + "/acme/link/inner") == "invalid_root")
        #expect(code(base + "/acme/to-globex") == "invalid_root")
        #expect(code(base + "/acme/file") == "invalid_root")
        #expect(code(base + "/acme/missing") == "invalid_root")
    }

    @Test func refusesOverlapWithAnyRegisteredRootWithoutNamingIt() throws {
        let other = Workspace(tenantID: "acme", workspaceID: "victimws", root: base + "/acme/a")
        #expect(code(base + "/acme/a", existing: [other]) == "root_refused")
        #expect(code(base + "/acme/a/inner", existing: [other]) == "root_refused")
        #expect(code(base + "/acme/b", existing: [other]) == nil)
        do {
            try rules.validate(Workspace(tenantID: "acme", workspaceID: "w", root: base + "/acme/a/inner"), existing: [other])
        } catch {
            #expect(!error.message.contains("victimws") && !error.message.contains(base + "/acme/a "))
        }
    }

    @Test func basesMustNotTouchProtectedOrSharedDirectories() throws {
        let state = try PathChain.resolve(top + "/state").get()
        let rules = WorkspaceRules(bases: [], protectedPaths: [("state directory", top + "/state")])
        #expect(throws: WorkspaceError.self) { try rules.validateBase(try PathChain.resolve(top).get()) }
        #expect(throws: WorkspaceError.self) { try rules.validateBase(state) }
        for shared in ["/", "/tmp", "/home"] where FileManager.default.fileExists(atPath: shared) {
            #expect(throws: WorkspaceError.self) { try rules.validateBase(try PathChain.resolve(shared).get()) }
        }
        #expect(throws: WorkspaceError.self) { try rules.validateBase(try PathChain.resolve("/etc").get()) }
        try rules.validateBase(try PathChain.resolve(base).get())
    }

    @Test func allocatesPrivateDirectoriesUnderTheBaseAndPurgesWithoutFollowingLinks() throws {
        let root = try rules.allocate(tenantID: "acme", workspaceID: "fresh", owner: nil)
        #expect(root == base + "/acme/fresh")
        var info = stat()
        #expect(lstat(root, &info) == 0 && info.st_mode & 0o777 == 0o700)
        // Re-allocating the same id returns the same, still-owned directory.
        #expect(try rules.allocate(tenantID: "acme", workspaceID: "fresh", owner: nil) == root)
        // A symlink planted inside pointing at another tenant's files: purge removes the link only.
        try "keep".write(toFile: base + "/globex/g/keep.txt", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: root + "/escape", withDestinationPath: base + "/globex/g")
        try rules.purge(tenantID: "acme", root: root)
        #expect(!FileManager.default.fileExists(atPath: root))
        #expect(FileManager.default.fileExists(atPath: base + "/globex/g/keep.txt"))
        #expect(throws: WorkspaceError.self) { try rules.purge(tenantID: "acme", root: base + "/globex/g") }
    }

    /// Giving a tree to a tenant never follows a symlink, and never changes a file that has another
    /// name (a hard link may share the inode of a file outside the tree).
    @Test(.enabled(if: geteuid() == 0, "chown to another uid needs root; unprivileged runners never chown"))
    func givingATreeToATenantTouchesOnlyItsOwnFiles() throws {
        let root = try rules.allocate(tenantID: "acme", workspaceID: "owned", owner: nil)
        try "mine".write(toFile: root + "/mine.txt", atomically: true, encoding: .utf8)
        try "outside".write(toFile: top + "/state/outside.txt", atomically: true, encoding: .utf8)
        try FileManager.default.linkItem(atPath: top + "/state/outside.txt", toPath: root + "/linked.txt")
        try FileManager.default.createSymbolicLink(atPath: root + "/escape", withDestinationPath: top + "/state")
        #expect(WorkspaceTree.chown(root, to: WorkspaceOwner(uid: 1_999_990_002, gid: 1_999_990_002)))
        var info = stat()
        #expect(stat(root + "/mine.txt", &info) == 0 && info.st_uid == 1_999_990_002)
        #expect(stat(top + "/state/outside.txt", &info) == 0 && info.st_uid == 0)
        #expect(stat(top + "/state", &info) == 0 && info.st_uid == 0)
        #expect(lstat(root + "/escape", &info) == 0 && info.st_uid == 1_999_990_002)
    }

    @Test func allocationRefusesAPlantedSymlink() throws {
        try FileManager.default.createSymbolicLink(atPath: base + "/acme/planted", withDestinationPath: top + "/state")
        #expect(throws: WorkspaceError.self) { try rules.allocate(tenantID: "acme", workspaceID: "planted", owner: nil) }
    }

    @Test func refusesBadIdentifiers() {
        for bad in ["", "a b", "../x", "acme/x", "ａcme", String(repeating: "a", count: 65), "-lead"] {
            #expect(!Identifier.isValid(bad), "\(bad) should be refused")
        }
        #expect(Identifier.isValid("acme-prod_2"))
    }
}
