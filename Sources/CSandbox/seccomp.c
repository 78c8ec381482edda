// Seccomp filters per profile, compiled with libseccomp into raw BPF. This is C because libseccomp
// is a C library whose rules are built from C macros (SCMP_A0 ...) and whose only export is to a
// file descriptor; the runner compiles each filter once and hands the bytes to csb_spawn (BASE) and
// to the worker through a memfd (TIER).
//
// Two filters stack on every worker:
// - BASE (default allow) is installed by csb_spawn right before execve. It must let the worker's
//   own execve and startup through, so it is a deny list of what no tier may ever do: kernel attack
//   surface (io_uring, bpf, userfaultfd, perf, keyrings), namespace and mount changes, privileged
//   knobs, file watches (inotify, fanotify: a side channel across tenants), TIOCSTI/TIOCLINUX,
//   and every socket family but AF_UNIX.
// - TIER (default ENOSYS) is installed by the worker itself before it reads a request: an allow
//   list per profile. When several filters match, the kernel applies the most restrictive action,
//   so nothing on the BASE list can be re-allowed by a TIER.
//
// The syscall names live in the X-macro tables below only: csb_seccomp_compile walks them and
// csb_seccomp_describe stringifies the same tables, so the description cannot drift from the filter.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "csb_spawn.h"

#include <errno.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <unistd.h>

// ---- Tables ------------------------------------------------------------------------------------

// BASE deny list: X(name, errno). Names unknown to the running libseccomp (e.g. _sysctl where the
// arch lacks it) are skipped. Conditional denials (clone with namespace flags, personality, ioctl,
// socket families) are added by csb_add_base_conditionals.
#define CSB_BASE_DENY(X)                                                                           \
    X(ptrace, EPERM) X(process_vm_readv, EPERM) X(process_vm_writev, EPERM)                        \
    X(io_uring_setup, EPERM) X(io_uring_enter, EPERM) X(io_uring_register, EPERM)                  \
    X(userfaultfd, EPERM) X(keyctl, EPERM) X(add_key, EPERM) X(request_key, EPERM) X(bpf, EPERM)   \
    X(perf_event_open, EPERM) X(mount, EPERM) X(umount2, EPERM) X(fsopen, EPERM)                   \
    X(fsconfig, EPERM) X(fsmount, EPERM) X(fspick, EPERM) X(move_mount, EPERM)                     \
    X(open_tree, EPERM) X(mount_setattr, EPERM) X(pivot_root, EPERM) X(chroot, EPERM)              \
    X(setns, EPERM) X(unshare, EPERM) X(clone3, ENOSYS) X(kexec_load, EPERM)                       \
    X(kexec_file_load, EPERM) X(init_module, EPERM) X(finit_module, EPERM)                         \
    X(delete_module, EPERM) X(open_by_handle_at, EPERM) X(name_to_handle_at, EPERM) X(acct, EPERM) \
    X(swapon, EPERM) X(swapoff, EPERM) X(reboot, EPERM) X(settimeofday, EPERM)                     \
    X(clock_settime, EPERM) X(clock_adjtime, EPERM) X(adjtimex, EPERM) X(iopl, EPERM)              \
    X(ioperm, EPERM) X(quotactl, EPERM) X(syslog, EPERM) X(uselib, EPERM) X(vhangup, EPERM)        \
    X(lookup_dcookie, EPERM) X(pidfd_getfd, EPERM) X(fanotify_init, EPERM) X(kcmp, EPERM)          \
    X(move_pages, EPERM) X(mbind, EPERM) X(set_mempolicy, EPERM) X(migrate_pages, EPERM)           \
    X(nfsservctl, EPERM) X(_sysctl, EPERM) CSB_BASE_DENY_WATCH(X)

// File watching is a cross-tenant side channel: the system dirs and the worker binary are the
// same inodes in every tenant's worker (read-only binds), so an inotify or fanotify watch on
// /usr/bin would report which programs other tenants' workers open and run. No tier needs to
// watch files within one call, so every profile refuses these with EPERM.
#define CSB_BASE_DENY_WATCH(X)                                                                     \
    X(inotify_init, EPERM) X(inotify_init1, EPERM) X(inotify_add_watch, EPERM)                     \
    X(inotify_rm_watch, EPERM) X(fanotify_mark, EPERM)

// TIER allow lists: X(name, kind). `kind` selects a conditional rule (and the suffix shown by
// describe): ANY = unconditional, UNIX = only when arg0 (domain) is AF_UNIX, SOCK = socket(2):
// AF_UNIX, plus AF_INET and AF_INET6 in a worker whose upstream server holds a network grant
// (CSB_FILTER_INET), NONS = clone without any CLONE_NEW* flag, PERS = personality PER_LINUX (0) or
// the query 0xffffffff only.
//
// READ: a single-threaded, statically linked Swift worker reading files beneath the workspace
// and talking over its inherited socket (fd 3). No exec, no fork, no thread creation, no sockets.
#define CSB_TIER_READ(X)                                                                           \
    X(read, ANY) X(pread64, ANY) X(readv, ANY) X(preadv, ANY) X(write, ANY) X(writev, ANY)         \
    X(sendmsg, ANY) X(recvmsg, ANY) X(sendto, ANY) X(recvfrom, ANY) X(openat, ANY)                 \
    X(openat2, ANY) X(close, ANY) X(close_range, ANY) X(fstat, ANY) X(newfstatat, ANY)             \
    X(statx, ANY) X(lseek, ANY) X(getdents64, ANY) X(readlinkat, ANY) X(faccessat, ANY)            \
    X(faccessat2, ANY) X(fcntl, ANY) X(dup, ANY) X(dup3, ANY) X(mmap, ANY) X(munmap, ANY)          \
    X(mprotect, ANY) X(mremap, ANY) X(madvise, ANY) X(brk, ANY) X(rt_sigaction, ANY)               \
    X(rt_sigprocmask, ANY) X(rt_sigreturn, ANY) X(sigaltstack, ANY) X(futex, ANY)                  \
    X(getrandom, ANY) X(clock_gettime, ANY) X(clock_nanosleep, ANY) X(nanosleep, ANY)              \
    X(gettimeofday, ANY) X(getpid, ANY) X(gettid, ANY) X(getuid, ANY) X(geteuid, ANY)              \
    X(getgid, ANY) X(getegid, ANY) X(getppid, ANY) X(uname, ANY) X(prlimit64, ANY)                 \
    X(getrusage, ANY) X(sched_yield, ANY) X(sched_getaffinity, ANY) X(exit, ANY)                   \
    X(exit_group, ANY) X(tgkill, ANY) X(restart_syscall, ANY) X(poll, ANY) X(ppoll, ANY)           \
    X(arch_prctl, ANY) X(set_tid_address, ANY) X(set_robust_list, ANY) X(rseq, ANY)                \
    X(membarrier, ANY)

// WRITE adds what apply_patch-style tools need to change files beneath the workspace. Still no
// exec, fork, links or symlinks.
#define CSB_TIER_WRITE_EXTRA(X)                                                                    \
    X(renameat, ANY) X(renameat2, ANY) X(unlinkat, ANY) X(mkdirat, ANY) X(fsync, ANY)              \
    X(fdatasync, ANY) X(ftruncate, ANY) X(fallocate, ANY) X(fchmod, ANY) X(fchmodat, ANY)          \
    X(utimensat, ANY) X(pwrite64, ANY) X(umask, ANY)

// EXEC adds what shells, compilers, git and python use (in the spirit of Docker's default
// profile, but default-deny and without anything on the BASE list). Sockets stay AF_UNIX only
// (AF_INET/AF_INET6 too for a worker with a network grant, whose network namespace holds nothing
// but the runner's egress proxy) and clone may not create namespaces; the empty network namespace
// is the second wall.
#define CSB_TIER_EXEC_EXTRA(X)                                                                     \
    X(open, ANY) X(creat, ANY) X(stat, ANY) X(lstat, ANY) X(access, ANY) X(readlink, ANY)          \
    X(getdents, ANY) X(pwritev, ANY) X(preadv2, ANY) X(pwritev2, ANY) X(statfs, ANY)               \
    X(fstatfs, ANY) X(dup2, ANY) X(flock, ANY) X(sync, ANY) X(syncfs, ANY)                         \
    X(sync_file_range, ANY) X(truncate, ANY) X(rename, ANY) X(unlink, ANY) X(mkdir, ANY)           \
    X(rmdir, ANY) X(link, ANY) X(linkat, ANY) X(symlink, ANY) X(symlinkat, ANY) X(chmod, ANY)      \
    X(fchmodat2, ANY) X(chown, ANY) X(fchown, ANY) X(lchown, ANY) X(fchownat, ANY) X(utime, ANY)   \
    X(utimes, ANY) X(futimesat, ANY) X(mknod, ANY) X(mknodat, ANY) X(getcwd, ANY) X(chdir, ANY)    \
    X(fchdir, ANY) X(sendfile, ANY) X(copy_file_range, ANY) X(splice, ANY) X(tee, ANY)             \
    X(fadvise64, ANY) X(readahead, ANY) X(getxattr, ANY) X(lgetxattr, ANY) X(fgetxattr, ANY)       \
    X(listxattr, ANY) X(llistxattr, ANY) X(flistxattr, ANY) X(setxattr, ANY) X(lsetxattr, ANY)     \
    X(fsetxattr, ANY) X(removexattr, ANY) X(lremovexattr, ANY) X(fremovexattr, ANY)                \
    X(memfd_create, ANY) X(ioctl, ANY) X(msync, ANY) X(mincore, ANY)                               \
    X(mlock, ANY) X(mlock2, ANY) X(munlock, ANY) X(execve, ANY) X(execveat, ANY) X(fork, ANY)      \
    X(vfork, ANY) X(clone, NONS) X(wait4, ANY) X(waitid, ANY) X(kill, ANY) X(tkill, ANY)           \
    X(rt_sigpending, ANY) X(rt_sigtimedwait, ANY) X(rt_sigqueueinfo, ANY)                          \
    X(rt_tgsigqueueinfo, ANY) X(rt_sigsuspend, ANY) X(pause, ANY) X(alarm, ANY)                    \
    X(getitimer, ANY) X(setitimer, ANY) X(getpgid, ANY) X(setpgid, ANY) X(getpgrp, ANY)            \
    X(getsid, ANY) X(setsid, ANY) X(getresuid, ANY) X(getresgid, ANY) X(getgroups, ANY)            \
    X(setuid, ANY) X(setgid, ANY) X(setreuid, ANY) X(setregid, ANY) X(setresuid, ANY)              \
    X(setresgid, ANY) X(setgroups, ANY) X(setfsuid, ANY) X(setfsgid, ANY) X(capget, ANY)           \
    X(capset, ANY) X(prctl, ANY) X(get_robust_list, ANY) X(futex_waitv, ANY)                       \
    X(sched_setaffinity, ANY) X(sched_getparam, ANY) X(sched_setparam, ANY)                        \
    X(sched_getscheduler, ANY) X(sched_setscheduler, ANY) X(sched_get_priority_max, ANY)           \
    X(sched_get_priority_min, ANY) X(sched_rr_get_interval, ANY) X(getpriority, ANY)               \
    X(setpriority, ANY) X(getrlimit, ANY) X(setrlimit, ANY) X(times, ANY) X(sysinfo, ANY)          \
    X(getcpu, ANY) X(personality, PERS) X(pidfd_open, ANY) X(pidfd_send_signal, ANY) X(clock_getres, ANY) X(time, ANY)  \
    X(timer_create, ANY) X(timer_settime, ANY) X(timer_gettime, ANY) X(timer_getoverrun, ANY)      \
    X(timer_delete, ANY) X(timerfd_create, ANY) X(timerfd_settime, ANY) X(timerfd_gettime, ANY)    \
    X(select, ANY) X(pselect6, ANY) X(epoll_create, ANY) X(epoll_create1, ANY) X(epoll_ctl, ANY)   \
    X(epoll_wait, ANY) X(epoll_pwait, ANY) X(epoll_pwait2, ANY) X(eventfd, ANY) X(eventfd2, ANY)   \
    X(signalfd, ANY) X(signalfd4, ANY) X(pipe, ANY) X(pipe2, ANY) X(socket, SOCK)                  \
    X(socketpair, UNIX) X(connect, ANY) X(bind, ANY) X(listen, ANY) X(accept, ANY)                 \
    X(accept4, ANY) X(getsockname, ANY) X(getpeername, ANY) X(sendmmsg, ANY) X(recvmmsg, ANY)      \
    X(shutdown, ANY) X(setsockopt, ANY) X(getsockopt, ANY) X(shmget, ANY) X(shmat, ANY)            \
    X(shmctl, ANY) X(shmdt, ANY) X(semget, ANY) X(semop, ANY) X(semctl, ANY) X(semtimedop, ANY)    \
    X(msgget, ANY) X(msgsnd, ANY) X(msgrcv, ANY) X(msgctl, ANY) X(io_setup, ANY)                   \
    X(io_submit, ANY) X(io_getevents, ANY) X(io_pgetevents, ANY) X(io_cancel, ANY)                 \
    X(io_destroy, ANY)

// Syscalls the READ and WRITE tiers refuse with EPERM instead of the default ENOSYS, so a tool
// that tries to run a program gets "operation not permitted" rather than "not implemented".
// clone3 stays ENOSYS for EXEC (glibc then falls back to clone, whose flags we can inspect).
#define CSB_TIER_NOEXEC_EPERM(X) X(execve) X(execveat) X(fork) X(vfork) X(clone) X(clone3)

// ---- describe ----------------------------------------------------------------------------------

#define CSB_DESC_ANY ""
#define CSB_DESC_UNIX "(AF_UNIX)"
#define CSB_DESC_SOCK "(AF_UNIX; AF_INET, AF_INET6 with a network grant)"
#define CSB_DESC_NONS "(no CLONE_NEW*)"
#define CSB_DESC_PERS "(0 or query)"
#define CSB_DESC(name, kind) ", " #name CSB_DESC_##kind

// Each string starts with ", "; csb_seccomp_describe skips it.
static const char csb_desc_read[] = CSB_TIER_READ(CSB_DESC);
static const char csb_desc_write[] = CSB_TIER_READ(CSB_DESC) CSB_TIER_WRITE_EXTRA(CSB_DESC);
static const char csb_desc_exec[] =
    CSB_TIER_READ(CSB_DESC) CSB_TIER_WRITE_EXTRA(CSB_DESC) CSB_TIER_EXEC_EXTRA(CSB_DESC);

// C because it shares the X-macro tables with the compiler below.
const char *csb_seccomp_describe(int profile) {
    switch (profile) {
    case CSB_PROFILE_READ: return csb_desc_read + 2;
    case CSB_PROFILE_WRITE: return csb_desc_write + 2;
    case CSB_PROFILE_EXEC: return csb_desc_exec + 2;
    default: return "";
    }
}

// ---- compile -----------------------------------------------------------------------------------

enum csb_rule_kind { CSB_KIND_ANY, CSB_KIND_UNIX, CSB_KIND_SOCK, CSB_KIND_NONS, CSB_KIND_PERS };

struct csb_named_rule {
    const char *name;
    int arg; // errno for deny tables, enum csb_rule_kind for allow tables
};

#define CSB_DENY_ENTRY(name, err) {#name, err},
#define CSB_ALLOW_ENTRY(name, kind) {#name, CSB_KIND_##kind},
#define CSB_EPERM_ENTRY(name) {#name, EPERM},

static const struct csb_named_rule csb_base_deny[] = {CSB_BASE_DENY(CSB_DENY_ENTRY)};
static const struct csb_named_rule csb_tier_read[] = {CSB_TIER_READ(CSB_ALLOW_ENTRY)};
static const struct csb_named_rule csb_tier_write[] = {CSB_TIER_WRITE_EXTRA(CSB_ALLOW_ENTRY)};
static const struct csb_named_rule csb_tier_exec[] = {CSB_TIER_EXEC_EXTRA(CSB_ALLOW_ENTRY)};
static const struct csb_named_rule csb_tier_noexec[] = {CSB_TIER_NOEXEC_EPERM(CSB_EPERM_ENTRY)};

#define CSB_COUNT(a) (sizeof(a) / sizeof((a)[0]))

// Every namespace flag clone(2) accepts. CLONE_NEWTIME (0x80) is left out on purpose: for clone(2)
// that bit is part of the exit-signal byte (CSIGNAL) and only clone3 can request a time namespace,
// which is ENOSYS here anyway.
static const uint64_t csb_clone_ns_flags[] = {
    CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID,
    CLONE_NEWNET,
};
#define CSB_CLONE_NS_MASK                                                                          \
    (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |  \
     CLONE_NEWNET)

// Resolves a name; -1 (skip) when this libseccomp/arch does not know it.
static int csb_nr(const char *name) {
    int nr = seccomp_syscall_resolve_name(name);
    return nr == __NR_SCMP_ERROR ? -1 : nr;
}

// `skip_errno`: entries with this errno are left to the default action (libseccomp refuses a
// rule whose action equals the default).
static int csb_add_deny_table(scmp_filter_ctx ctx, const struct csb_named_rule *t, size_t n,
                              int skip_errno) {
    for (size_t i = 0; i < n; i++) {
        int nr = csb_nr(t[i].name);
        if (nr < 0 || t[i].arg == skip_errno) continue;
        int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(t[i].arg), nr, 0);
        if (rc < 0) return rc;
    }
    return 0;
}

// socket(2) families other than AF_UNIX, AF_INET and AF_INET6 refused with EAFNOSUPPORT, for a
// worker with a network grant. libseccomp 2.5 takes one comparison per argument in a rule, so
// "not 1, 2 or 10" is spelled as the values around them: 0, 3..9, and above 10 (64-bit compares:
// a family with high bits set is above 10 and refused).
static int csb_add_inet_socket_denials(scmp_filter_ctx ctx) {
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
                              SCMP_A0(SCMP_CMP_GT, (uint64_t)AF_INET6));
    if (rc < 0) return rc;
    static const uint64_t others[] = {AF_UNSPEC, 3, 4, 5, 6, 7, 8, 9};
    for (size_t i = 0; i < sizeof others / sizeof others[0] && rc == 0; i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
                              SCMP_A0(SCMP_CMP_EQ, others[i]));
    return rc;
}

// Denials that depend on arguments; identical in BASE (default allow) terms. `inet`: socket(2)
// may also create AF_INET and AF_INET6 sockets (a worker with a network grant).
static int csb_add_base_conditionals(scmp_filter_ctx ctx, int inet) {
    int rc;
    // clone with any namespace flag: libseccomp has no "masked != 0", so one rule per flag bit.
    for (size_t i = 0; i < CSB_COUNT(csb_clone_ns_flags); i++) {
        uint64_t f = csb_clone_ns_flags[i];
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, f, f));
        if (rc < 0) return rc;
    }
    // personality: only PER_LINUX (0) and the query 0xffffffff. libseccomp 2.5 refuses two
    // comparisons of one argument in a rule (so no "!= 0 && != 0xffffffff"); instead: anything
    // above 32 bits is refused, and a 32-bit value is neither all-zero nor all-one exactly when some
    // bit 1..31 differs from bit 0, which single masked compares can express (62 rules, only walked
    // when personality is called).
    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
                          SCMP_A0(SCMP_CMP_GT, 0xffffffffULL));
    if (rc < 0) return rc;
    for (int bit = 1; bit < 32; bit++) {
        uint64_t m = (1ULL << bit) | 1ULL;
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, m, 1ULL << bit));
        if (rc < 0) return rc;
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, m, 1ULL));
        if (rc < 0) return rc;
    }
    // TIOCSTI / TIOCLINUX: the kernel only looks at the low 32 bits of the request, so compare the
    // masked value; a plain compare would let 0x100005412 through (CVE-2017-5226 style bypass).
    static const uint64_t ioctls[] = {TIOCSTI, TIOCLINUX};
    for (size_t i = 0; i < CSB_COUNT(ioctls); i++) {
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                              SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffULL, ioctls[i]));
        if (rc < 0) return rc;
    }
    // Sockets: AF_UNIX only. All 64 bits compared: anything but exactly AF_UNIX is refused.
    rc = inet ? csb_add_inet_socket_denials(ctx)
              : seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
                                 SCMP_A0(SCMP_CMP_NE, AF_UNIX));
    if (rc < 0) return rc;
    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socketpair), 1,
                          SCMP_A0(SCMP_CMP_NE, AF_UNIX));
    return rc;
}

static int csb_add_allow_table(scmp_filter_ctx ctx, const struct csb_named_rule *t, size_t n, int inet) {
    for (size_t i = 0; i < n; i++) {
        int nr = csb_nr(t[i].name);
        if (nr < 0) continue;
        int rc;
        switch (t[i].arg) {
        case CSB_KIND_SOCK:
            if (inet) {
                rc = 0;
                static const uint64_t families[] = {AF_UNIX, AF_INET, AF_INET6};
                for (size_t j = 0; j < sizeof families / sizeof families[0] && rc == 0; j++)
                    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1, SCMP_A0(SCMP_CMP_EQ, families[j]));
                if (rc == 0) rc = csb_add_inet_socket_denials(ctx);
                break;
            }
            // fall through: AF_UNIX only
        case CSB_KIND_UNIX:
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
            if (rc == 0)
                rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), nr, 1,
                                      SCMP_A0(SCMP_CMP_NE, AF_UNIX));
            break;
        case CSB_KIND_NONS:
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
                                  SCMP_A0(SCMP_CMP_MASKED_EQ, (uint64_t)CSB_CLONE_NS_MASK, 0));
            if (rc == 0)
                for (size_t j = 0; j < CSB_COUNT(csb_clone_ns_flags) && rc == 0; j++) {
                    uint64_t f = csb_clone_ns_flags[j];
                    rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 1,
                                          SCMP_A0(SCMP_CMP_MASKED_EQ, f, f));
                }
            break;
        case CSB_KIND_PERS:
            rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1, SCMP_A0(SCMP_CMP_EQ, 0));
            if (rc == 0)
                rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
                                      SCMP_A0(SCMP_CMP_EQ, 0xffffffffULL));
            break;
        default: rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0); break;
        }
        if (rc < 0) return rc;
    }
    return 0;
}

// Reads the exported program back from a memfd (libseccomp 2.5 can only export to a descriptor).
static int csb_export(scmp_filter_ctx ctx, void **out_filter, size_t *out_len) {
    int fd = memfd_create("csb-seccomp", MFD_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = seccomp_export_bpf(ctx, fd);
    if (rc < 0) goto out;
    off_t size = lseek(fd, 0, SEEK_END);
    if (size <= 0 || size % 8 != 0) { rc = -EINVAL; goto out; }
    char *buf = malloc((size_t)size);
    if (!buf) { rc = -ENOMEM; goto out; }
    size_t done = 0;
    while (done < (size_t)size) {
        ssize_t n = pread(fd, buf + done, (size_t)size - done, (off_t)done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { rc = n < 0 ? -errno : -EIO; free(buf); goto out; }
        done += (size_t)n;
    }
    *out_filter = buf;
    *out_len = (size_t)size / 8; // sizeof(struct sock_filter)
    rc = 0;
out:
    close(fd);
    return rc;
}

// C because libseccomp is C (see the file comment).
int csb_seccomp_compile(int profile, int stage, void **out_filter, size_t *out_len) {
    if (!out_filter || !out_len) return -EINVAL;
    int inet = (stage & CSB_FILTER_INET) != 0;
    stage &= ~CSB_FILTER_INET;
    if (profile < CSB_PROFILE_READ || profile > CSB_PROFILE_EXEC) return -EINVAL;
    if (stage != CSB_FILTER_BASE && stage != CSB_FILTER_TIER) return -EINVAL;
    // Only a program-running profile hosts an upstream server, the only worker with a grant.
    if (inet && profile != CSB_PROFILE_EXEC) return -EINVAL;

    scmp_filter_ctx ctx =
        seccomp_init(stage == CSB_FILTER_BASE ? SCMP_ACT_ALLOW : SCMP_ACT_ERRNO(ENOSYS));
    if (!ctx) return -ENOMEM;
    int rc;
    // Binary tree: lookup cost grows with log(n), which matters for the ~250-entry EXEC list.
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)) < 0) goto out;
    // csb_spawn sets PR_SET_NO_NEW_PRIVS itself (and the worker has it inherited).
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) < 0) goto out;
    // Native x86_64 only; x32 and i386 entry points are a different syscall table and are killed.
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0) goto out;

    if (stage == CSB_FILTER_BASE) {
        rc = csb_add_deny_table(ctx, csb_base_deny, CSB_COUNT(csb_base_deny), 0);
        if (rc < 0) goto out;
        if ((rc = csb_add_base_conditionals(ctx, inet)) < 0) goto out;
    } else {
        // When both filters refuse a call, the kernel reports the errno of the newest filter; the
        // BASE list is repeated here so a worker sees the same EPERM (not ENOSYS) for ptrace &c.
        // in every profile. clone3 is ENOSYS (the default) or, below, EPERM for READ/WRITE.
        rc = csb_add_deny_table(ctx, csb_base_deny, CSB_COUNT(csb_base_deny), ENOSYS);
        if (rc < 0) goto out;
        if (profile != CSB_PROFILE_EXEC) {
            // No sockets at all, but a foreign family reads as EAFNOSUPPORT like everywhere else.
            rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
                                  SCMP_A0(SCMP_CMP_NE, AF_UNIX));
            if (rc == 0)
                rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socketpair), 1,
                                      SCMP_A0(SCMP_CMP_NE, AF_UNIX));
            if (rc < 0) goto out;
        }
        if ((rc = csb_add_allow_table(ctx, csb_tier_read, CSB_COUNT(csb_tier_read), 0)) < 0) goto out;
        if (profile >= CSB_PROFILE_WRITE &&
            (rc = csb_add_allow_table(ctx, csb_tier_write, CSB_COUNT(csb_tier_write), 0)) < 0)
            goto out;
        if (profile == CSB_PROFILE_EXEC) {
            if ((rc = csb_add_allow_table(ctx, csb_tier_exec, CSB_COUNT(csb_tier_exec), inet)) < 0)
                goto out;
            // clone3 is left to the default action, ENOSYS (libseccomp refuses a rule equal to the
            // default): glibc then falls back to clone, whose flags the filter can inspect.
        } else {
            rc = csb_add_deny_table(ctx, csb_tier_noexec, CSB_COUNT(csb_tier_noexec), 0);
            if (rc < 0) goto out;
        }
    }
    rc = csb_export(ctx, out_filter, out_len);
out:
    seccomp_release(ctx);
    return rc;
}
