#if canImport(Glibc)
    import Glibc
#endif

/// The runner's open-file limit, and how much of it HTTP connections may take.
///
/// Every HTTP connection is a descriptor, and so is every live worker's socket and pidfd: when
/// connections took them all (issue 14, finding 4), other tenants' calls failed and worker
/// socketpairs failed with `EMFILE`. So `serve` raises the soft `RLIMIT_NOFILE` to the hard one,
/// reserves descriptors for the runner's own files and for `worker_max_live` workers, and caps
/// connections at what is left (never above `http.max_connections`).
public struct DescriptorBudget: Sendable, Equatable {
    /// Kept for the runner itself: the SQLite files (state and audit, each with WAL and shm, and
    /// the CLI's), event-loop epoll and eventfds, the listening socket, log and policy files, the
    /// spawner's transient pipes, and margin.
    public static let baseReserve = 256
    /// Held per live worker: its socket and pidfd, plus its end of the socketpair and the
    /// confinement report pipe while it is being spawned.
    public static let perWorker = 4
    /// The fewest connections allowed whatever the limit (a runner this short of descriptors
    /// logs a warning and `doctor` says so).
    public static let minimumConnections = 16

    /// The soft limit in force.
    public var softLimit: Int
    /// The hard limit.
    public var hardLimit: Int
    /// Live workers reserved for (`worker_max_live`).
    public var workers: Int

    /// Creates a budget from known limits.
    public init(softLimit: Int, hardLimit: Int, workers: Int) {
        self.softLimit = softLimit
        self.hardLimit = hardLimit
        self.workers = workers
    }

    /// Descriptors kept for everything but connections.
    public var reserve: Int { Self.baseReserve + Self.perWorker * workers }

    /// Connections allowed: the configured cap, lowered to what the limit leaves after ``reserve``.
    public func connections(configured: Int) -> Int {
        min(configured, max(Self.minimumConnections, softLimit - reserve))
    }

    /// The per-address cap in force: the configured one, lowered to half of `connections` (the cap
    /// ``connections(configured:)`` leaves) so that one client address never holds every connection.
    /// Without that, a limit of 256 open files left 16 connections under a per-address cap of 256:
    /// one client's idle keep-alive connections shut out every other tenant and the admin API until
    /// they timed out. 0 (no per-address cap, e.g. behind a proxy) is the operator's choice and kept.
    public static func connectionsPerAddress(configured: Int, connections: Int) -> Int {
        configured == 0 ? 0 : min(configured, max(1, connections / 2))
    }

    /// The limits as they are, without changing them (`doctor`).
    public static func current(workers: Int) -> DescriptorBudget {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
            return DescriptorBudget(softLimit: 1024, hardLimit: 1024, workers: workers)
        }
        return DescriptorBudget(softLimit: clamp(limit.rlim_cur), hardLimit: clamp(limit.rlim_max), workers: workers)
    }

    /// Raises the soft limit to the hard limit (at `serve`'s start) and returns the budget then in
    /// force. Workers set their own, lower, limit when they are confined.
    public static func raisingSoftLimit(workers: Int) -> DescriptorBudget {
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised)
        }
        return current(workers: workers)
    }

    private static func clamp(_ value: rlim_t) -> Int {
        value >= rlim_t(Int.max) ? Int.max : Int(value)
    }
}
