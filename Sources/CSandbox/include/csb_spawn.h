#ifndef CSB_SPAWN_H
#define CSB_SPAWN_H

// Spawning confined workers. This is C because everything between clone and execve runs in a
// child of the multi-threaded runner, where only async-signal-safe calls are allowed: no malloc,
// no locks, no Swift runtime. Everything the child needs (strings, seccomp program, capability
// state) is prepared by the parent before clone.

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// Bind-mount flags.
enum {
    /// Mount read-only (remounted MS_RDONLY after the bind).
    CSB_BIND_READONLY = 1 << 0,
    /// The source may be missing; then the bind is skipped silently.
    CSB_BIND_OPTIONAL = 1 << 1,
    /// Allow executing files from this mount (otherwise MS_NOEXEC). nosuid and nodev are always set.
    CSB_BIND_EXEC = 1 << 2,
    /// The source must be a directory reached without any symlink: the runner opens it with
    /// openat2(RESOLVE_NO_SYMLINKS) before clone and the child binds exactly that directory
    /// through the descriptor, so a path swapped for a symlink afterwards changes nothing
    /// (workspace roots).
    CSB_BIND_PINNED = 1 << 3,
};

/// One bind mount: `source` (an absolute host path, file or directory) appears at `target`
/// (an absolute path inside the new root; parents are created as needed).
struct csb_bind {
    const char *source;
    const char *target;
    int flags;
};

/// One symlink created inside the new root: `linkpath` (absolute, inside) -> `target` (verbatim).
struct csb_symlink {
    const char *target;
    const char *linkpath;
};

/// Landlock access classes a rule grants beneath a path (mapped to LANDLOCK_ACCESS_FS_* bits that
/// the running ABI supports).
enum {
    /// Read files and list directories.
    CSB_LL_READ = 1 << 0,
    /// Create, write, truncate, remove, rename files and directories (no device nodes).
    CSB_LL_WRITE = 1 << 1,
    /// Execute files.
    CSB_LL_EXECUTE = 1 << 2,
};

/// One Landlock rule: `path` is inside the new root (after pivot_root), e.g. "/workspace".
/// A missing path is skipped.
struct csb_landlock_rule {
    const char *path;
    int access;
};

/// A resource limit; `value` is used for soft and hard. Negative = leave unchanged.
struct csb_limits {
    int64_t cpu_seconds;     // RLIMIT_CPU
    int64_t address_space;   // RLIMIT_AS, bytes
    int64_t file_size;       // RLIMIT_FSIZE, bytes (0 = no file may grow)
    int64_t open_files;      // RLIMIT_NOFILE
    int64_t processes;       // RLIMIT_NPROC (counted per user namespace on Linux >= 5.14)
};

/// Everything one worker needs, resolved by the runner.
struct csb_spawn_spec {
    /// Host path of the executable to run (statically linked; it is bind-mounted read-only at
    /// `exec_target` inside the new root and exec'ed from there).
    const char *executable;
    /// Where the executable appears inside the new root, e.g. "/.leasehold/worker".
    const char *exec_target;
    /// NULL-terminated argv and envp for the executable.
    char *const *argv;
    char *const *envp;

    /// Bind mounts, applied in order (the workspace is one of them, at "/workspace").
    const struct csb_bind *binds;
    int bind_count;
    /// Symlinks created in the new root after the binds (e.g. /bin -> usr/bin).
    const struct csb_symlink *symlinks;
    int symlink_count;
    /// Directories created empty in the new root (e.g. "/etc") before binds.
    char *const *directories;
    int directory_count;

    /// Size of the private tmpfs at /tmp, bytes (0 = no /tmp).
    int64_t tmp_size;
    /// The uid and gid the worker has inside its user namespace (mapped to the runner's euid/egid,
    /// or to host_uid/host_gid when `host_ids_set`).
    uid_t inner_uid;
    gid_t inner_gid;
    /// 1 when the runner is root: the worker must never be host root, so the child builds its
    /// mounts as root in namespaces owned by the initial user namespace, then becomes
    /// host_uid/host_gid (no supplementary groups), and only then enters a user namespace of its
    /// own that maps inner_uid to host_uid. 0: the runner is unprivileged and the child maps the
    /// runner's own ids (the worker is exactly as privileged as the runner's user).
    int host_ids_set;
    uid_t host_uid;
    gid_t host_gid;
    /// Hostname inside the UTS namespace.
    const char *hostname;

    /// Resource limits.
    struct csb_limits limits;

    /// Landlock rules (paths inside the new root). The executable at `exec_target` always gets
    /// READ|EXECUTE. `landlock_required` = 1: failing to apply Landlock fails the spawn.
    const struct csb_landlock_rule *landlock_rules;
    int landlock_rule_count;
    int landlock_required;

    /// The seccomp program installed last before execve: `filter` points at `filter_len`
    /// struct sock_filter instructions (from csb_seccomp_compile). NULL = spawn fails (never run
    /// a worker unfiltered).
    const void *filter;
    size_t filter_len;

    /// Descriptors the child receives, dup2'ed to 0, 1, 2, 3, 4, ... in order (-1 in a slot opens
    /// /dev/null there). Every other descriptor is closed in the child.
    const int *child_fds;
    int child_fd_count;

    /// 0: no network at all (an empty network namespace; Landlock, where it handles TCP, allows
    /// no bind or connect). 1-65535, for a worker whose upstream server holds a network grant: the
    /// child brings up `lo` in its own network namespace and listens on 127.0.0.1:egress_port
    /// there before it confines itself; the listening socket goes to the runner
    /// (`csb_spawn_result.egress_listener`, the runner's egress proxy accepts on it) and is not
    /// kept in the worker, and Landlock lets the worker TCP-connect to that port only (no bind).
    int egress_port;
};

/// Failure stages, reported as {stage, errno}.
enum csb_stage {
    CSB_STAGE_NONE = 0,
    CSB_STAGE_PIPE = 1,
    CSB_STAGE_CLONE = 2,
    CSB_STAGE_USERNS_MAP = 3,
    CSB_STAGE_HOSTNAME = 4,
    CSB_STAGE_MOUNT_PRIVATE = 5,
    CSB_STAGE_MOUNT_ROOT = 6,
    CSB_STAGE_MOUNT_BIND = 7,
    CSB_STAGE_MOUNT_PROC = 8,
    CSB_STAGE_MOUNT_DEV = 9,
    CSB_STAGE_MOUNT_TMP = 10,
    CSB_STAGE_SYMLINK = 11,
    CSB_STAGE_PIVOT_ROOT = 12,
    CSB_STAGE_RLIMIT = 13,
    CSB_STAGE_PDEATHSIG = 14,
    CSB_STAGE_PARENT_GONE = 15,
    CSB_STAGE_SETSID = 16,
    CSB_STAGE_FDS = 17,
    CSB_STAGE_CAPS = 18,
    CSB_STAGE_NO_NEW_PRIVS = 19,
    CSB_STAGE_LANDLOCK = 20,
    CSB_STAGE_SECCOMP = 21,
    CSB_STAGE_EXEC = 22,
    CSB_STAGE_SPEC = 23,
    CSB_STAGE_SETUID = 24,
    CSB_STAGE_MASK_PROC = 25,
    CSB_STAGE_EGRESS = 26,
};

/// The stage's short name ("pivot_root", "seccomp", ...), static storage.
const char *csb_stage_name(int stage);

/// The outcome of a spawn.
struct csb_spawn_result {
    /// The child's pid in the runner's pid namespace (> 0 on success).
    pid_t pid;
    /// A pidfd for the child (CLONE_PIDFD), owned by the caller.
    int pidfd;
    /// CSB_STAGE_NONE on success; else the stage that failed, with `error` its errno.
    int stage;
    int error;
    /// With `egress_port`: the listening TCP socket on 127.0.0.1:egress_port inside the worker's
    /// network namespace, owned by the caller (CLOEXEC). -1 otherwise.
    int egress_listener;
};

/// Spawns a confined worker and waits until it has exec'ed (or failed).
///
/// The child gets new user, mount, pid, net, ipc, uts and cgroup namespaces; a tmpfs root with the
/// binds, a minimal /dev (null, zero, full, random, urandom, and /dev/fd, stdin, stdout, stderr
/// links), a fresh /proc and a private /tmp; then pivot_root, rlimits, PR_SET_PDEATHSIG(SIGKILL)
/// with a parent check, setsid, all capabilities dropped, PR_SET_NO_NEW_PRIVS, Landlock, seccomp,
/// execve. It is pid 1 of its pid namespace: killing it kills every process it started.
///
/// Returns 0 on success; -1 with `out->stage`/`out->error` set on failure (a failed child has
/// been reaped). Call it from one long-lived thread: PR_SET_PDEATHSIG fires when the spawning
/// thread exits.
int csb_spawn(const struct csb_spawn_spec *spec, struct csb_spawn_result *out);

/// Seccomp profiles (policies name them read, write, exec).
enum csb_profile {
    CSB_PROFILE_READ = 0,
    CSB_PROFILE_WRITE = 1,
    CSB_PROFILE_EXEC = 2,
};

/// Which filter: BASE is installed by csb_spawn before execve (it must let the worker's own
/// execve through); TIER is installed by the worker itself before it reads any request, and is
/// inherited by everything the worker runs.
enum csb_filter_stage {
    CSB_FILTER_BASE = 0,
    CSB_FILTER_TIER = 1,
    /// Or'ed into either stage (EXEC profile only): socket(2) may also create AF_INET and AF_INET6
    /// sockets, for a worker whose upstream server holds a network grant (its network namespace
    /// holds only loopback and the runner's egress proxy).
    CSB_FILTER_INET = 1 << 4,
};

/// Compiles a profile's filter with libseccomp (binary-tree optimised) into a malloc'ed array of
/// struct sock_filter; `*out_len` is the instruction count. `stage` is a csb_filter_stage, with
/// CSB_FILTER_INET or'ed in for a worker with a network grant. Returns 0 or -errno.
int csb_seccomp_compile(int profile, int stage, void **out_filter, size_t *out_len);

/// Human-readable list of the syscall names a profile's TIER filter allows, for `leasehold doctor`
/// and `policy explain` (static storage, comma-separated).
const char *csb_seccomp_describe(int profile);

/// Sends SIGKILL through a pidfd. Returns 0 or -errno.
int csb_pidfd_kill(int pidfd);

/// Reaps the child behind `pidfd` without blocking when `nohang` is 1. Returns 1 when reaped (with
/// `*exited` = 1 and `*code` the exit code, or `*exited` = 0 and `*code` the signal), 0 when still
/// running, -errno on failure.
int csb_pidfd_reap(int pidfd, int nohang, int *exited, int *code);

#endif
