// libFuzzer target: .gitignore files and globs (Sources/leasehold-worker/GitIgnore.swift and
// Glob.swift), read from the workspace by repo.search and repo.list_dir. The input is a
// .gitignore, a NUL byte, then a path (segments split at "/"); every rule and the glob of the
// same text are matched against it.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGitIgnore(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let split = bytes.firstIndex(of: 0) ?? bytes.count
    let contents = bytes[0..<split]
    let rest = split < bytes.count ? Array(bytes[(split + 1)...]) : []
    let path: [[CChar]] = rest.split(separator: 0x2F).map { segment in
        segment.map { CChar(bitPattern: $0) } + [0]
    }
    let ignore = GitIgnore(contents: contents, base: [])
    for isDirectory in [false, true] {
        _ = ignore.decision(path: path, isDirectory: isDirectory)
        _ = IgnoreStack(files: [ignore, ignore]).isIgnored(path: path, isDirectory: isDirectory)
    }
    let glob = Glob(String(decoding: contents, as: UTF8.self))
    _ = glob.matches(path: path)
    return 0
}
