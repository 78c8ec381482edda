import CSandbox
import Synchronization

/// Seccomp programs, compiled once per (profile, stage) with libseccomp in the runner and reused
/// for every worker (DESIGN.md §5: compiled once in the parent).
public final class SeccompPrograms: Sendable {
    private let compiled = Mutex<[Key: [UInt8]]>([:])

    private struct Key: Hashable {
        var profile: SeccompProfileName
        var tier: Bool
        var inet: Bool
    }

    /// The BASE program (installed before the worker's execve) for `profile`; `inet`: socket(2)
    /// may also create AF_INET and AF_INET6 sockets (a worker with a network grant; exec only).
    func base(_ profile: SeccompProfileName, inet: Bool = false) throws(SandboxError) -> [UInt8] {
        try program(Key(profile: profile, tier: false, inet: inet))
    }

    /// The TIER program (installed by the worker before it reads a request) for `profile`; `inet`
    /// as for ``base(_:inet:)``.
    func tier(_ profile: SeccompProfileName, inet: Bool = false) throws(SandboxError) -> [UInt8] {
        try program(Key(profile: profile, tier: true, inet: inet))
    }

    private func program(_ key: Key) throws(SandboxError) -> [UInt8] {
        if let known = compiled.withLock({ $0[key] }) { return known }
        var filter: UnsafeMutableRawPointer?
        var length = 0
        let status = csb_seccomp_compile(
            Self.cProfile(key.profile),
            Int32(key.tier ? CSB_FILTER_TIER.rawValue : CSB_FILTER_BASE.rawValue)
                | (key.inet ? Int32(CSB_FILTER_INET.rawValue) : 0),
            &filter, &length)
        guard status == 0, let filter else {
            throw SandboxError(
                .spawnFailed,
                "the \(key.profile)\(key.inet ? " (network grant)" : "") seccomp profile could not be compiled",
                stage: "seccomp",
                errno: -status)
        }
        defer { free(filter) }
        let bytes = Array(UnsafeRawBufferPointer(start: filter, count: length * 8))
        compiled.withLock { $0[key] = bytes }
        return bytes
    }

    static func cProfile(_ profile: SeccompProfileName) -> Int32 {
        switch profile {
        case .read: Int32(CSB_PROFILE_READ.rawValue)
        case .write: Int32(CSB_PROFILE_WRITE.rawValue)
        case .exec: Int32(CSB_PROFILE_EXEC.rawValue)
        }
    }

    /// The syscalls a profile's TIER filter allows (comma-separated), for doctor.
    public static func describe(_ profile: SeccompProfileName) -> String {
        String(cString: csb_seccomp_describe(cProfile(profile)))
    }
}

#if canImport(Glibc)
    import Glibc
#endif
