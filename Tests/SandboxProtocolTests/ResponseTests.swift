import SandboxProtocol
import Testing

/// The `response` payload: flags, the typed limit that killed a command, the result.
@Suite struct ResponseTests {
    @Test func aKilledCommandCarriesItsLimitTyped() throws {
        for limit in WorkerMessage.LimitKill.allCases {
            let payload = WorkerMessage.response(isError: false, result: Array(#"{"a":1}"#.utf8), killedBy: limit)
            let response = try #require(WorkerMessage.parseResponse(payload))
            #expect(response.killedBy == limit && !response.isError)
            #expect(Array(response.result) == Array(#"{"a":1}"#.utf8))
        }
        #expect(WorkerMessage.LimitKill.allCases.map(\.policyName) == ["cpu_seconds", "file_size_mib", "wall_ms"])
    }

    @Test func flagsWithoutALimitKeepTheirMeaning() throws {
        let payload = WorkerMessage.response(isError: true, result: [0x7B, 0x7D], toolsChanged: true)
        let response = try #require(WorkerMessage.parseResponse(payload))
        #expect(response.isError && response.killedBy == nil && Array(response.result) == [0x7B, 0x7D])
        #expect(WorkerMessage.toolsChanged(payload))
    }

    @Test func aMissingOrUnknownLimitByteIsMalformed() {
        #expect(WorkerMessage.parseResponse([]) == nil)
        #expect(WorkerMessage.parseResponse([4]) == nil)
        #expect(WorkerMessage.parseResponse([4, 0, 0x7B, 0x7D]) == nil)
        #expect(WorkerMessage.parseResponse([4, 99, 0x7B, 0x7D]) == nil)
    }
}
