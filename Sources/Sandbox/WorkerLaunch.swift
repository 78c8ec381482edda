import Foundation
import SandboxProtocol

/// How workers are laid out on this host: which executable, which system directories an exec
/// tier sees, and the files the runner generates for them. Built once per runner.
public struct WorkerLaunch: Sendable {
    /// The statically linked `leasehold-worker`.
    public var executable: String
    /// Directory for generated files workers see read-only (`passwd`, `group`).
    public var supportDirectory: String
    /// What this kernel offers.
    public var kernel: KernelFeatures
    /// Size of each worker's private /tmp, bytes.
    public var tmpSize: Int64
    /// How this host lays out `/bin`, `/sbin` and `/lib*` (a symlink into `/usr`, a directory, or
    /// absent), looked up once: every exec worker's plan repeated the same six lookups.
    let systemTops: [(path: String, symlinkTarget: String?)]

    /// Creates the launch description, writing the generated files.
    public init(
        executable: String, supportDirectory: String, kernel: KernelFeatures = .current, tmpSize: Int64 = 64 << 20
    ) throws {
        self.executable = executable
        self.supportDirectory = supportDirectory
        self.kernel = kernel
        self.tmpSize = tmpSize
        systemTops = ["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"].compactMap { top in
            if let target = try? FileManager.default.destinationOfSymbolicLink(atPath: top) { return (top, target) }
            return FileManager.default.fileExists(atPath: top) ? (top, nil) : nil
        }
        try FileManager.default.createDirectory(atPath: supportDirectory, withIntermediateDirectories: true)
        // The worker's own user database: tools like `id`, git and ssh look the uid up, and the
        // host's /etc/passwd (every local account) is not theirs to read.
        try "leasehold:x:1000:1000:leasehold worker:/tmp:/bin/sh\n".write(
            toFile: supportDirectory + "/passwd", atomically: true, encoding: .utf8)
        try "leasehold:x:1000:\n".write(toFile: supportDirectory + "/group", atomically: true, encoding: .utf8)
    }

    /// Finds `leasehold-worker` beside the running executable (the build puts them together),
    /// unless `LEASEHOLD_WORKER` names it.
    public static func defaultExecutable() -> String {
        if let named = ProcessInfo.processInfo.environment["LEASEHOLD_WORKER"], !named.isEmpty { return named }
        // The test bundle (`leaseholdPackageTests.xctest`) sits in the same build directory too.
        let me = URL(fileURLWithPath: CommandLine.arguments.first ?? "leasehold").resolvingSymlinksInPath()
        return me.deletingLastPathComponent().appendingPathComponent("leasehold-worker").path
    }

    /// The base environment of `shell.run`: an allow-list, nothing of the runner's own.
    static let shellEnvironment: [String: String] = [
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8",
        "TERM": "dumb", "USER": "leasehold", "LOGNAME": "leasehold", "SHELL": "/bin/sh",
    ]

    /// The confinement of a worker for `tier` over `root`.
    func plan(
        tier: WorkerTier, root: String, workspaceReadOnly: Bool, baseFilter: [UInt8], channel: Int32, filterFD: Int32,
        hostIdentity: WorkerHostIdentity? = nil, mounts: [String] = []
    ) -> SpawnPlan {
        let exec = tier.profile == .exec
        let readOnly = workspaceReadOnly || tier.profile == .read
        // Pinned: a registered root whose path was swapped for a symlink after registration is
        // refused, never followed (found in review: it let one tenant read another's root).
        var binds = [
            SpawnPlan.Bind(
                source: root, target: WorkerProtocol.workspacePath, readOnly: readOnly, executable: exec, pinned: true)
        ]
        var symlinks: [(target: String, link: String)] = []
        var directories: [String] = []
        var landlock = [
            SpawnPlan.LandlockRule(path: WorkerProtocol.workspacePath, read: true, write: !readOnly, execute: exec)
        ]
        if tier.profile != .read { landlock.append(.init(path: "/tmp", read: true, write: true)) }
        if exec {
            // Read-only system directories for commands; nothing else of the host.
            binds.append(.init(source: "/usr", target: "/usr", readOnly: true, executable: true))
            for (top, target) in systemTops {
                if let target {
                    symlinks.append((target, top))
                } else {
                    binds.append(.init(source: top, target: top, readOnly: true, executable: true))
                }
            }
            directories.append("/etc")
            binds.append(.init(source: supportDirectory + "/passwd", target: "/etc/passwd", readOnly: true))
            binds.append(.init(source: supportDirectory + "/group", target: "/etc/group", readOnly: true))
            for shared in ["/etc/alternatives", "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"] {
                binds.append(.init(source: shared, target: shared, readOnly: true, optional: true))
            }
            landlock += [
                .init(path: "/usr", read: true, execute: true), .init(path: "/etc", read: true),
                .init(path: "/tmp", read: true, write: true, execute: true), .init(path: "/dev", read: true, write: true),
                .init(path: "/proc", read: true),
            ]
            for (_, link) in symlinks { landlock.append(.init(path: link, read: true, execute: true)) }
            // An upstream server's program and its libraries (a virtualenv): read-only, at the
            // same path, nothing else of the host.
            for mount in mounts {
                binds.append(.init(source: mount, target: mount, readOnly: true, executable: true))
                landlock.append(.init(path: mount, read: true, execute: true))
            }
            for bind in binds where bind.source.hasPrefix("/lib") || bind.source.hasPrefix("/bin")
                || bind.source.hasPrefix("/sbin")
            {
                landlock.append(.init(path: bind.target, read: true, execute: true))
            }
        }
        let limits = tier.limits
        var plan = SpawnPlan(
            executable: executable, execTarget: WorkerProtocol.executablePath, argv: ["leasehold-worker"],
            environment: [], binds: binds, symlinks: symlinks, directories: directories,
            tmpSize: tier.profile == .read ? 0 : tmpSize,
            // CPU is limited per call for warm workers (the pool moves the soft limit before each
            // call); a per-call worker's life is one call.
            cpuSeconds: tier.isolation == .call ? Int64(limits.cpuSeconds) : -1,
            addressSpace: Int64(limits.memoryMiB) << 20, fileSize: Int64(limits.fileSizeMiB) << 20,
            openFiles: Int64(limits.openFiles), processes: Int64(max(1, limits.processes)),
            landlock: landlock, landlockRequired: (kernel.landlockABI ?? 0) >= 1,
            filter: baseFilter, childDescriptors: [-1, -1, -1, channel, filterFD])
        plan.hostIdentity = hostIdentity
        return plan
    }

    /// The `hello` a worker for `tier` gets.
    func hello(tier: WorkerTier, workspaceReadOnly: Bool) -> WorkerHello {
        WorkerHello(
            tier: tier.name, profile: tier.profile.rawValue, readOnly: workspaceReadOnly || tier.profile == .read,
            outputBytes: tier.limits.outputBytes, wallMs: tier.limits.wallMs, cpuSeconds: tier.limits.cpuSeconds,
            fileSizeBytes: tier.limits.fileSizeMiB << 20, environment: Self.shellEnvironment)
    }
}
