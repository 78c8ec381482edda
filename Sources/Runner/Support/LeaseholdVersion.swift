/// The runner's version string.
public enum LeaseholdVersion {
    /// Reported in `serverInfo` and `/healthz`.
    public static let current = "0.1.0"
}
