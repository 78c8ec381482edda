// Runner-side helpers that need _GNU_SOURCE declarations Swift's Glibc module does not import
// (memfd_create and its seals, prlimit).
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "csandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

int csb_sealed_memfd(const char *name, const void *bytes, size_t length) {
    int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return -errno;
    const char *cursor = bytes;
    size_t left = length;
    while (left > 0) {
        ssize_t written = write(fd, cursor, left);
        if (written < 0) {
            if (errno == EINTR) continue;
            int saved = errno;
            close(fd);
            return -saved;
        }
        cursor += written;
        left -= (size_t)written;
    }
    // Sealed so nothing (not even the worker) can change the program between here and install.
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0 ||
        lseek(fd, 0, SEEK_SET) != 0) {
        int saved = errno;
        close(fd);
        return -saved;
    }
    return fd;
}

int csb_limit_cpu_from_now(pid_t pid, long seconds) {
    clockid_t clock;
    int error = clock_getcpuclockid(pid, &clock);
    if (error != 0) return -error;
    struct timespec used;
    if (clock_gettime(clock, &used) != 0) return -errno;
    // Soft limit only: SIGXCPU at the allowance; the hard limit stays where the spawn put it.
    struct rlimit current;
    if (prlimit(pid, RLIMIT_CPU, NULL, &current) != 0) return -errno;
    struct rlimit next = current;
    next.rlim_cur = (rlim_t)used.tv_sec + (rlim_t)seconds + 1;
    if (current.rlim_max != RLIM_INFINITY && next.rlim_cur > current.rlim_max) next.rlim_cur = current.rlim_max;
    if (prlimit(pid, RLIMIT_CPU, &next, NULL) != 0) return -errno;
    return 0;
}
