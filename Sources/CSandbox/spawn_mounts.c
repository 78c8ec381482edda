// The child's filesystem stages (see spawn.c for the order): directories and files of the new
// root, bind mounts with their nosuid/nodev/rdonly/noexec bits, pinned workspace roots, /dev and
// a masked /proc. Child side: async-signal-safe only.
#include "spawn_internal.h"

int csb_write_file(const char *path, const char *s) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t len = strlen(s);
    ssize_t n = write(fd, s, len);
    int err = errno;
    close(fd);
    if (n != (ssize_t)len) {
        errno = n < 0 ? err : EIO;
        return -1;
    }
    return 0;
}

// mkdir -p of every component of `path` (including the last one when `last`), cutting the string
// in place at each '/' and restoring it.
int csb_mkdirs(char *path, int last) {
    for (char *p = path + 1;; p++) {
        if (*p == '/' || (*p == '\0' && last)) {
            char saved = *p;
            *p = '\0';
            int rc = mkdir(path, 0755);
            int err = errno;
            *p = saved;
            if (rc < 0 && err != EEXIST) {
                errno = err;
                return -1;
            }
        }
        if (*p == '\0') return 0;
    }
}

// Adds nosuid, nodev and the requested rdonly/noexec to a mount and, with AT_RECURSIVE, to every
// mount beneath it (a recursive bind of /usr must not leave a writable submount). mount_setattr
// only sets the bits given, so it never trips over the atime or other flags the kernel locks on
// mounts inherited from the parent namespace; the MS_REMOUNT fallback (kernels < 5.12) has to
// repeat those flags, which statfs reports.
int csb_restrict_mount(const char *path, int readonly, int noexec, int recursive) {
    struct mount_attr attr = {0};
    attr.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (readonly ? MOUNT_ATTR_RDONLY : 0) |
                    (noexec ? MOUNT_ATTR_NOEXEC : 0);
    if (syscall(SYS_mount_setattr, AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &attr,
                sizeof attr) == 0)
        return 0;
    if (errno != ENOSYS) return -1;
    struct statfs sf;
    if (syscall(SYS_statfs, path, &sf) < 0) return -1;
    unsigned long keep = (unsigned long)sf.f_flags &
                         (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME |
                          MS_NODIRATIME | MS_RELATIME);
    unsigned long flags = MS_REMOUNT | MS_BIND | keep | MS_NOSUID | MS_NODEV |
                          (readonly ? MS_RDONLY : 0) | (noexec ? MS_NOEXEC : 0);
    return mount(NULL, path, NULL, flags, NULL);
}

// Binds a file or directory; creates the target (directory or empty file placeholder) first.
int csb_bind_one(char *src, char *dst, int recursive) {
    struct stat st;
    if (stat(src, &st) < 0) return -1;
    if (csb_mkdirs(dst, 0) < 0) return -1;
    if (S_ISDIR(st.st_mode)) {
        if (mkdir(dst, 0755) < 0 && errno != EEXIST) return -1;
    } else {
        int fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444);
        if (fd < 0) return -1;
        close(fd);
    }
    if (mount(src, dst, NULL, MS_BIND | (recursive ? MS_REC : 0), NULL) < 0) return -1;
    return 0;
}

// A workspace root: opened with openat2(RESOLVE_NO_SYMLINKS) and bound through the child's own
// descriptor (/proc/self/fd/N), so a root path that had a component swapped for a symlink after
// registration fails (ELOOP) instead of binding whatever the symlink names. Found in review.
int csb_bind_pinned(const char *src, char *dst) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    long fd = syscall(SYS_openat2, AT_FDCWD, src, &how, sizeof how);
    if (fd < 0) return -1;
    // "/oldroot/proc/self/fd/" + the number, built by hand: snprintf is not async-signal-safe.
    char link[48] = "/oldroot/proc/self/fd/";
    char digits[16];
    int n = 0;
    long v = fd;
    do digits[n++] = (char)('0' + v % 10), v /= 10;
    while (v > 0 && n < (int)sizeof digits);
    size_t at = strlen(link);
    while (n > 0) link[at++] = digits[--n];
    link[at] = 0;
    int rc = csb_bind_one(link, dst, 1);
    int saved = errno;
    close((int)fd);
    errno = saved;
    return rc;
}

static const char *const csb_dev_nodes[] = {"null", "zero", "full", "random", "urandom"};
static const char *const csb_dev_links[][2] = {
    {"/proc/self/fd", "/newroot/dev/fd"},
    {"/proc/self/fd/0", "/newroot/dev/stdin"},
    {"/proc/self/fd/1", "/newroot/dev/stdout"},
    {"/proc/self/fd/2", "/newroot/dev/stderr"},
};
// Parts of the fresh /proc made read-only and masked, after runc's default readonlyPaths and
// maskedPaths (plus the kernel-memory views an attacker's review read as root: page flags, slab
// and vmalloc layout with physical addresses, page types). A worker is never host root any more,
// so most of these are unreadable anyway (0400 root); the masks are the second wall.
static const char *const csb_proc_ro[] = {
    "/newroot/proc/sys", "/newroot/proc/sysrq-trigger", "/newroot/proc/irq", "/newroot/proc/bus",
    "/newroot/proc/fs",
};
static const char *const csb_proc_masked_files[] = {
    "/newroot/proc/kcore",       "/newroot/proc/keys",        "/newroot/proc/latency_stats",
    "/newroot/proc/timer_list",  "/newroot/proc/timer_stats", "/newroot/proc/sched_debug",
    "/newroot/proc/kpageflags",  "/newroot/proc/kpagecount",  "/newroot/proc/kpagecgroup",
    "/newroot/proc/slabinfo",    "/newroot/proc/vmallocinfo", "/newroot/proc/pagetypeinfo",
    "/newroot/proc/kallsyms",
};
static const char *const csb_proc_masked_dirs[] = {
    "/newroot/proc/acpi", "/newroot/proc/asound", "/newroot/proc/scsi",
};

void csb_setup_dev(const struct csb_ctx *c) {
    CSB_TRY(c, mkdir("/newroot/dev", 0755), CSB_STAGE_MOUNT_DEV);
    // Small and, once populated, read-only: a worker must not be able to fill memory through a
    // writable tmpfs at /dev (found in review: unbounded, it held gigabytes). Writes to the bound
    // device nodes still work: each is its own mount of the host's node.
    CSB_TRY(c, mount("tmpfs", "/newroot/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64"),
            CSB_STAGE_MOUNT_DEV);
    char src[32] = "/oldroot/dev/";
    char dst[32] = "/newroot/dev/";
    for (size_t i = 0; i < sizeof csb_dev_nodes / sizeof csb_dev_nodes[0]; i++) {
        // Fixed short names: strcpy into the fixed buffers is bounded.
        strcpy(src + 13, csb_dev_nodes[i]);
        strcpy(dst + 13, csb_dev_nodes[i]);
        CSB_TRY(c, csb_bind_one(src, dst, 0), CSB_STAGE_MOUNT_DEV);
    }
    for (size_t i = 0; i < sizeof csb_dev_links / sizeof csb_dev_links[0]; i++)
        CSB_TRY(c, symlink(csb_dev_links[i][0], csb_dev_links[i][1]), CSB_STAGE_MOUNT_DEV);
    CSB_TRY(c, mount(NULL, "/newroot/dev", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL),
            CSB_STAGE_MOUNT_DEV);
}

void csb_setup_proc(const struct csb_ctx *c) {
    // Must happen while the host's /proc is still reachable under /oldroot: the kernel only lets a
    // user namespace mount proc when a fully visible proc already exists (mount_too_revealing).
    CSB_TRY(c, mkdir("/newroot/proc", 0555), CSB_STAGE_MOUNT_PROC);
    CSB_TRY(c, mount("proc", "/newroot/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL),
            CSB_STAGE_MOUNT_PROC);
    for (size_t i = 0; i < sizeof csb_proc_ro / sizeof csb_proc_ro[0]; i++) {
        if (mount(csb_proc_ro[i], csb_proc_ro[i], NULL, MS_BIND | MS_REC, NULL) < 0) {
            if (errno == ENOENT) continue;
            csb_child_fail(c, CSB_STAGE_MOUNT_PROC, errno);
        }
        CSB_TRY(c, csb_restrict_mount(csb_proc_ro[i], 1, 1, 1), CSB_STAGE_MOUNT_PROC);
    }
    // A file is masked by the host's /dev/null bound over it, read-only; a directory by an empty
    // read-only tmpfs. Entries this kernel does not have are skipped.
    for (size_t i = 0; i < sizeof csb_proc_masked_files / sizeof csb_proc_masked_files[0]; i++) {
        if (mount("/oldroot/dev/null", csb_proc_masked_files[i], NULL, MS_BIND, NULL) < 0) {
            if (errno == ENOENT) continue;
            csb_child_fail(c, CSB_STAGE_MASK_PROC, errno);
        }
        CSB_TRY(c, csb_restrict_mount(csb_proc_masked_files[i], 1, 1, 0), CSB_STAGE_MASK_PROC);
    }
    for (size_t i = 0; i < sizeof csb_proc_masked_dirs / sizeof csb_proc_masked_dirs[0]; i++) {
        if (mount("tmpfs", csb_proc_masked_dirs[i], "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "mode=0555,size=4k,nr_inodes=1") < 0) {
            if (errno == ENOENT) continue;
            csb_child_fail(c, CSB_STAGE_MASK_PROC, errno);
        }
    }
}
