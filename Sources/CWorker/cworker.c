#define _GNU_SOURCE
#include "cworker.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

_Static_assert(CSBW_O_PATH == O_PATH, "O_PATH");
_Static_assert(CSBW_RENAME_NOREPLACE == RENAME_NOREPLACE, "RENAME_NOREPLACE");
_Static_assert(CSBW_POSIX_SPAWN_SETSID == POSIX_SPAWN_SETSID, "POSIX_SPAWN_SETSID");
_Static_assert(CSBW_RESOLVE_BENEATH == RESOLVE_BENEATH, "RESOLVE_BENEATH");
_Static_assert(CSBW_RESOLVE_NO_MAGICLINKS == RESOLVE_NO_MAGICLINKS, "RESOLVE_NO_MAGICLINKS");
_Static_assert(CSBW_RESOLVE_NO_SYMLINKS == RESOLVE_NO_SYMLINKS, "RESOLVE_NO_SYMLINKS");
_Static_assert(CSBW_RESOLVE_NO_XDEV == RESOLVE_NO_XDEV, "RESOLVE_NO_XDEV");

// C because prctl is variadic (Swift cannot import it) and seccomp(2) has no glibc wrapper.
int csbw_install_filter_fd(int fd) {
    // A BPF program is at most BPF_MAXINSNS instructions; anything bigger is not a filter.
    enum { max_bytes = BPF_MAXINSNS * sizeof(struct sock_filter) };
    unsigned char *program = malloc(max_bytes + 1);
    if (program == NULL) {
        close(fd);
        return -ENOMEM;
    }
    size_t length = 0;
    for (;;) {
        ssize_t count = pread(fd, program + length, max_bytes + 1 - length, (off_t)length);
        if (count < 0) {
            if (errno == EINTR) continue;
            int saved = errno;
            free(program);
            close(fd);
            return -saved;
        }
        if (count == 0) break;
        length += (size_t)count;
        if (length > max_bytes) break;
    }
    close(fd);
    if (length == 0 || length > max_bytes || length % sizeof(struct sock_filter) != 0) {
        free(program);
        return -EINVAL;
    }
    struct sock_fprog fprog = {
        .len = (unsigned short)(length / sizeof(struct sock_filter)),
        .filter = (struct sock_filter *)program,
    };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        int saved = errno;
        free(program);
        return -saved;
    }
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) != 0) {
        int saved = errno;
        free(program);
        return -saved;
    }
    free(program);
    return 0;
}

// C because openat2(2) has no glibc wrapper (glibc 2.36) and takes a kernel struct.
int csbw_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = flags;
    how.mode = mode;
    how.resolve = resolve;
    for (;;) {
        long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
        if (fd >= 0) return (int)fd;
        // EAGAIN: RESOLVE_* lookups retry when a concurrent rename raced them.
        if (errno == EINTR || errno == EAGAIN) continue;
        return -errno;
    }
}

// C because glibc declares renameat2 only under _GNU_SOURCE.
int csbw_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    if (renameat2(olddirfd, oldpath, newdirfd, newpath, flags) == 0) return 0;
    return -errno;
}

// C because glibc declares memmem only under _GNU_SOURCE.
const void *csbw_memmem(const void *haystack, size_t haystacklen, const void *needle, size_t needlelen) {
    return memmem(haystack, haystacklen, needle, needlelen);
}

// C because glibc declares memrchr only under _GNU_SOURCE.
const void *csbw_memrchr(const void *s, int c, size_t n) {
    return memrchr(s, c, n);
}

// C because glibc declares posix_spawn_file_actions_addfchdir_np only under _GNU_SOURCE.
int csbw_spawn_addfchdir(posix_spawn_file_actions_t *actions, int fd) {
    return posix_spawn_file_actions_addfchdir_np(actions, fd);
}

// C because pidfd_open(2) has no wrapper in Swift's Glibc module (glibc declares it in
// <sys/pidfd.h>, which the module does not include).
int csbw_pidfd_open(int pid) {
    long fd = syscall(SYS_pidfd_open, pid, 0);
    return fd < 0 ? -errno : (int)fd;
}
