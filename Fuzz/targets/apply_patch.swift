// libFuzzer target: repo.apply_patch's in-memory application (Sources/leasehold-worker/Ops/
// ApplyPatch.swift `apply`), after the unified-diff parser. The input is a file's content, a NUL
// byte, then a patch: every parsed file's hunks are applied to the content. A patch must apply or
// be refused `patch_failed`; applying never traps, whatever the hunk headers claim.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzApplyPatch(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let split = bytes.firstIndex(of: 0) ?? bytes.count
    let content = Array(bytes[0..<split])
    let patch = split < bytes.count ? Array(bytes[(split + 1)...]) : []
    guard let diff = try? UnifiedDiff(patch) else { return 0 }
    for file in diff.files {
        do {
            let applied = try ApplyPatch.apply(file.hunks, to: content, file: file.newPath ?? "")
            // Applying the same hunks to their own result is also only a result or a refusal.
            _ = try? ApplyPatch.apply(file.hunks, to: applied, file: file.newPath ?? "")
        } catch {
            guard error.code == .patchFailed else { fatalError("apply refused with \(error.code)") }
        }
    }
    return 0
}
