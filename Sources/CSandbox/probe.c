// Kernel feature probes. These are C because Landlock and openat2 have no libc wrappers, and the
// user-namespace probe forks a child that must only make async-signal-safe calls before _exit.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "csandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <sched.h>
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

int csb_userns_available(void) {
    pid_t pid = fork();
    if (pid < 0) return -errno;
    if (pid == 0) {
        // Child: only async-signal-safe calls until _exit.
        if (unshare(CLONE_NEWUSER) != 0) _exit(errno & 0xff);
        _exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -errno;
    }
    if (WIFEXITED(status)) {
        int code = WEXITSTATUS(status);
        return code == 0 ? 0 : -code;
    }
    return -ECHILD;
}
