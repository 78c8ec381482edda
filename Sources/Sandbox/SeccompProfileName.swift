/// The seccomp profiles a risk tier may name, from most to least restrictive.
///
/// These are the worker's built-in filters (DESIGN.md §5): every profile denies the dangerous
/// syscalls listed there; `read` additionally denies writes, `execve` and `fork`; `write` allows
/// writes beneath the workspace; `exec` allows running processes. Policy validation refuses any
/// other name, so a typo cannot select "no filter": a tier holds one of these from the moment
/// its file is read, never a string compared later.
public enum SeccompProfileName: String, CaseIterable, Sendable, Comparable, Codable {
    /// Read-only tools.
    case read
    /// Tools that write inside the workspace.
    case write
    /// Tools that run processes.
    case exec

    /// Ordered by how much the profile allows: `read` < `write` < `exec`.
    public static func < (lhs: Self, rhs: Self) -> Bool {
        allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
    }
}
