#ifndef CSANDBOX_H
#define CSANDBOX_H

/// Landlock ABI version supported by the running kernel, or -errno when unsupported.
int csb_landlock_abi(void);

/// 0 when seccomp filters can be installed (CONFIG_SECCOMP_FILTER), else -errno.
int csb_seccomp_available(void);

/// 0 when openat2(2) with RESOLVE_BENEATH works, else -errno.
int csb_openat2_available(void);

/// 0 when this process may create a user namespace (tried in a short-lived child), else -errno.
int csb_userns_available(void);

#include <stddef.h>
#include <sys/types.h>

/// A sealed, read-only memfd holding `length` bytes (the tier's seccomp program handed to a
/// worker), or -errno. C because memfd_create and F_ADD_SEALS need _GNU_SOURCE declarations the
/// Swift Glibc module does not expose.
int csb_sealed_memfd(const char *name, const void *bytes, size_t length);

/// Sets the CPU soft limit of `pid` to what it has used so far plus `seconds` (+1 for rounding),
/// so a warm worker's CPU limit holds per call rather than over its whole life. 0 or -errno.
int csb_limit_cpu_from_now(pid_t pid, long seconds);

#include "csb_spawn.h"

#endif
