// Private to the CSandbox spawn files (spawn*.c): the context the parent prepares before clone,
// the child's failure path, and the stage helpers each file provides. Everything here that runs
// in the child is async-signal-safe (see spawn.c). Hidden symbols: direct calls within the
// runner's own image, never through a PLT.
#ifndef CSB_SPAWN_INTERNAL_H
#define CSB_SPAWN_INTERNAL_H

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

__attribute__((noreturn, unused)) static void csb_child_fail(const struct csb_ctx *c, int stage, int err) {
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

#define CSB_HIDDEN __attribute__((visibility("hidden")))

// spawn_mounts.c: the new root, binds, /dev and /proc.
CSB_HIDDEN int csb_write_file(const char *path, const char *s);
CSB_HIDDEN int csb_mkdirs(char *path, int last);
CSB_HIDDEN int csb_restrict_mount(const char *path, int readonly, int noexec, int recursive);
CSB_HIDDEN int csb_bind_one(char *src, char *dst, int recursive);
CSB_HIDDEN int csb_bind_pinned(const char *src, char *dst);
CSB_HIDDEN void csb_setup_dev(const struct csb_ctx *c);
CSB_HIDDEN void csb_setup_proc(const struct csb_ctx *c);

// spawn_identity.c: ids, descriptors and capabilities.
CSB_HIDDEN extern pthread_mutex_t csb_identity_change;
CSB_HIDDEN void csb_become_host_user(struct csb_ctx *c);
CSB_HIDDEN void csb_setup_fds(struct csb_ctx *c);
CSB_HIDDEN void csb_drop_caps(const struct csb_ctx *c);

// spawn_landlock.c: the handled rights (parent, probed once) and the ruleset (child).
CSB_HIDDEN int csb_apply_landlock(const struct csb_ctx *c);
CSB_HIDDEN void csb_ll_prepare(struct csb_ctx *c);

// spawn_egress.c: the listener of a network grant.
CSB_HIDDEN void csb_setup_egress(const struct csb_ctx *c);

#endif
