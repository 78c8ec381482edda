import CSandbox

#if canImport(Glibc)
    import Glibc
#endif

/// The kernel features confinement relies on, probed once per process.
///
/// Injected with a default (`KernelFeatures.current`) so tests can describe a host that lacks a
/// feature, like swift-subprocess does with its spawn capabilities.
public struct KernelFeatures: Hashable, Sendable {
    /// The result of probing one feature.
    public enum Availability: Hashable, Sendable, CustomStringConvertible {
        /// Present and usable.
        case available
        /// Missing; the errno the probe saw.
        case unavailable(errno: Int32)

        /// True when usable.
        public var isAvailable: Bool { self == .available }

        /// A short human-readable form.
        public var description: String {
            switch self {
            case .available: "available"
            case .unavailable(let errno): "unavailable (errno \(errno))"
            }
        }
    }

    /// Unprivileged user namespaces.
    public var userNamespaces: Availability
    /// Seccomp filter mode.
    public var seccomp: Availability
    /// openat2(2) with RESOLVE_BENEATH.
    public var openat2: Availability
    /// The Landlock ABI version, nil when Landlock is unavailable.
    public var landlockABI: Int?
    /// Whether this process's cgroup v2 subtree is delegated to it (writable, with the pids
    /// controller), so per-worker cgroups could cap processes and memory. Reported, not required:
    /// workers rely on rlimits and their pid namespace.
    public var cgroupDelegation: Availability = .unavailable(errno: ENOENT)

    /// Describes a host explicitly (tests).
    public init(userNamespaces: Availability, seccomp: Availability, openat2: Availability, landlockABI: Int?) {
        self.userNamespaces = userNamespaces
        self.seccomp = seccomp
        self.openat2 = openat2
        self.landlockABI = landlockABI
    }

    /// The running host, probed once.
    public static let current: KernelFeatures = probe()

    /// Probes the running kernel.
    public static func probe() -> KernelFeatures {
        func availability(_ result: Int32) -> Availability {
            result == 0 ? .available : .unavailable(errno: -result)
        }
        let abi = csb_landlock_abi()
        var features = KernelFeatures(
            userNamespaces: availability(csb_userns_available()),
            seccomp: availability(csb_seccomp_available()),
            openat2: availability(csb_openat2_available()),
            landlockABI: abi > 0 ? Int(abi) : nil
        )
        features.cgroupDelegation = probeCgroupDelegation()
        return features
    }

    /// cgroup v2 only: `/proc/self/cgroup` is `0::/path`; delegated when that directory's
    /// `cgroup.procs` is writable by us and `pids` is among its controllers.
    static func probeCgroupDelegation() -> Availability {
        guard let text = readSmallFile("/proc/self/cgroup"), text.hasPrefix("0::") else {
            return .unavailable(errno: ENOENT)
        }
        let path = text.dropFirst(3).split(separator: "\n").first.map(String.init) ?? "/"
        let directory = "/sys/fs/cgroup" + (path == "/" ? "" : path)
        guard access(directory + "/cgroup.procs", W_OK) == 0 else { return .unavailable(errno: errno) }
        guard let controllers = readSmallFile(directory + "/cgroup.controllers"),
            controllers.split(whereSeparator: { $0 == " " || $0 == "\n" }).contains("pids")
        else { return .unavailable(errno: ENOTSUP) }
        return .available
    }

    private static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return nil }
        return String(decoding: buffer[0..<count], as: UTF8.self)
    }
}

extension KernelFeatures {
    /// The feature names a risk tier may list under `requires`.
    public static let requirementNames = ["user_namespaces", "seccomp", "openat2", "landlock"]

    /// Whether a feature named in a tier's `requires` is available; false for unknown names.
    public func isAvailable(_ requirement: String) -> Bool {
        switch requirement {
        case "user_namespaces": userNamespaces.isAvailable
        case "seccomp": seccomp.isAvailable
        case "openat2": openat2.isAvailable
        case "landlock": (landlockABI ?? 0) >= 1
        default: false
        }
    }
}
