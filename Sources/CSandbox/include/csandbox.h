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

#endif
