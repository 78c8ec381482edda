import Foundation
import Runner

#if canImport(Glibc)
    import Glibc
#endif

extension Doctor {
    /// Disk bounds on this host: the quotas in force, whether the state directory (the audit log)
    /// shares a filesystem with the workspace bases, the free space, and the audit reserve.
    func reportDisk() {
        let settings: RunnerSettings
        do {
            settings = try resolvedSettings()
        } catch {
            print("disk:            cannot read the configuration: \(error)")
            return
        }
        let quotas = settings.tenants.disk
        let reserveBytes = settings.audit.reserveBytes
        func limits(_ limits: DiskQuotas.Limits) -> String {
            "tenant \(limits.tenant.bytes >> 20) MiB / \(limits.tenant.files) files, "
                + "workspace \(limits.workspace.bytes >> 20) MiB / \(limits.workspace.files) files"
        }
        print(
            "disk quotas:     \(limits(quotas.standard)) (write tools refused past them; exec measured after each call)"
        )
        for (tenant, override) in quotas.overrides.sorted(by: { $0.key < $1.key }) {
            print("disk quotas:     \(tenant): \(limits(override))")
        }
        guard let state = realpath(stateDir, nil) else {
            print("disk:            no state directory at \(stateDir)")
            return
        }
        let canonical = String(cString: state)
        free(state)
        func filesystem(_ path: String) -> (device: UInt64, free: Int64)? {
            var st = stat()
            var fs = statvfs()
            guard stat(path, &st) == 0, statvfs(path, &fs) == 0 else { return nil }
            return (UInt64(st.st_dev), Int64(fs.f_bavail) * Int64(fs.f_frsize))
        }
        guard let stateFS = filesystem(canonical) else {
            print("disk:            cannot stat \(canonical)")
            return
        }
        print("state directory: \(canonical): \(stateFS.free >> 20) MiB free")
        for base in settings.workspaceBases(stateDirectory: canonical) {
            guard let baseFS = filesystem(base) else {
                print("workspace base:  \(base): missing")
                continue
            }
            print(
                "workspace base:  \(base): "
                    + (baseFS.device == stateFS.device
                        ? "SHARES the state directory's filesystem: the audit reserve is all that keeps the audit log writable when it fills (a separate filesystem is recommended)"
                        : "separate filesystem from the state directory (\(baseFS.free >> 20) MiB free)"))
        }
        guard reserveBytes > 0 else {
            print("audit reserve:   none (audit_reserve_mib: 0)")
            return
        }
        let path = canonical + "/audit-reserve"
        var st = stat()
        let inPlace = lstat(path, &st) == 0 && Int64(st.st_blocks) * 512 >= reserveBytes
        print(
            "audit reserve:   \(reserveBytes >> 20) MiB at \(path): "
                + (inPlace
                    ? "in place"
                    : "not in place (serve allocates it at start; released when the filesystem was full)"))
    }
}
