// Who the child is: a root runner's worker becomes its tenant's unprivileged host ids, the
// descriptors it keeps are moved into place, and every capability is dropped. Child side:
// async-signal-safe only (the mutex is the parent's, held around clone).
#include "spawn_internal.h"

// Serializes the spawns of a root runner's workers (see csb_spawn).
pthread_mutex_t csb_identity_change = PTHREAD_MUTEX_INITIALIZER;

// A root runner's worker must never be host root. The child built its mounts as root in
// namespaces the initial user namespace owns; now it drops every supplementary group, becomes
// the tenant's unprivileged host ids, and only then enters a user namespace of its own, mapping
// inner_uid to those ids (case (a) of user_namespaces(7): its own euid). From here on it is, to
// the host, an ordinary unprivileged user that owns nothing but its tenant's workspaces; the mount,
// network and pid namespaces stay owned by the initial namespace, so it cannot even try to
// unmount what covers /proc.
// Raw syscalls: glibc's setgroups/setresuid broadcast the change to every thread of the process
// (its setxid signal), and this child shares the runner's memory and thread list.
void csb_become_host_user(struct csb_ctx *c) {
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

void csb_setup_fds(struct csb_ctx *c) {
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
void csb_drop_caps(const struct csb_ctx *c) {
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
