#if canImport(Glibc)
    import Glibc
#endif

/// Children of the worker. It may be pid 1 of its pid namespace, where every orphan becomes its
/// child: after each call nothing a command started may survive, and every zombie is reaped.
enum Processes {
    static func reapAfterCall() {
        if getpid() == 1 {
            // kill(-1) from pid 1 signals every other process of the namespace, never pid 1 itself.
            _ = kill(-1, SIGKILL)
            var status: Int32 = 0
            while true {
                let pid = waitpid(-1, &status, 0)
                if pid > 0 { continue }
                if pid < 0 && errno == EINTR { continue }
                break  // ECHILD: nobody left
            }
        } else {
            var status: Int32 = 0
            while waitpid(-1, &status, WNOHANG) > 0 {}
        }
    }
}
