/// Ranked search over tool names and descriptions for `system.search_tools`.
///
/// Scoring: a query term equal to a name token scores 3, a prefix of one 2, a description word 1;
/// a tool's score is the sum over terms. Results are filtered by scope AFTER scoring, by the caller,
/// so nothing about hidden tools can leak through ranks or counts.
struct SearchIndex: Sendable {
    private struct Entry: Sendable {
        let name: String
        let nameTokens: [String]
        let words: Set<String>
    }

    private let entries: [Entry]

    init(tools: [ToolDescriptor]) {
        entries = (BuiltinTools.system + tools).map { tool in
            Entry(
                name: tool.name,
                nameTokens: Self.tokens(tool.name),
                words: Set(Self.tokens(tool.description)))
        }
    }

    static func tokens(_ text: String) -> [String] {
        text.lowercased().split { !($0.isASCII && ($0.isLetter || $0.isNumber)) }.map(String.init)
    }

    /// All tools with a positive score, best first (ties by name).
    func rank(_ query: String) -> [(name: String, score: Int)] {
        let terms = Self.tokens(query)
        guard !terms.isEmpty else { return [] }
        var results: [(name: String, score: Int)] = []
        for entry in entries {
            var score = 0
            for term in terms {
                if entry.nameTokens.contains(term) {
                    score += 3
                } else if entry.nameTokens.contains(where: { $0.hasPrefix(term) }) {
                    score += 2
                } else if entry.words.contains(term) {
                    score += 1
                }
            }
            if score > 0 { results.append((entry.name, score)) }
        }
        return results.sorted { $0.score != $1.score ? $0.score > $1.score : $0.name < $1.name }
    }
}
