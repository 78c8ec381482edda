// Spawning confined workers (see csb_spawn.h). This is C because everything between clone and
// execve runs in a child of the multi-threaded runner: only async-signal-safe calls are allowed
// there (no malloc, no locks, no stdio, no Swift runtime). The parent prepares every string, the
// seccomp program and the Landlock ruleset description before clone; the child shares the
// runner's memory (CLONE_VM, the runner's thread suspended by CLONE_VFORK) and only issues
// syscalls on that prepared context and its own stack.
//
// Child order (nsjail containProc, bubblewrap), one named function per stage in csb_child_stages:
// signal defaults -> uid/gid maps (unprivileged runner) -> hostname -> egress listener (network
// grants only) -> private mounts, tmpfs root with its directories and private /tmp -> binds ->
// /dev, /proc (masked), symlinks -> pivot_root -> tenant ids and user namespace (root runner) ->
// rlimits -> PDEATHSIG and parent check -> setsid -> descriptors and RLIMIT_NOFILE -> capabilities
// -> NO_NEW_PRIVS -> Landlock -> seccomp -> execve. Any failure is written as {stage, errno} to a
// CLOEXEC pipe and the child _exit(127)s; EOF on the pipe tells the parent that execve succeeded.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "csb_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <sched.h>
#include <linux/seccomp.h>
#include <linux/securebits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif
#define CSB_P_PIDFD ((idtype_t)3)

// ---- Landlock (the system header predates ABI 3; the UAPI values are stable) --------------------

#define CSB_LL_FS_EXECUTE (1ULL << 0)
#define CSB_LL_FS_WRITE_FILE (1ULL << 1)
#define CSB_LL_FS_READ_FILE (1ULL << 2)
#define CSB_LL_FS_READ_DIR (1ULL << 3)
#define CSB_LL_FS_REMOVE_DIR (1ULL << 4)
#define CSB_LL_FS_REMOVE_FILE (1ULL << 5)
#define CSB_LL_FS_MAKE_CHAR (1ULL << 6)
#define CSB_LL_FS_MAKE_DIR (1ULL << 7)
#define CSB_LL_FS_MAKE_REG (1ULL << 8)
#define CSB_LL_FS_MAKE_SOCK (1ULL << 9)
#define CSB_LL_FS_MAKE_FIFO (1ULL << 10)
#define CSB_LL_FS_MAKE_BLOCK (1ULL << 11)
#define CSB_LL_FS_MAKE_SYM (1ULL << 12)
#define CSB_LL_FS_REFER (1ULL << 13)    // ABI 2
#define CSB_LL_FS_TRUNCATE (1ULL << 14) // ABI 3
#define CSB_LL_FS_IOCTL_DEV (1ULL << 15) // ABI 5
#define CSB_LL_NET_BIND_TCP (1ULL << 0)  // ABI 4
#define CSB_LL_NET_CONNECT_TCP (1ULL << 1)
#define CSB_LL_SCOPE_ABSTRACT_UNIX (1ULL << 0) // ABI 6
#define CSB_LL_SCOPE_SIGNAL (1ULL << 1)
#define CSB_LL_RULE_PATH_BENEATH 1
#define CSB_LL_RULE_NET_PORT 2 // ABI 4
#define CSB_LL_CREATE_RULESET_VERSION (1U << 0)

// Rights that make sense on a non-directory; the kernel refuses others in a rule for a file.
#define CSB_LL_FS_FILE_RIGHTS                                                                      \
    (CSB_LL_FS_EXECUTE | CSB_LL_FS_WRITE_FILE | CSB_LL_FS_READ_FILE | CSB_LL_FS_TRUNCATE |         \
     CSB_LL_FS_IOCTL_DEV)

struct csb_ll_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net;
    uint64_t scoped;
};

struct csb_ll_path_beneath {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

struct csb_ll_net_port {
    uint64_t allowed_access;
    uint64_t port;
};

// ---- What the parent prepares ------------------------------------------------------------------

struct csb_prep_bind {
    char *src;  // "/oldroot" + realpath(source) (or + source, unresolved, when pinned); NULL = skip
    char *dst;  // "/newroot" + target
    int flags;
};

struct csb_ctx {
    const struct csb_spawn_spec *spec;
    char uid_map[64];
    char gid_map[64];
    char tmp_opts[64];
    struct csb_prep_bind *binds; // spec binds, then the executable
    int bind_count;
    char **dirs;  // "/newroot" + directory
    char **links; // "/newroot" + linkpath
    int *fd_tmp;  // scratch for the descriptor shuffle (child_fd_count)
    int err_fd;   // write end of the error pipe
    int egress_fd; // the child's end of the socketpair the egress listener is sent over; -1: none
    int last_cap;
    struct csb_ll_ruleset_attr ll_attr; // handled rights; all zero = no Landlock on this kernel
    int ll_abi;                         // > 0, or -errno from the probe
};

// ---- Child side: async-signal-safe only --------------------------------------------------------

__attribute__((noreturn)) static void csb_child_fail(const struct csb_ctx *c, int stage, int err) {
    int msg[2] = {stage, err};
    ssize_t n;
    do n = write(c->err_fd, msg, sizeof msg);
    while (n < 0 && errno == EINTR);
    _exit(127);
}

#define CSB_TRY(c, expr, stage)                                                                    \
    do {                                                                                           \
        if ((expr) < 0) csb_child_fail((c), (stage), errno);                                       \
    } while (0)

static int csb_write_file(const char *path, const char *s) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t len = strlen(s);
    ssize_t n = write(fd, s, len);
    int err = errno;
    close(fd);
    if (n != (ssize_t)len) {
        errno = n < 0 ? err : EIO;
        return -1;
    }
    return 0;
}

// mkdir -p of every component of `path` (including the last one when `last`), cutting the string
// in place at each '/' and restoring it.
static int csb_mkdirs(char *path, int last) {
    for (char *p = path + 1;; p++) {
        if (*p == '/' || (*p == '\0' && last)) {
            char saved = *p;
            *p = '\0';
            int rc = mkdir(path, 0755);
            int err = errno;
            *p = saved;
            if (rc < 0 && err != EEXIST) {
                errno = err;
                return -1;
            }
        }
        if (*p == '\0') return 0;
    }
}

// Adds nosuid, nodev and the requested rdonly/noexec to a mount and, with AT_RECURSIVE, to every
// mount beneath it (a recursive bind of /usr must not leave a writable submount). mount_setattr
// only sets the bits given, so it never trips over the atime or other flags the kernel locks on
// mounts inherited from the parent namespace; the MS_REMOUNT fallback (kernels < 5.12) has to
// repeat those flags, which statfs reports.
static int csb_restrict_mount(const char *path, int readonly, int noexec, int recursive) {
    struct mount_attr attr = {0};
    attr.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (readonly ? MOUNT_ATTR_RDONLY : 0) |
                    (noexec ? MOUNT_ATTR_NOEXEC : 0);
    if (syscall(SYS_mount_setattr, AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &attr,
                sizeof attr) == 0)
        return 0;
    if (errno != ENOSYS) return -1;
    struct statfs sf;
    if (syscall(SYS_statfs, path, &sf) < 0) return -1;
    unsigned long keep = (unsigned long)sf.f_flags &
                         (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME |
                          MS_NODIRATIME | MS_RELATIME);
    unsigned long flags = MS_REMOUNT | MS_BIND | keep | MS_NOSUID | MS_NODEV |
                          (readonly ? MS_RDONLY : 0) | (noexec ? MS_NOEXEC : 0);
    return mount(NULL, path, NULL, flags, NULL);
}

// Binds a file or directory; creates the target (directory or empty file placeholder) first.
static int csb_bind_one(char *src, char *dst, int recursive) {
    struct stat st;
    if (stat(src, &st) < 0) return -1;
    if (csb_mkdirs(dst, 0) < 0) return -1;
    if (S_ISDIR(st.st_mode)) {
        if (mkdir(dst, 0755) < 0 && errno != EEXIST) return -1;
    } else {
        int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444);
        if (fd < 0) return -1;
        close(fd);
    }
    if (mount(src, dst, NULL, MS_BIND | (recursive ? MS_REC : 0), NULL) < 0) return -1;
    return 0;
}

// A workspace root: opened with openat2(RESOLVE_NO_SYMLINKS) and bound through the child's own
// descriptor (/proc/self/fd/N), so a root path that had a component swapped for a symlink after
// registration fails (ELOOP) instead of binding whatever the symlink names. Found in review.
static int csb_bind_pinned(const char *src, char *dst) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    long fd = syscall(SYS_openat2, AT_FDCWD, src, &how, sizeof how);
    if (fd < 0) return -1;
    // "/oldroot/proc/self/fd/" + the number, built by hand: snprintf is not async-signal-safe.
    char link[48] = "/oldroot/proc/self/fd/";
    char digits[16];
    int n = 0;
    long v = fd;
    do digits[n++] = (char)('0' + v % 10), v /= 10;
    while (v > 0 && n < (int)sizeof digits);
    size_t at = strlen(link);
    while (n > 0) link[at++] = digits[--n];
    link[at] = 0;
    int rc = csb_bind_one(link, dst, 1);
    int saved = errno;
    close((int)fd);
    errno = saved;
    return rc;
}

static const char *const csb_dev_nodes[] = {"null", "zero", "full", "random", "urandom"};
static const char *const csb_dev_links[][2] = {
    {"/proc/self/fd", "/newroot/dev/fd"},
    {"/proc/self/fd/0", "/newroot/dev/stdin"},
    {"/proc/self/fd/1", "/newroot/dev/stdout"},
    {"/proc/self/fd/2", "/newroot/dev/stderr"},
};
// Parts of the fresh /proc made read-only and masked, after runc's default readonlyPaths and
// maskedPaths (plus the kernel-memory views an attacker's review read as root: page flags, slab
// and vmalloc layout with physical addresses, page types). A worker is never host root any more,
// so most of these are unreadable anyway (0400 root); the masks are the second wall.
static const char *const csb_proc_ro[] = {
    "/newroot/proc/sys", "/newroot/proc/sysrq-trigger", "/newroot/proc/irq", "/newroot/proc/bus",
    "/newroot/proc/fs",
};
static const char *const csb_proc_masked_files[] = {
    "/newroot/proc/kcore",       "/newroot/proc/keys",        "/newroot/proc/latency_stats",
    "/newroot/proc/timer_list",  "/newroot/proc/timer_stats", "/newroot/proc/sched_debug",
    "/newroot/proc/kpageflags",  "/newroot/proc/kpagecount",  "/newroot/proc/kpagecgroup",
    "/newroot/proc/slabinfo",    "/newroot/proc/vmallocinfo", "/newroot/proc/pagetypeinfo",
    "/newroot/proc/kallsyms",
};
static const char *const csb_proc_masked_dirs[] = {
    "/newroot/proc/acpi", "/newroot/proc/asound", "/newroot/proc/scsi",
};

static void csb_setup_dev(const struct csb_ctx *c) {
    CSB_TRY(c, mkdir("/newroot/dev", 0755), CSB_STAGE_MOUNT_DEV);
    // Small and, once populated, read-only: a worker must not be able to fill memory through a
    // writable tmpfs at /dev (found in review: unbounded, it held gigabytes). Writes to the bound
    // device nodes still work: each is its own mount of the host's node.
    CSB_TRY(c, mount("tmpfs", "/newroot/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64"),
            CSB_STAGE_MOUNT_DEV);
    char src[32] = "/oldroot/dev/";
    char dst[32] = "/newroot/dev/";
    for (size_t i = 0; i < sizeof csb_dev_nodes / sizeof csb_dev_nodes[0]; i++) {
        // Fixed short names: strcpy into the fixed buffers is bounded.
        strcpy(src + 13, csb_dev_nodes[i]);
        strcpy(dst + 13, csb_dev_nodes[i]);
        CSB_TRY(c, csb_bind_one(src, dst, 0), CSB_STAGE_MOUNT_DEV);
    }
    for (size_t i = 0; i < sizeof csb_dev_links / sizeof csb_dev_links[0]; i++)
        CSB_TRY(c, symlink(csb_dev_links[i][0], csb_dev_links[i][1]), CSB_STAGE_MOUNT_DEV);
    CSB_TRY(c, mount(NULL, "/newroot/dev", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL),
            CSB_STAGE_MOUNT_DEV);
}

static void csb_setup_proc(const struct csb_ctx *c) {
    // Must happen while the host's /proc is still reachable under /oldroot: the kernel only lets a
    // user namespace mount proc when a fully visible proc already exists (mount_too_revealing).
    CSB_TRY(c, mkdir("/newroot/proc", 0555), CSB_STAGE_MOUNT_PROC);
    CSB_TRY(c, mount("proc", "/newroot/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL),
            CSB_STAGE_MOUNT_PROC);
    for (size_t i = 0; i < sizeof csb_proc_ro / sizeof csb_proc_ro[0]; i++) {
        if (mount(csb_proc_ro[i], csb_proc_ro[i], NULL, MS_BIND | MS_REC, NULL) < 0) {
            if (errno == ENOENT) continue;
            csb_child_fail(c, CSB_STAGE_MOUNT_PROC, errno);
        }
        CSB_TRY(c, csb_restrict_mount(csb_proc_ro[i], 1, 1, 1), CSB_STAGE_MOUNT_PROC);
    }
    // A file is masked by the host's /dev/null bound over it, read-only; a directory by an empty
    // read-only tmpfs. Entries this kernel does not have are skipped.
    for (size_t i = 0; i < sizeof csb_proc_masked_files / sizeof csb_proc_masked_files[0]; i++) {
        if (mount("/oldroot/dev/null", csb_proc_masked_files[i], NULL, MS_BIND, NULL) < 0) {
            if (errno == ENOENT) continue;
            csb_child_fail(c, CSB_STAGE_MASK_PROC, errno);
        }
        CSB_TRY(c, csb_restrict_mount(csb_proc_masked_files[i], 1, 1, 0), CSB_STAGE_MASK_PROC);
    }
    for (size_t i = 0; i < sizeof csb_proc_masked_dirs / sizeof csb_proc_masked_dirs[0]; i++) {
        if (mount("tmpfs", csb_proc_masked_dirs[i], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "mode=0555,size=4k,nr_inodes=1") < 0) {
            if (errno == ENOENT) continue;
            csb_child_fail(c, CSB_STAGE_MASK_PROC, errno);
        }
    }
}

// Serializes the spawns of a root runner's workers (see csb_spawn).
static pthread_mutex_t csb_identity_change = PTHREAD_MUTEX_INITIALIZER;

// A root runner's worker must never be host root. The child built its mounts as root in
// namespaces the initial user namespace owns; now it drops every supplementary group, becomes
// the tenant's unprivileged host ids, and only then enters a user namespace of its own, mapping
// inner_uid to those ids (case (a) of user_namespaces(7): its own euid). From here on it is, to
// the host, an ordinary unprivileged user that owns nothing but its tenant's workspaces; the mount,
// network and pid namespaces stay owned by the initial namespace, so it cannot even try to
// unmount what covers /proc.
// Raw syscalls: glibc's setgroups/setresuid broadcast the change to every thread of the process
// (its setxid signal), and this child shares the runner's memory and thread list.
static void csb_become_host_user(struct csb_ctx *c) {
    const struct csb_spawn_spec *s = c->spec;
    CSB_TRY(c, syscall(SYS_setgroups, 0, NULL), CSB_STAGE_SETUID);
    CSB_TRY(c, syscall(SYS_setresgid, s->host_gid, s->host_gid, s->host_gid), CSB_STAGE_SETUID);
    CSB_TRY(c, syscall(SYS_setresuid, s->host_uid, s->host_uid, s->host_uid), CSB_STAGE_SETUID);
    // Changing ids made the process non-dumpable, which gives its /proc/self files to root; the
    // maps below must be written by the process itself.
    CSB_TRY(c, prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), CSB_STAGE_SETUID);
    CSB_TRY(c, syscall(SYS_unshare, CLONE_NEWUSER), CSB_STAGE_USERNS_MAP);
    CSB_TRY(c, csb_write_file("/proc/self/setgroups", "deny"), CSB_STAGE_USERNS_MAP);
    CSB_TRY(c, csb_write_file("/proc/self/uid_map", c->uid_map), CSB_STAGE_USERNS_MAP);
    CSB_TRY(c, csb_write_file("/proc/self/gid_map", c->gid_map), CSB_STAGE_USERNS_MAP);
}

static uint64_t csb_ll_rights(int access, uint64_t handled, int is_dir) {
    uint64_t r = 0;
    if (access & CSB_LL_READ) r |= CSB_LL_FS_READ_FILE | CSB_LL_FS_READ_DIR;
    if (access & CSB_LL_WRITE)
        r |= CSB_LL_FS_WRITE_FILE | CSB_LL_FS_REMOVE_DIR | CSB_LL_FS_REMOVE_FILE |
             CSB_LL_FS_MAKE_DIR | CSB_LL_FS_MAKE_REG | CSB_LL_FS_MAKE_SOCK | CSB_LL_FS_MAKE_FIFO |
             CSB_LL_FS_MAKE_SYM | CSB_LL_FS_REFER | CSB_LL_FS_TRUNCATE;
    if (access & CSB_LL_EXECUTE) r |= CSB_LL_FS_EXECUTE;
    if (!is_dir) r &= CSB_LL_FS_FILE_RIGHTS;
    return r & handled;
}

static int csb_ll_add(int ruleset, const char *path, int access, uint64_t handled) {
    int fd = open(path, O_PATH | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : -1; // a missing path is skipped
    struct stat st;
    int rc = fstat(fd, &st);
    if (rc == 0) {
        struct csb_ll_path_beneath pb = {
            .allowed_access = csb_ll_rights(access, handled, S_ISDIR(st.st_mode)),
            .parent_fd = fd,
        };
        if (pb.allowed_access)
            rc = (int)syscall(SYS_landlock_add_rule, ruleset, CSB_LL_RULE_PATH_BENEATH, &pb, 0);
    }
    int err = errno;
    close(fd);
    errno = err;
    return rc;
}

// Returns 0, or -1 with errno.
static int csb_apply_landlock(const struct csb_ctx *c) {
    const struct csb_spawn_spec *s = c->spec;
    if (c->ll_abi <= 0) {
        errno = -c->ll_abi;
        return -1;
    }
    int rs = (int)syscall(SYS_landlock_create_ruleset, &c->ll_attr, sizeof c->ll_attr, 0);
    if (rs < 0) return -1;
    uint64_t handled = c->ll_attr.handled_access_fs;
    int rc = 0;
    for (int i = 0; i < s->landlock_rule_count && rc == 0; i++)
        rc = csb_ll_add(rs, s->landlock_rules[i].path, s->landlock_rules[i].access, handled);
    if (rc == 0) rc = csb_ll_add(rs, s->exec_target, CSB_LL_READ | CSB_LL_EXECUTE, handled);
    // A network grant: TCP connect to the egress proxy's port only (bind stays refused). In the
    // worker's network namespace that port on 127.0.0.1 is the runner's listener.
    if (rc == 0 && s->egress_port > 0 && (c->ll_attr.handled_access_net & CSB_LL_NET_CONNECT_TCP)) {
        struct csb_ll_net_port np = {.allowed_access = CSB_LL_NET_CONNECT_TCP, .port = (uint64_t)s->egress_port};
        rc = (int)syscall(SYS_landlock_add_rule, rs, CSB_LL_RULE_NET_PORT, &np, 0);
    }
    if (rc == 0) rc = (int)syscall(SYS_landlock_restrict_self, rs, 0);
    int err = errno;
    close(rs);
    errno = err;
    return rc;
}

// A network grant: the child owns its new network namespace (through its user namespace, or as
// root of the initial one before it becomes the tenant's ids), so it brings `lo` up and listens
// on 127.0.0.1:egress_port there, then hands the listening socket to the runner over a socketpair
// made before clone (SCM_RIGHTS; the child shares the runner's memory but not its descriptor
// table) and closes its own copy: the worker never holds it, and nothing in this namespace can
// reach past it. The runner's egress proxy accepts on it and decides every connection.
static void csb_setup_egress(const struct csb_ctx *c) {
    const struct csb_spawn_spec *s = c->spec;
    int ctl = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CSB_TRY(c, ctl, CSB_STAGE_EGRESS);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    CSB_TRY(c, ioctl(ctl, SIOCGIFFLAGS, &ifr), CSB_STAGE_EGRESS);
    ifr.ifr_flags |= IFF_UP;
    CSB_TRY(c, ioctl(ctl, SIOCSIFFLAGS, &ifr), CSB_STAGE_EGRESS);
    close(ctl);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    CSB_TRY(c, listener, CSB_STAGE_EGRESS);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)s->egress_port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CSB_TRY(c, bind(listener, (struct sockaddr *)&addr, sizeof addr), CSB_STAGE_EGRESS);
    CSB_TRY(c, listen(listener, 64), CSB_STAGE_EGRESS);
    char byte = 0;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &listener, sizeof(int));
    ssize_t sent;
    do sent = sendmsg(c->egress_fd, &msg, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    CSB_TRY(c, sent, CSB_STAGE_EGRESS);
    close(listener);
    close(c->egress_fd);
}

static void csb_setup_fds(struct csb_ctx *c) {
    const struct csb_spawn_spec *s = c->spec;
    int n = s->child_fd_count;
    // Move everything we still need to >= n first, so no dup2 onto 0..n-1 can clobber a source
    // or the error pipe (the runner may well hand us fd 3 as the source for slot 4).
    if (c->err_fd < n) CSB_TRY(c, c->err_fd = fcntl(c->err_fd, F_DUPFD_CLOEXEC, n), CSB_STAGE_FDS);
    int devnull = -1;
    for (int i = 0; i < n; i++) {
        int src = s->child_fds[i];
        if (src < 0) {
            if (devnull < 0) CSB_TRY(c, devnull = open("/dev/null", O_RDWR | O_CLOEXEC), CSB_STAGE_FDS);
            src = devnull;
        }
        CSB_TRY(c, c->fd_tmp[i] = fcntl(src, F_DUPFD_CLOEXEC, n), CSB_STAGE_FDS);
    }
    for (int i = 0; i < n; i++) CSB_TRY(c, dup2(c->fd_tmp[i], i), CSB_STAGE_FDS); // clears CLOEXEC
    // Everything >= n except the error pipe (CLOEXEC, closed by execve).
    if (c->err_fd > n) CSB_TRY(c, syscall(SYS_close_range, n, c->err_fd - 1, 0), CSB_STAGE_FDS);
    CSB_TRY(c, syscall(SYS_close_range, c->err_fd + 1, ~0U, 0), CSB_STAGE_FDS);
}

// Capabilities: raw prctl/capset syscalls instead of libcap calls, because libcap's cap_set_proc
// takes the mutex inside its cap_t and its helpers may allocate; the parent uses libcap only for
// cap_max_bits() (the number of capabilities the running kernel knows).
static void csb_drop_caps(const struct csb_ctx *c) {
    // Exec as uid 0 inside the namespace must never grant capabilities back (needs CAP_SETPCAP,
    // so before the drop). The bounding set is the real guarantee: it is empty afterwards.
    CSB_TRY(c, prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED, 0, 0, 0),
            CSB_STAGE_CAPS);
    for (int cap = 0; cap <= c->last_cap; cap++)
        CSB_TRY(c, prctl(PR_CAPBSET_DROP, cap, 0, 0, 0), CSB_STAGE_CAPS);
    CSB_TRY(c, prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), CSB_STAGE_CAPS);
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    memset(data, 0, sizeof data);
    CSB_TRY(c, syscall(SYS_capset, &hdr, data), CSB_STAGE_CAPS);
}

// ---- The child's stages, in order (nsjail containProc: confinement as a list of named calls) -----
//
// Each stage either succeeds or ends the child through csb_child_fail with {stage, errno}.

// The parent blocked every signal around clone: reset the runner's handlers and ignored signals
// to the defaults while still blocked; the mask is cleared right before execve.
static void csb_stage_reset_signals(struct csb_ctx *c) {
    (void)c;
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, NULL); // glibc-reserved: EINVAL
}

// Unprivileged runner: the child was born in its own user namespace and maps its own (outer)
// euid/egid (case (a) of user_namespaces(7)), which needs setgroups denied first. A root runner's
// child does this later, as the tenant's ids (csb_stage_become_host_user).
static void csb_stage_map_user(struct csb_ctx *c) {
    if (c->spec->host_ids_set) return;
    CSB_TRY(c, csb_write_file("/proc/self/setgroups", "deny"), CSB_STAGE_USERNS_MAP);
    CSB_TRY(c, csb_write_file("/proc/self/uid_map", c->uid_map), CSB_STAGE_USERNS_MAP);
    CSB_TRY(c, csb_write_file("/proc/self/gid_map", c->gid_map), CSB_STAGE_USERNS_MAP);
}

static void csb_stage_hostname(struct csb_ctx *c) {
    const char *name = c->spec->hostname;
    if (name) CSB_TRY(c, sethostname(name, strlen(name)), CSB_STAGE_HOSTNAME);
}

// Network grants only: the egress listener inside the worker's network namespace.
static void csb_stage_egress(struct csb_ctx *c) {
    if (c->spec->egress_port > 0) csb_setup_egress(c);
}

// bubblewrap's technique: a tmpfs on /tmp becomes the root with the host's root at /oldroot, so
// binds read their sources from /oldroot/... even when they live under the host's /tmp (which the
// tmpfs would otherwise hide). The worker's root is a second tmpfs at /newroot, with the spec's
// directories and, before the binds, its private /tmp: a bind whose target lies under /tmp (an
// upstream server's program in a checkout under the host's /tmp) lands on top of it instead of
// making /tmp exist before the tmpfs (EEXIST) or being hidden by it.
static void csb_stage_root_tmpfs(struct csb_ctx *c) {
    const struct csb_spawn_spec *s = c->spec;
    CSB_TRY(c, mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), CSB_STAGE_MOUNT_PRIVATE);
    CSB_TRY(c, mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k"),
            CSB_STAGE_MOUNT_ROOT);
    CSB_TRY(c, chdir("/tmp"), CSB_STAGE_MOUNT_ROOT);
    CSB_TRY(c, mkdir("newroot", 0755), CSB_STAGE_MOUNT_ROOT);
    CSB_TRY(c, mkdir("oldroot", 0755), CSB_STAGE_MOUNT_ROOT);
    CSB_TRY(c, syscall(SYS_pivot_root, ".", "oldroot"), CSB_STAGE_MOUNT_ROOT);
    CSB_TRY(c, chdir("/"), CSB_STAGE_MOUNT_ROOT);
    CSB_TRY(c, mount("tmpfs", "/newroot", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"),
            CSB_STAGE_MOUNT_ROOT);
    for (int i = 0; i < s->directory_count; i++)
        CSB_TRY(c, csb_mkdirs(c->dirs[i], 1), CSB_STAGE_MOUNT_ROOT);
    if (s->tmp_size > 0) {
        CSB_TRY(c, mkdir("/newroot/tmp", 01777), CSB_STAGE_MOUNT_TMP);
        CSB_TRY(c, mount("tmpfs", "/newroot/tmp", "tmpfs", MS_NOSUID | MS_NODEV, c->tmp_opts),
                CSB_STAGE_MOUNT_TMP);
    }
}

// The spec's binds (the workspace, system directories for exec tiers, the executable), each
// remounted with its own read-only and noexec flags.
static void csb_stage_binds(struct csb_ctx *c) {
    for (int i = 0; i < c->bind_count; i++) {
        struct csb_prep_bind *b = &c->binds[i];
        if (!b->src) continue;
        if (b->flags & CSB_BIND_PINNED) {
            CSB_TRY(c, csb_bind_pinned(b->src, b->dst), CSB_STAGE_MOUNT_BIND);
        } else if (csb_bind_one(b->src, b->dst, 1) < 0) {
            if (errno == ENOENT && (b->flags & CSB_BIND_OPTIONAL)) continue;
            csb_child_fail(c, CSB_STAGE_MOUNT_BIND, errno);
        }
        CSB_TRY(c,
                csb_restrict_mount(b->dst, b->flags & CSB_BIND_READONLY,
                                   !(b->flags & CSB_BIND_EXEC), 1),
                CSB_STAGE_MOUNT_BIND);
    }
}

// A minimal /dev, a fresh /proc with its dangerous parts masked, and the spec's symlinks.
static void csb_stage_dev_proc_links(struct csb_ctx *c) {
    csb_setup_dev(c);
    csb_setup_proc(c);
    for (int i = 0; i < c->spec->symlink_count; i++) {
        CSB_TRY(c, csb_mkdirs(c->links[i], 0), CSB_STAGE_SYMLINK);
        CSB_TRY(c, symlink(c->spec->symlinks[i].target, c->links[i]), CSB_STAGE_SYMLINK);
    }
}

// pivot_root(".", ".") stacks the old root on top of the new one; detaching it drops the whole
// host tree (including /oldroot) in one go. The root tmpfs only holds mount points: nothing may
// be created there.
static void csb_stage_pivot_root(struct csb_ctx *c) {
    CSB_TRY(c, chdir("/newroot"), CSB_STAGE_PIVOT_ROOT);
    CSB_TRY(c, syscall(SYS_pivot_root, ".", "."), CSB_STAGE_PIVOT_ROOT);
    CSB_TRY(c, umount2(".", MNT_DETACH), CSB_STAGE_PIVOT_ROOT);
    CSB_TRY(c, chdir("/"), CSB_STAGE_PIVOT_ROOT);
    CSB_TRY(c, mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL),
            CSB_STAGE_PIVOT_ROOT);
}

static void csb_stage_become_host_user(struct csb_ctx *c) {
    if (c->spec->host_ids_set) csb_become_host_user(c);
}

// rlimits: a value above the current hard limit is clamped to it (raising it would need
// CAP_SYS_RESOURCE in the initial namespace; lower is what we want anyway). RLIMIT_NOFILE comes
// later (csb_stage_descriptors): the child still holds every descriptor the runner had, and
// moving them needs free slots above the worker's limit.
static void csb_stage_rlimits(struct csb_ctx *c) {
    const struct csb_spawn_spec *s = c->spec;
    struct {
        int resource;
        int64_t value;
    } lims[] = {
        {RLIMIT_CORE, 0},
        {RLIMIT_CPU, s->limits.cpu_seconds},
        {RLIMIT_AS, s->limits.address_space},
        {RLIMIT_FSIZE, s->limits.file_size},
        {RLIMIT_NPROC, s->limits.processes},
    };
    for (size_t i = 0; i < sizeof lims / sizeof lims[0]; i++) {
        if (lims[i].value < 0) continue;
        struct rlimit cur;
        CSB_TRY(c, getrlimit(lims[i].resource, &cur), CSB_STAGE_RLIMIT);
        rlim_t v = (rlim_t)lims[i].value;
        if (cur.rlim_max != RLIM_INFINITY && v > cur.rlim_max) v = cur.rlim_max;
        struct rlimit r = {v, v};
        // The kernel checks RLIMIT_CPU's hard limit before its soft one: with both equal a
        // process gets SIGKILL, indistinguishable from any other kill. One second of headroom
        // makes it SIGXCPU, which names the limit.
        if (lims[i].resource == RLIMIT_CPU && (cur.rlim_max == RLIM_INFINITY || v < cur.rlim_max)) r.rlim_max = v + 1;
        CSB_TRY(c, setrlimit(lims[i].resource, &r), CSB_STAGE_RLIMIT);
    }
}

// PDEATHSIG, then the parent check: getppid() is 0 in a new pid namespace, so ask the pipe
// instead: if the spawning thread's process is gone, nobody holds the read end and the write end
// reports POLLERR.
static void csb_stage_parent_death(struct csb_ctx *c) {
    CSB_TRY(c, prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0), CSB_STAGE_PDEATHSIG);
    struct pollfd pfd = {.fd = c->err_fd, .events = POLLOUT};
    if (poll(&pfd, 1, 0) < 0 || (pfd.revents & POLLERR))
        csb_child_fail(c, CSB_STAGE_PARENT_GONE, ESRCH); // EPIPE at worst (SIGPIPE is blocked)
}

// A session of its own: no controlling terminal to push input into (TIOCSTI).
static void csb_stage_setsid(struct csb_ctx *c) {
    CSB_TRY(c, setsid(), CSB_STAGE_SETSID);
}

// The child's descriptors in place, everything else closed, then RLIMIT_NOFILE.
static void csb_stage_descriptors(struct csb_ctx *c) {
    csb_setup_fds(c);
    if (c->spec->limits.open_files < 0) return;
    struct rlimit cur;
    CSB_TRY(c, getrlimit(RLIMIT_NOFILE, &cur), CSB_STAGE_RLIMIT);
    rlim_t v = (rlim_t)c->spec->limits.open_files;
    if (cur.rlim_max != RLIM_INFINITY && v > cur.rlim_max) v = cur.rlim_max;
    struct rlimit r = {v, v};
    CSB_TRY(c, setrlimit(RLIMIT_NOFILE, &r), CSB_STAGE_RLIMIT);
}

static void csb_stage_drop_caps(struct csb_ctx *c) {
    csb_drop_caps(c);
}

static void csb_stage_no_new_privs(struct csb_ctx *c) {
    CSB_TRY(c, prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), CSB_STAGE_NO_NEW_PRIVS);
}

static void csb_stage_landlock(struct csb_ctx *c) {
    if (csb_apply_landlock(c) < 0 && c->spec->landlock_required)
        csb_child_fail(c, CSB_STAGE_LANDLOCK, errno);
}

// Last before execve: the runner's base filter (the tier's own is installed by the worker).
static void csb_stage_seccomp(struct csb_ctx *c) {
    struct sock_fprog prog = {.len = (unsigned short)c->spec->filter_len,
                              .filter = (struct sock_filter *)c->spec->filter};
    CSB_TRY(c, syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog), CSB_STAGE_SECCOMP);
}

// The order of confinement (file comment; DESIGN.md §5). A stage never returns on failure.
static void (*const csb_child_stages[])(struct csb_ctx *) = {
    csb_stage_reset_signals,   csb_stage_map_user,        csb_stage_hostname,
    csb_stage_egress,          csb_stage_root_tmpfs,      csb_stage_binds,
    csb_stage_dev_proc_links,  csb_stage_pivot_root,      csb_stage_become_host_user,
    csb_stage_rlimits,         csb_stage_parent_death,    csb_stage_setsid,
    csb_stage_descriptors,     csb_stage_drop_caps,       csb_stage_no_new_privs,
    csb_stage_landlock,        csb_stage_seccomp,
};

// The entry point clone() calls on the child's own stack: every stage, then execve.
static int csb_child_entry(void *arg) {
    struct csb_ctx *c = arg;
    for (size_t i = 0; i < sizeof csb_child_stages / sizeof csb_child_stages[0]; i++) csb_child_stages[i](c);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(c->spec->exec_target, c->spec->argv, c->spec->envp);
    csb_child_fail(c, CSB_STAGE_EXEC, errno);
}

// ---- Parent side -------------------------------------------------------------------------------

static char *csb_join(const char *prefix, const char *path) {
    size_t a = strlen(prefix), b = strlen(path);
    char *r = malloc(a + b + 1);
    if (r) {
        memcpy(r, prefix, a);
        memcpy(r + a, path, b + 1);
    }
    return r;
}

static void csb_ctx_free(struct csb_ctx *c) {
    for (int i = 0; c->binds && i < c->bind_count; i++) {
        free(c->binds[i].src);
        free(c->binds[i].dst);
    }
    free(c->binds);
    for (int i = 0; c->dirs && i < c->spec->directory_count; i++) free(c->dirs[i]);
    free(c->dirs);
    for (int i = 0; c->links && i < c->spec->symlink_count; i++) free(c->links[i]);
    free(c->links);
    free(c->fd_tmp);
}

// Probed once per process: the ABI and therefore the handled rights cannot change while we run.
static int csb_ll_abi_cached;

static void csb_ll_prepare(struct csb_ctx *c) {
    int abi = __atomic_load_n(&csb_ll_abi_cached, __ATOMIC_RELAXED);
    if (abi == 0) {
        long v = syscall(SYS_landlock_create_ruleset, NULL, 0, CSB_LL_CREATE_RULESET_VERSION);
        abi = v > 0 ? (int)v : -(errno ? errno : ENOSYS);
        __atomic_store_n(&csb_ll_abi_cached, abi, __ATOMIC_RELAXED);
    }
    c->ll_abi = abi;
    memset(&c->ll_attr, 0, sizeof c->ll_attr);
    if (abi <= 0) return;
    c->ll_attr.handled_access_fs = (CSB_LL_FS_MAKE_SYM << 1) - 1; // ABI 1: bits 0..12
    if (abi >= 2) c->ll_attr.handled_access_fs |= CSB_LL_FS_REFER;
    if (abi >= 3) c->ll_attr.handled_access_fs |= CSB_LL_FS_TRUNCATE;
    if (abi >= 5) c->ll_attr.handled_access_fs |= CSB_LL_FS_IOCTL_DEV;
    // Handled with no rule: no TCP bind or connect at all (the netns is empty anyway).
    if (abi >= 4) c->ll_attr.handled_access_net = CSB_LL_NET_BIND_TCP | CSB_LL_NET_CONNECT_TCP;
    // No abstract unix sockets or signals towards processes outside this Landlock domain.
    if (abi >= 6) c->ll_attr.scoped = CSB_LL_SCOPE_ABSTRACT_UNIX | CSB_LL_SCOPE_SIGNAL;
}

// An absolute path inside the new root without ".." components: joined onto "/newroot", a ".."
// would let a spec path land outside the new root (in the temporary root or on /oldroot).
static int csb_inner_path_ok(const char *p) {
    if (!p || p[0] != '/') return 0;
    for (const char *q = p; (q = strstr(q, "..")) != NULL; q += 2)
        if (q[-1] == '/' && (q[2] == '/' || q[2] == '\0')) return 0;
    return 1;
}

// Returns a stage (with *err) or CSB_STAGE_NONE.
static int csb_ctx_prepare(struct csb_ctx *c, const struct csb_spawn_spec *s, int *err) {
    memset(c, 0, sizeof *c);
    c->spec = s;
    *err = EINVAL;
    if (!s->executable || !csb_inner_path_ok(s->exec_target) || !s->argv || !s->envp ||
        !s->filter || s->filter_len == 0 || s->filter_len > BPF_MAXINSNS || s->bind_count < 0 ||
        s->symlink_count < 0 || s->directory_count < 0 || s->child_fd_count < 0 ||
        s->landlock_rule_count < 0 || s->egress_port < 0 || s->egress_port > 65535 ||
        (s->bind_count && !s->binds) ||
        (s->symlink_count && !s->symlinks) || (s->directory_count && !s->directories) ||
        (s->child_fd_count && !s->child_fds) || (s->landlock_rule_count && !s->landlock_rules))
        return CSB_STAGE_SPEC;
    for (int i = 0; i < s->bind_count; i++)
        if (!s->binds[i].source || !csb_inner_path_ok(s->binds[i].target))
            return CSB_STAGE_SPEC;
    for (int i = 0; i < s->symlink_count; i++)
        if (!s->symlinks[i].target || !csb_inner_path_ok(s->symlinks[i].linkpath))
            return CSB_STAGE_SPEC;
    for (int i = 0; i < s->directory_count; i++)
        if (!csb_inner_path_ok(s->directories[i])) return CSB_STAGE_SPEC;

    // Never a worker that is host root: a root runner must name the tenant's unprivileged ids.
    if (s->host_ids_set ? (s->host_uid == 0 || s->host_gid == 0 || s->host_uid == (uid_t)-1 ||
                           s->host_gid == (gid_t)-1 || geteuid() != 0)
                        : geteuid() == 0)
        return CSB_STAGE_SPEC;
    uid_t outer_uid = s->host_ids_set ? s->host_uid : geteuid();
    gid_t outer_gid = s->host_ids_set ? s->host_gid : getegid();
    snprintf(c->uid_map, sizeof c->uid_map, "%u %u 1\n", (unsigned)s->inner_uid, (unsigned)outer_uid);
    snprintf(c->gid_map, sizeof c->gid_map, "%u %u 1\n", (unsigned)s->inner_gid, (unsigned)outer_gid);
    snprintf(c->tmp_opts, sizeof c->tmp_opts, "size=%lld,mode=1777", (long long)s->tmp_size);
    cap_value_t maxbits = cap_max_bits();
    c->last_cap = maxbits > 0 ? (int)maxbits - 1 : CAP_LAST_CAP;
    csb_ll_prepare(c);

    *err = ENOMEM;
    c->bind_count = s->bind_count + 1;
    c->binds = calloc((size_t)c->bind_count, sizeof *c->binds);
    c->dirs = calloc((size_t)s->directory_count + 1, sizeof *c->dirs);
    c->links = calloc((size_t)s->symlink_count + 1, sizeof *c->links);
    c->fd_tmp = calloc((size_t)s->child_fd_count + 1, sizeof *c->fd_tmp);
    if (!c->binds || !c->dirs || !c->links || !c->fd_tmp) return CSB_STAGE_SPEC;

    // Sources are resolved on the host now: inside the child, an absolute symlink in a source
    // would resolve against the temporary root, not the host's.
    char real[PATH_MAX];
    for (int i = 0; i < c->bind_count; i++) {
        int last = i == s->bind_count;
        const char *src = last ? s->executable : s->binds[i].source;
        const char *dst = last ? s->exec_target : s->binds[i].target;
        int flags = last ? (CSB_BIND_READONLY | CSB_BIND_EXEC) : s->binds[i].flags;
        c->binds[i].flags = flags;
        if (flags & CSB_BIND_PINNED) {
            // Not resolved here: the child opens it beneath /oldroot without following any
            // symlink and binds exactly what it opened (see csb_bind_pinned).
            c->binds[i].src = csb_join("/oldroot", src);
            c->binds[i].dst = csb_join("/newroot", dst);
            if (!c->binds[i].src || !c->binds[i].dst) return CSB_STAGE_SPEC;
            continue;
        }
        if (!realpath(src, real)) {
            if (errno == ENOENT && (flags & CSB_BIND_OPTIONAL)) continue;
            *err = errno;
            return last ? CSB_STAGE_SPEC : CSB_STAGE_MOUNT_BIND;
        }
        c->binds[i].src = csb_join("/oldroot", real);
        c->binds[i].dst = csb_join("/newroot", dst);
        if (!c->binds[i].src || !c->binds[i].dst) return CSB_STAGE_SPEC;
    }
    for (int i = 0; i < s->directory_count; i++)
        if (!(c->dirs[i] = csb_join("/newroot", s->directories[i]))) return CSB_STAGE_SPEC;
    for (int i = 0; i < s->symlink_count; i++)
        if (!(c->links[i] = csb_join("/newroot", s->symlinks[i].linkpath))) return CSB_STAGE_SPEC;
    *err = 0;
    return CSB_STAGE_NONE;
}

// C because the child side must be async-signal-safe (see the file comment).
int csb_spawn(const struct csb_spawn_spec *spec, struct csb_spawn_result *out) {
    out->pid = -1;
    out->pidfd = -1;
    out->stage = CSB_STAGE_NONE;
    out->error = 0;
    out->egress_listener = -1;

    struct csb_ctx c;
    int err = 0;
    int stage = spec ? csb_ctx_prepare(&c, spec, &err) : CSB_STAGE_SPEC;
    if (!spec) err = EINVAL;
    if (stage != CSB_STAGE_NONE) goto fail_prepared;

    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        stage = CSB_STAGE_PIPE;
        err = errno;
        goto fail_prepared;
    }
    c.err_fd = pipefd[1];
    // The egress listener comes back over this (datagrams: one message, one descriptor).
    int egress[2] = {-1, -1};
    c.egress_fd = -1;
    if (spec->egress_port > 0) {
        if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, egress) < 0) {
            err = errno;
            close(pipefd[0]);
            close(pipefd[1]);
            stage = CSB_STAGE_EGRESS;
            goto fail_prepared;
        }
        c.egress_fd = egress[1];
    }

    // Block every signal so none of the runner's handlers can run in the child before it has
    // reset them; the parent thread restores its mask right after.
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int pidfd = -1;
    // clone(CLONE_VM | CLONE_VFORK) on a stack of its own, as posix_spawn does: the child shares
    // the runner's memory instead of copying its page tables (which cost milliseconds for a
    // runner of ~100 MB: copy_page_range and its teardown dominated a per-call spawn), and this
    // thread is suspended until the child has exec'ed or exited. The child touches only the
    // context prepared above and its own stack.
    const size_t stack_size = 1 << 20;
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        int saved = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        close(pipefd[0]);
        close(pipefd[1]);
        if (egress[0] >= 0) close(egress[0]), close(egress[1]);
        stage = CSB_STAGE_CLONE;
        err = saved;
        goto fail_prepared;
    }
    int flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
                CLONE_NEWUTS | CLONE_NEWCGROUP | SIGCHLD;
    if (!spec->host_ids_set) flags |= CLONE_NEWUSER; // a root runner's child enters one later

    // A root runner's children change ids (csb_become_host_user), and whether /proc/self is the
    // process's own or root's depends on the dumpable flag of the memory, which every CLONE_VM
    // child shares with the runner: one child's setresuid clears it between a sibling's
    // PR_SET_DUMPABLE and its uid_map write (EACCES at stage userns_map). Such spawns take turns;
    // CLONE_VFORK holds this thread until the child has exec'ed, so the lock covers all of it.
    if (spec->host_ids_set) pthread_mutex_lock(&csb_identity_change);
    errno = 0;
    long pid = clone(csb_child_entry, (char *)stack + stack_size, flags, &c, &pidfd);
    // errno is read before anything else: the child shared this thread's memory, errno included.
    int clone_err = pid < 0 ? errno : 0;
    if (spec->host_ids_set) pthread_mutex_unlock(&csb_identity_change);
    // The child has exec'ed (it has its own memory now) or exited: its stack is free.
    munmap(stack, stack_size);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(pipefd[1]);
    if (egress[1] >= 0) close(egress[1]);

    if (pid < 0) {
        close(pipefd[0]);
        if (egress[0] >= 0) close(egress[0]);
        stage = CSB_STAGE_CLONE;
        err = clone_err;
        goto fail_prepared;
    }

    int msg[2] = {0, 0};
    size_t got = 0;
    while (got < sizeof msg) {
        ssize_t n = read(pipefd[0], (char *)msg + got, sizeof msg - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(pipefd[0]);
    csb_ctx_free(&c);

    int listener = -1;
    if (egress[0] >= 0) {
        // Sent before the child confined itself, so it is queued by now if it was sent at all.
        char byte;
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } control;
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                           .msg_controllen = sizeof control.buf};
        if (recvmsg(egress[0], &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) == 1) {
            struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
            if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
                cm->cmsg_len == CMSG_LEN(sizeof(int)))
                memcpy(&listener, CMSG_DATA(cm), sizeof(int));
        }
        close(egress[0]);
        if (got == 0 && listener < 0) got = sizeof msg, msg[0] = CSB_STAGE_EGRESS, msg[1] = EPROTO;
    }

    if (got == 0) { // EOF: execve succeeded
        out->pid = (pid_t)pid;
        out->pidfd = pidfd;
        out->egress_listener = listener;
        return 0;
    }
    if (listener >= 0) close(listener);
    // A child that exec'ed without handing over its listener is killed before it is reaped.
    if (msg[0] == CSB_STAGE_EGRESS && msg[1] == EPROTO) csb_pidfd_kill(pidfd);
    if (got != sizeof msg) msg[0] = CSB_STAGE_PIPE, msg[1] = EIO;
    int exited, code;
    while (csb_pidfd_reap(pidfd, 0, &exited, &code) == -EINTR) {}
    close(pidfd);
    out->stage = msg[0];
    out->error = msg[1];
    return -1;

fail_prepared:
    if (spec) csb_ctx_free(&c);
    out->stage = stage;
    out->error = err;
    return -1;
}

static const char *const csb_stage_names[] = {
    [CSB_STAGE_NONE] = "none",
    [CSB_STAGE_PIPE] = "pipe",
    [CSB_STAGE_CLONE] = "clone",
    [CSB_STAGE_USERNS_MAP] = "userns_map",
    [CSB_STAGE_HOSTNAME] = "hostname",
    [CSB_STAGE_MOUNT_PRIVATE] = "mount_private",
    [CSB_STAGE_MOUNT_ROOT] = "mount_root",
    [CSB_STAGE_MOUNT_BIND] = "mount_bind",
    [CSB_STAGE_MOUNT_PROC] = "mount_proc",
    [CSB_STAGE_MOUNT_DEV] = "mount_dev",
    [CSB_STAGE_MOUNT_TMP] = "mount_tmp",
    [CSB_STAGE_SYMLINK] = "symlink",
    [CSB_STAGE_PIVOT_ROOT] = "pivot_root",
    [CSB_STAGE_RLIMIT] = "rlimit",
    [CSB_STAGE_PDEATHSIG] = "pdeathsig",
    [CSB_STAGE_PARENT_GONE] = "parent_gone",
    [CSB_STAGE_SETSID] = "setsid",
    [CSB_STAGE_FDS] = "fds",
    [CSB_STAGE_CAPS] = "caps",
    [CSB_STAGE_NO_NEW_PRIVS] = "no_new_privs",
    [CSB_STAGE_LANDLOCK] = "landlock",
    [CSB_STAGE_SECCOMP] = "seccomp",
    [CSB_STAGE_EXEC] = "exec",
    [CSB_STAGE_SPEC] = "spec",
    [CSB_STAGE_SETUID] = "setuid",
    [CSB_STAGE_MASK_PROC] = "mask_proc",
    [CSB_STAGE_EGRESS] = "egress",
};

// C so Swift and the C side share one table with the enum.
const char *csb_stage_name(int stage) {
    if (stage < 0 || stage >= (int)(sizeof csb_stage_names / sizeof csb_stage_names[0]) ||
        !csb_stage_names[stage])
        return "unknown";
    return csb_stage_names[stage];
}

// C because pidfd_send_signal has no glibc wrapper in Debian 12's glibc 2.36.
int csb_pidfd_kill(int pidfd) {
    if (syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0) < 0) return -errno;
    return 0;
}

// C because waitid(P_PIDFD) and siginfo_t's union are awkward from Swift.
int csb_pidfd_reap(int pidfd, int nohang, int *exited, int *code) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    if (waitid(CSB_P_PIDFD, (id_t)pidfd, &si, WEXITED | (nohang ? WNOHANG : 0)) < 0) return -errno;
    if (si.si_pid == 0) return 0; // WNOHANG and still running
    *exited = si.si_code == CLD_EXITED;
    *code = si.si_status;
    return 1;
}
