import Testing

@testable import Runner

@Suite struct ToolPatternTests {
    func matches(_ pattern: String, _ name: String) -> Bool {
        ToolPattern(pattern)!.matches(name)
    }

    @Test func exactNamesAreCaseSensitive() {
        #expect(matches("repo.read_file", "repo.read_file"))
        #expect(!matches("repo.read_file", "Repo.read_file"))
        #expect(!matches("repo.read_file", "repo.read_files"))
        #expect(!matches("repo.read_file", "repo.read_fil"))
    }

    @Test func wildcardsMatchAnyRunIncludingDots() {
        #expect(matches("*", "kb.anything"))
        #expect(matches("repo.*", "repo.read_file"))
        #expect(!matches("repo.*", "repository.read_file"))
        #expect(matches("kb.support_*", "kb.support_billing"))
        #expect(!matches("kb.support_*", "kb.sales_billing"))
        #expect(matches("*_admin", "crm.users_admin"))
        #expect(!matches("*_admin", "crm.users_admins"))
        #expect(matches("a*b*c", "a.x.b.y.c"))
        #expect(!matches("a*b*c", "a.x.c.y.b"))
        #expect(matches("a**", "a"))
        #expect(matches("*.*", "x.y"))
        #expect(!matches("ab*ba", "aba"))
        #expect(matches("ab*ba", "abba"))
    }

    @Test func refusesCharactersOutsideTheAlphabet() {
        for bad in ["", "repo.read_file ", "rеpo.*", "repo/read", "repo.?", "[a]", String(repeating: "a", count: 129)] {
            #expect(ToolPattern(bad) == nil, "\(bad) should not parse")
        }
    }

    @Test func toolNamesNeedAServerPrefixAndAsciiOnly() {
        #expect(ToolName.isValid("repo.read_file"))
        for bad in ["repo", ".x", "x.", "a..b", "rеpo.read", "repo.read file", "repo．read"] {
            #expect(!ToolName.isValid(bad), "\(bad) should be invalid")
        }
    }

    /// Cross-checks the hand-written matcher against a simple recursive reference on random input.
    @Test func agreesWithAReferenceMatcher() {
        func reference(_ p: [Character], _ s: [Character]) -> Bool {
            if p.isEmpty { return s.isEmpty }
            if p[0] == "*" {
                return reference(Array(p.dropFirst()), s) || (!s.isEmpty && reference(p, Array(s.dropFirst())))
            }
            return !s.isEmpty && p[0] == s[0] && reference(Array(p.dropFirst()), Array(s.dropFirst()))
        }
        var generator = SystemRandomNumberGenerator()
        let alphabet: [Character] = ["a", "b", "."]
        for _ in 0..<3000 {
            let pattern = String(
                (0..<Int.random(in: 1...6, using: &generator)).map { _ in
                    Bool.random(using: &generator) ? "*" : alphabet.randomElement(using: &generator)!
                })
            let name = String(
                (0..<Int.random(in: 0...7, using: &generator)).map { _ in alphabet.randomElement(using: &generator)! })
            #expect(
                ToolPattern(pattern)!.matches(name) == reference(Array(pattern), Array(name)), "\(pattern) vs \(name)")
        }
    }
}
