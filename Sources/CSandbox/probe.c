// Kernel feature probes. These are C because Landlock and openat2 have no libc wrappers, and the
// user-namespace probe clones a child (never a fork: the runner is multi-threaded) that only
// calls _exit.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "csandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int csb_landlock_abi(void) {
#ifdef SYS_landlock_create_ruleset
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    if (abi < 0) return -errno;
    return (int)abi;
#else
    return -ENOSYS;
#endif
}

int csb_seccomp_available(void) {
    // PR_GET_SECCOMP fails with EINVAL when the kernel lacks seccomp. A SECCOMP_GET_ACTION_AVAIL
    // query then tells whether filter mode with the actions we use is there.
    if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0) return -errno;
    unsigned int action = SECCOMP_RET_ERRNO;
    if (syscall(SYS_seccomp, SECCOMP_GET_ACTION_AVAIL, 0, &action) < 0) return -errno;
    return 0;
}

int csb_openat2_available(void) {
#ifdef SYS_openat2
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    long fd = syscall(SYS_openat2, AT_FDCWD, ".", &how, sizeof how);
    if (fd < 0) return -errno;
    close((int)fd);
    return 0;
#else
    return -ENOSYS;
#endif
}

// The child of the user-namespace probe: born in its own user namespace, it exits at once.
static int csb_userns_probe_child(void *arg) {
    (void)arg;
    _exit(0);
}

int csb_userns_available(void) {
    // Never fork() the multi-threaded runner (DESIGN.md §5): clone(CLONE_VM | CLONE_VFORK) on a
    // stack of its own, as csb_spawn does, with CLONE_NEWUSER so the child is born in a new user
    // namespace (the same permission check unshare(CLONE_NEWUSER) makes). The stack lives in this
    // frame: CLONE_VFORK suspends this thread until the child has exited. Signals stay blocked
    // around clone, so no handler of the runner ever runs on the child's stack.
    char stack[16384] __attribute__((aligned(16)));
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = clone(csb_userns_probe_child, stack + sizeof stack, CLONE_VM | CLONE_VFORK | CLONE_NEWUSER | SIGCHLD,
                      NULL);
    int err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) return -err;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -errno;
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -ECHILD;
}
