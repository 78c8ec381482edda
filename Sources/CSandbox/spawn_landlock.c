// Landlock: the rights the parent finds this kernel handles (probed once per process), and the
// ruleset the child builds from the spec's paths and applies last before seccomp. The child side
// is async-signal-safe only.
#include "spawn_internal.h"

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
int csb_apply_landlock(const struct csb_ctx *c) {
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

// Probed once per process: the ABI and therefore the handled rights cannot change while we run.
static int csb_ll_abi_cached;

void csb_ll_prepare(struct csb_ctx *c) {
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
