// libFuzzer target: the unified-diff parser of repo.apply_patch (Sources/leasehold-worker/
// UnifiedDiff.swift), which reads a patch the model wrote. Any bytes must parse or throw
// ParseError; a parsed patch's hunks must be internally consistent.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzUnifiedDiff(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let diff = try? UnifiedDiff(bytes) else { return 0 }
    for file in diff.files {
        _ = file.oldPath
        _ = file.newPath
        for hunk in file.hunks {
            let old = hunk.lines.filter { $0.kind != .added }.count
            let new = hunk.lines.filter { $0.kind != .removed }.count
            guard old == hunk.oldCount, new == hunk.newCount else {
                fatalError("a parsed hunk's line counts disagree with its header")
            }
        }
    }
    return 0
}
