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
        let features = KernelFeatures(
            userNamespaces: availability(csb_userns_available()),
            seccomp: availability(csb_seccomp_available()),
            openat2: availability(csb_openat2_available()),
            landlockABI: abi > 0 ? Int(abi) : nil
        )
        return features
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
