import Foundation
import Testing
import WorkspaceRegistry

@Suite struct WorkspaceRulesTests {
    let base: String

    init() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("wsr-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir + "/a/inner", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dir + "/b", withIntermediateDirectories: true)
        try "x".write(toFile: dir + "/file", atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(atPath: dir + "/link", withDestinationPath: dir + "/a")
        base = URL(fileURLWithPath: dir).resolvingSymlinksInPath().path
    }

    func code(_ root: String, existing: [Workspace] = []) -> String? {
        do {
            try WorkspaceRules().validate(Workspace(tenantID: "acme", workspaceID: "w", root: root), existing: existing)
            return nil
        } catch {
            return error.code.rawValue
        }
    }

    @Test func acceptsACanonicalDirectory() {
        #expect(code(base + "/a") == nil)
    }

    @Test(arguments: ["relative/path", "/", "/etc", "/usr", "/tmp"])
    func refusesRelativeRootAndSystemDirectories(root: String) {
        #expect(code(root) == "invalid_root")
    }

    @Test func refusesNonCanonicalForms() {
        #expect(code(base + "/a/../b") == "invalid_root")
        #expect(code(base + "/./a") == "invalid_root")
        #expect(code(base + "/a/") == "invalid_root")
        #expect(code(base + "//a") == "invalid_root")
    }

    @Test func refusesSymlinksFilesAndMissingPaths() {
        #expect(code(base + "/link") == "invalid_root")
        #expect(code(base + "/link/inner") == "invalid_root")
        #expect(code(base + "/file") == "invalid_root")
        #expect(code(base + "/missing") == "invalid_root")
    }

    @Test func refusesOverlapWithAnyTenantsWorkspace() {
        let other = Workspace(tenantID: "globex", workspaceID: "g", root: base + "/a")
        #expect(code(base + "/a", existing: [other]) == "overlapping_root")
        #expect(code(base + "/a/inner", existing: [other]) == "overlapping_root")
        #expect(code(base, existing: [other]) == "overlapping_root")
        #expect(code(base + "/b", existing: [other]) == nil)
    }

    @Test func overlapIsPathAwareNotPrefixBased() {
        #expect(!WorkspaceRules.overlaps("/srv/a", "/srv/ab"))
        #expect(WorkspaceRules.overlaps("/srv/a", "/srv/a/b"))
    }

    @Test func refusesBadIdentifiers() {
        for bad in ["", "a b", "../x", "acme/x", "ａcme", String(repeating: "a", count: 65), "-lead"] {
            #expect(!Identifier.isValid(bad), "\(bad) should be refused")
        }
        #expect(Identifier.isValid("acme-prod_2"))
    }
}
