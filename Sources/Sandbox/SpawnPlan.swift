import CSandbox

#if canImport(Glibc)
    import Glibc
#endif

/// One worker's confinement, in Swift values: what `csb_spawn` turns into namespaces, mounts,
/// rlimits, Landlock and seccomp. Built by ``WorkerLaunch``; converted to C only on the spawner
/// thread, for the length of the call.
struct SpawnPlan: Sendable {
    struct Bind: Sendable, Hashable {
        var source: String
        var target: String
        var readOnly: Bool
        var executable: Bool = false
        var optional: Bool = false
        /// Bound through a descriptor opened without following symlinks (workspace roots).
        var pinned: Bool = false
    }

    struct LandlockRule: Sendable, Hashable {
        var path: String
        var read = false
        var write = false
        var execute = false
    }

    var executable: String
    var execTarget: String
    var argv: [String]
    var environment: [String]
    var binds: [Bind]
    var symlinks: [(target: String, link: String)]
    var directories: [String]
    var tmpSize: Int64
    var innerUID: UInt32 = 1000
    var innerGID: UInt32 = 1000
    /// The unprivileged host ids a root runner's worker becomes (nil: the runner's own ids).
    var hostIdentity: WorkerHostIdentity?
    var hostname = "leasehold"
    var cpuSeconds: Int64
    var addressSpace: Int64
    var fileSize: Int64
    var openFiles: Int64
    var processes: Int64
    var landlock: [LandlockRule]
    var landlockRequired: Bool
    /// The BASE seccomp program (sock_filter bytes).
    var filter: [UInt8]
    /// Parent descriptors that become the child's 0, 1, 2, ... (-1: /dev/null).
    var childDescriptors: [Int32]
    /// A network grant: the port of the egress proxy's listener on 127.0.0.1 inside the worker's
    /// network namespace, which the child creates and hands back (0: no network at all).
    var egressPort: Int32 = 0
}

extension SpawnPlan {
    /// Runs `csb_spawn` with C views of the plan. Blocking: call it on the spawner thread only.
    ///
    /// `egressListener` is the listening socket of a plan with an ``egressPort`` (else -1), owned
    /// by the caller.
    func spawnBlocking() -> Result<(pid: pid_t, pidfd: Int32, egressListener: Int32), SandboxError> {
        var arena = CStringArena()
        defer { arena.free() }
        let argvC = arena.nullTerminated(argv)
        let envC = arena.nullTerminated(environment)
        let dirsC = arena.nullTerminated(directories)
        var bindsC = binds.map { bind in
            csb_bind(
                source: arena.string(bind.source), target: arena.string(bind.target),
                flags: ((bind.readOnly ? Int32(CSB_BIND_READONLY) : 0)
                    | (bind.executable ? Int32(CSB_BIND_EXEC) : 0)
                    | (bind.optional ? Int32(CSB_BIND_OPTIONAL) : 0) | (bind.pinned ? Int32(CSB_BIND_PINNED) : 0)))
        }
        var linksC = symlinks.map { csb_symlink(target: arena.string($0.target), linkpath: arena.string($0.link)) }
        var rulesC = landlock.map { rule in
            csb_landlock_rule(
                path: arena.string(rule.path),
                access: ((rule.read ? Int32(CSB_LL_READ) : 0) | (rule.write ? Int32(CSB_LL_WRITE) : 0)
                    | (rule.execute ? Int32(CSB_LL_EXECUTE) : 0)))
        }
        var fds = childDescriptors
        var result = csb_spawn_result()
        let status: Int32 = filter.withUnsafeBytes { filterBytes in
            bindsC.withUnsafeMutableBufferPointer { binds in
                linksC.withUnsafeMutableBufferPointer { links in
                    rulesC.withUnsafeMutableBufferPointer { rules in
                        fds.withUnsafeMutableBufferPointer { fds in
                            var spec = csb_spawn_spec()
                            spec.executable = arena.string(executable)
                            spec.exec_target = arena.string(execTarget)
                            spec.argv = argvC
                            spec.envp = envC
                            spec.binds = UnsafePointer(binds.baseAddress)
                            spec.bind_count = Int32(binds.count)
                            spec.symlinks = UnsafePointer(links.baseAddress)
                            spec.symlink_count = Int32(links.count)
                            spec.directories = dirsC
                            spec.directory_count = Int32(directories.count)
                            spec.tmp_size = tmpSize
                            spec.inner_uid = innerUID
                            spec.inner_gid = innerGID
                            if let hostIdentity {
                                spec.host_ids_set = 1
                                spec.host_uid = hostIdentity.uid
                                spec.host_gid = hostIdentity.gid
                            }
                            spec.hostname = arena.string(hostname)
                            spec.limits = csb_limits(
                                cpu_seconds: cpuSeconds, address_space: addressSpace, file_size: fileSize,
                                open_files: openFiles, processes: processes)
                            spec.landlock_rules = UnsafePointer(rules.baseAddress)
                            spec.landlock_rule_count = Int32(rules.count)
                            spec.landlock_required = landlockRequired ? 1 : 0
                            spec.filter = filterBytes.baseAddress
                            spec.filter_len = filterBytes.count / 8
                            spec.child_fds = UnsafePointer(fds.baseAddress)
                            spec.child_fd_count = Int32(fds.count)
                            spec.egress_port = egressPort
                            return csb_spawn(&spec, &result)
                        }
                    }
                }
            }
        }
        guard status == 0 else {
            if result.stage == CSB_STAGE_SPEC.rawValue && hostIdentity == nil && geteuid() == 0 {
                return .failure(
                    SandboxError(
                        .spawnFailed, "a root runner never runs a worker as host root, and no unprivileged host id was given",
                        stage: "spec", errno: result.error))
            }
            let stage = String(cString: csb_stage_name(result.stage))
            return .failure(
                SandboxError(
                    .spawnFailed, "the worker could not be confined", stage: stage, errno: result.error))
        }
        return .success((result.pid, result.pidfd, result.egress_listener))
    }
}

/// C strings that live until `free()`: the plan's strings must outlive one `csb_spawn` call,
/// and nothing may be allocated in the child, so every one is copied here first.
private struct CStringArena {
    private var owned: [UnsafeMutablePointer<CChar>] = []
    private var arrays: [UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>] = []

    mutating func string(_ value: String) -> UnsafePointer<CChar> {
        UnsafePointer(mutableString(value))
    }

    private mutating func mutableString(_ value: String) -> UnsafeMutablePointer<CChar> {
        let copy = strdup(value)!
        owned.append(copy)
        return copy
    }

    mutating func nullTerminated(_ values: [String]) -> UnsafePointer<UnsafeMutablePointer<CChar>?> {
        let array = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: values.count + 1)
        for (index, value) in values.enumerated() { array[index] = mutableString(value) }
        array[values.count] = nil
        arrays.append(array)
        return UnsafePointer(array)
    }

    mutating func free() {
        for pointer in owned { Glibc.free(pointer) }
        for array in arrays { array.deallocate() }
        owned.removeAll()
        arrays.removeAll()
    }
}
