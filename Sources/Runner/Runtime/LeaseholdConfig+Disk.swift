import WorkspaceRegistry

extension LeaseholdConfig {
    /// The largest disk quota accepted, MiB (1 PiB).
    static let maximumDiskMiB = 1 << 30
    /// The largest inode quota accepted.
    static let maximumDiskFiles = 1_000_000_000
    /// The largest audit reserve accepted, MiB (64 GiB).
    static let maximumAuditReserveMiB = 65_536

    /// Disk quotas, validated (`tenant_limits:` `disk_mib`, `disk_files`, `workspace_disk_mib`,
    /// `workspace_disk_files`, and the same keys under `tenants.ID`): each at least 1; an override
    /// names a tenant id. Defaults: ``DiskQuotas/defaultLimits``.
    func diskQuotas() throws(ConfigError) -> DiskQuotas {
        func limits(
            _ mib: Int?, _ files: Int?, _ workspaceMiB: Int?, _ workspaceFiles: Int?, base: DiskQuotas.Limits,
            for name: String
        ) throws(ConfigError) -> DiskQuotas.Limits {
            func mebibytes(_ value: Int?, _ key: String, _ fallback: Int64) throws(ConfigError) -> Int64 {
                guard let value else { return fallback }
                guard (1...Self.maximumDiskMiB).contains(value) else {
                    throw ConfigError("\(name) \(key) must be between 1 and \(Self.maximumDiskMiB), not \(value)")
                }
                return Int64(value) << 20
            }
            func count(_ value: Int?, _ key: String, _ fallback: Int64) throws(ConfigError) -> Int64 {
                guard let value else { return fallback }
                guard (1...Self.maximumDiskFiles).contains(value) else {
                    throw ConfigError("\(name) \(key) must be between 1 and \(Self.maximumDiskFiles), not \(value)")
                }
                return Int64(value)
            }
            return DiskQuotas.Limits(
                tenant: DiskUsage(
                    bytes: try mebibytes(mib, "disk_mib", base.tenant.bytes),
                    files: try count(files, "disk_files", base.tenant.files)),
                workspace: DiskUsage(
                    bytes: try mebibytes(workspaceMiB, "workspace_disk_mib", base.workspace.bytes),
                    files: try count(workspaceFiles, "workspace_disk_files", base.workspace.files)))
        }
        var quotas = RunnerSettings.defaults.tenants.disk
        guard let tenantLimits else { return quotas }
        (quotas.standard, quotas.overrides) = try tenantLimits.resolve(quotas.standard) {
            values, base, name throws(ConfigError) in
            try limits(
                values.diskMiB, values.diskFiles, values.workspaceDiskMiB, values.workspaceDiskFiles, base: base,
                for: name)
        }
        return quotas
    }

    /// The audit reserve in bytes (`audit_reserve_mib`, default 64 MiB, 0 turns it off).
    func auditReserveBytes() throws(ConfigError) -> Int64 {
        guard let mib = auditReserveMiB else { return RunnerSettings.defaults.audit.reserveBytes }
        guard (0...Self.maximumAuditReserveMiB).contains(mib) else {
            throw ConfigError("audit_reserve_mib must be between 0 and \(Self.maximumAuditReserveMiB), not \(mib)")
        }
        return Int64(mib) << 20
    }
}
