#ifndef CWORKER_H
#define CWORKER_H

// The worker's C shim: only calls Swift cannot make itself. Each is either a syscall without a
// glibc wrapper Swift can import (openat2, seccomp, pidfd_open), a variadic call Swift cannot
// import (prctl), or a GNU extension that glibc declares only under _GNU_SOURCE, which Swift's
// Glibc module does not define (renameat2, memmem, posix_spawn_file_actions_addfchdir_np). Every function returns -errno on
// failure instead of touching errno so Swift never reads a stale errno.

#include <stddef.h>
#include <stdint.h>
#include <spawn.h>

/// Reads the raw `struct sock_filter` program held by `fd` (a memfd, read from offset 0 to EOF),
/// sets PR_SET_NO_NEW_PRIVS and installs the program with seccomp(SECCOMP_SET_MODE_FILTER).
/// Closes `fd` in every case. Returns 0 or -errno (-EINVAL for an empty or ragged program).
int csbw_install_filter_fd(int fd);

/// openat2(2) with `struct open_how {flags, mode, resolve}`. Returns the new descriptor or -errno.
int csbw_openat2(int dirfd, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve);

/// renameat2(2). Returns 0 or -errno.
int csbw_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);

/// glibc's memmem (two-way, vectorised): the literal search of repo.search.
const void *csbw_memmem(const void *haystack, size_t haystacklen, const void *needle, size_t needlelen);

/// glibc's memrchr: the start of the line holding a match.
const void *csbw_memrchr(const void *s, int c, size_t n);

/// posix_spawn_file_actions_addfchdir_np: the child of shell.run changes into the cwd descriptor
/// that openat2 resolved, so no path is ever resolved twice. Returns 0 or an error number.
int csbw_spawn_addfchdir(posix_spawn_file_actions_t *actions, int fd);

/// pidfd_open(2): a descriptor that polls readable once `pid` has exited, so shell.run wakes at
/// the command's exit instead of on a timer. Returns the descriptor or -errno (-ENOSYS on kernels
/// before 5.3).
int csbw_pidfd_open(int pid);

/// The kernel's flag values the Swift side needs but cannot see (GNU-only macros).
enum {
    CSBW_O_PATH = 010000000,
    CSBW_RENAME_NOREPLACE = 1,
    CSBW_POSIX_SPAWN_SETSID = 0x80,
    CSBW_RESOLVE_NO_XDEV = 0x01,
    CSBW_RESOLVE_NO_MAGICLINKS = 0x02,
    CSBW_RESOLVE_NO_SYMLINKS = 0x04,
    CSBW_RESOLVE_BENEATH = 0x08,
};

#endif
