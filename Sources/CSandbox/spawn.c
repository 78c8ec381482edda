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
#include "spawn_internal.h"

// Split by concern: spawn_mounts.c (new root, binds, /dev, /proc), spawn_identity.c (ids,
// descriptors, capabilities), spawn_landlock.c and spawn_egress.c; the stages below call them in
// order.

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
