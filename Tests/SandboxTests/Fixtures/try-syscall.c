// Syscall probe run inside a worker (the pattern of bubblewrap's tests/try-syscall.c): it shows
// what the seccomp filters really block. C because it must issue raw syscalls with chosen
// (harmless or invalid) arguments, and be linked statically so it runs in a root with no libraries:
//   gcc -static -O2 -o try-syscall try-syscall.c
//
// Usage: try-syscall [--install-filter-fd N] NAME...
// With --install-filter-fd it first sets PR_SET_NO_NEW_PRIVS and installs the raw sock_filter
// program read from descriptor N, as the worker does with descriptor 4 at start. Then for each NAME
// it prints "NAME ERRNO": 0 when the call succeeded, else the raw errno. The arguments are chosen
// so that a call the filter lets through fails with something other than the filter's errnos
// (EBADF, EFAULT, EINVAL, ENOENT...) wherever the kernel allows it; calls whose first check is a
// capability (fsopen, move_mount, pivot_root, kexec_load, *_module, clone_newns) also report EPERM
// from the kernel in a worker without capabilities.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif

static char **probe_envp;

static void reap_if_child(long rc) {
    if (rc == 0) _exit(0); // we are the child of a fork/clone that went through
    if (rc > 0) waitpid((pid_t)rc, NULL, __WALL);
}

static void close_if_fd(long rc) {
    if (rc >= 0) close((int)rc);
}

// Returns 0 when the call succeeded, else errno.
static int try_one(const char *name) {
    long rc = -1;
    errno = 0;
    char c = 0;
    if (!strcmp(name, "ptrace")) {
        rc = syscall(SYS_ptrace, 2 /* PTRACE_PEEKDATA */, -1, NULL, NULL);
    } else if (!strcmp(name, "process_vm_readv")) {
        rc = syscall(SYS_process_vm_readv, getpid(), NULL, 0, NULL, 0, 1 /* bad flags */);
    } else if (!strcmp(name, "process_vm_writev")) {
        rc = syscall(SYS_process_vm_writev, getpid(), NULL, 0, NULL, 0, 1);
    } else if (!strcmp(name, "io_uring_setup")) {
        rc = syscall(SYS_io_uring_setup, 0, NULL);
    } else if (!strcmp(name, "userfaultfd")) {
        // UFFD_USER_MODE_ONLY passes the sysctl check; the extra bit then gives EINVAL.
        rc = syscall(SYS_userfaultfd, 1 | 0x40000000);
    } else if (!strcmp(name, "keyctl")) {
        rc = syscall(SYS_keyctl, 0xffff, 0, 0, 0, 0);
    } else if (!strcmp(name, "add_key")) {
        rc = syscall(SYS_add_key, NULL, NULL, NULL, 0, 0);
    } else if (!strcmp(name, "request_key")) {
        rc = syscall(SYS_request_key, NULL, NULL, NULL, 0);
    } else if (!strcmp(name, "bpf")) {
        rc = syscall(SYS_bpf, 0xffff, NULL, 0);
    } else if (!strcmp(name, "perf_event_open")) {
        rc = syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
    } else if (!strcmp(name, "mount")) {
        rc = syscall(SYS_mount, NULL, NULL, NULL, 0, NULL);
    } else if (!strcmp(name, "umount2")) {
        rc = syscall(SYS_umount2, NULL, 0);
    } else if (!strcmp(name, "fsopen")) {
        rc = syscall(SYS_fsopen, NULL, 0);
        close_if_fd(rc);
    } else if (!strcmp(name, "open_tree")) {
        rc = syscall(SYS_open_tree, -1, NULL, 0);
        close_if_fd(rc);
    } else if (!strcmp(name, "move_mount")) {
        rc = syscall(SYS_move_mount, -1, NULL, -1, NULL, 0);
    } else if (!strcmp(name, "mount_setattr")) {
        rc = syscall(SYS_mount_setattr, -1, NULL, 0, NULL, 0);
    } else if (!strcmp(name, "pivot_root")) {
        rc = syscall(SYS_pivot_root, NULL, NULL);
    } else if (!strcmp(name, "chroot")) {
        rc = syscall(SYS_chroot, NULL);
    } else if (!strcmp(name, "setns")) {
        rc = syscall(SYS_setns, -1, 0);
    } else if (!strcmp(name, "unshare")) {
        rc = syscall(SYS_unshare, 1); // an exit-signal bit: EINVAL
    } else if (!strcmp(name, "clone_newuser")) {
        rc = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, NULL, NULL, NULL, NULL);
        reap_if_child(rc);
    } else if (!strcmp(name, "clone_newns")) {
        rc = syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, NULL, NULL, NULL, NULL);
        reap_if_child(rc);
    } else if (!strcmp(name, "clone_newnet")) {
        rc = syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, NULL, NULL, NULL, NULL);
        reap_if_child(rc);
    } else if (!strcmp(name, "clone")) {
        rc = syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, NULL);
        reap_if_child(rc);
    } else if (!strcmp(name, "clone3")) {
        rc = syscall(SYS_clone3, NULL, 0); // size 0: EINVAL
    } else if (!strcmp(name, "kexec_load")) {
        rc = syscall(SYS_kexec_load, 0, 0, NULL, 0);
    } else if (!strcmp(name, "kexec_file_load")) {
        rc = syscall(SYS_kexec_file_load, -1, -1, 0, NULL, 0);
    } else if (!strcmp(name, "init_module")) {
        rc = syscall(SYS_init_module, NULL, 0, NULL);
    } else if (!strcmp(name, "finit_module")) {
        rc = syscall(SYS_finit_module, -1, NULL, 0);
    } else if (!strcmp(name, "delete_module")) {
        rc = syscall(SYS_delete_module, NULL, 0);
    } else if (!strcmp(name, "personality")) {
        rc = syscall(SYS_personality, 0x0008 /* PER_LINUX32 */);
        if (rc >= 0) syscall(SYS_personality, 0);
    } else if (!strcmp(name, "personality_query")) {
        rc = syscall(SYS_personality, 0xffffffffUL);
    } else if (!strcmp(name, "ioctl_tiocsti")) {
        rc = syscall(SYS_ioctl, -1, (unsigned long)TIOCSTI, &c);
    } else if (!strcmp(name, "ioctl_tiocsti_highbits")) {
        rc = syscall(SYS_ioctl, -1, 0x100000000UL | (unsigned long)TIOCSTI, &c);
    } else if (!strcmp(name, "ioctl_tioclinux")) {
        rc = syscall(SYS_ioctl, -1, (unsigned long)TIOCLINUX, &c);
    } else if (!strcmp(name, "ioctl_fionread")) {
        int n;
        rc = syscall(SYS_ioctl, -1, (unsigned long)FIONREAD, &n);
    } else if (!strncmp(name, "socket_", 7)) {
        const char *fam = name + 7;
        int domain = -1, type = SOCK_STREAM, proto = 0;
        if (!strcmp(fam, "unix")) domain = AF_UNIX;
        else if (!strcmp(fam, "inet")) domain = AF_INET;
        else if (!strcmp(fam, "inet6")) domain = AF_INET6;
        else if (!strcmp(fam, "netlink")) domain = AF_NETLINK, type = SOCK_RAW;
        else if (!strcmp(fam, "packet")) domain = AF_PACKET, type = SOCK_RAW;
        else if (!strcmp(fam, "vsock")) domain = AF_VSOCK;
        else if (!strcmp(fam, "alg")) domain = AF_ALG, type = SOCK_SEQPACKET;
        else if (!strcmp(fam, "unix_highbits") || !strcmp(fam, "inet_highbits")) {
            long family = fam[0] == 'u' ? AF_UNIX : AF_INET;
            rc = syscall(SYS_socket, 0x100000000UL | family, SOCK_STREAM, 0);
            close_if_fd(rc);
            goto done;
        } else return -1;
        rc = syscall(SYS_socket, domain, type, proto);
        close_if_fd(rc);
    } else if (!strncmp(name, "tcp_connect_", 12) || !strcmp(name, "tcp_bind")) {
        // TCP to 127.0.0.1:<port> of this network namespace (a granted worker's: the proxy port
        // is the only one Landlock lets it connect to), or a bind of any port.
        rc = syscall(SYS_socket, AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (rc >= 0) {
            int fd = (int)rc;
            struct sockaddr_in addr;
            memset(&addr, 0, sizeof addr);
            addr.sin_family = AF_INET;
            addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (name[4] == 'c') {
                addr.sin_port = htons((uint16_t)atoi(name + 12));
                rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
            } else {
                rc = bind(fd, (struct sockaddr *)&addr, sizeof addr);
            }
            int saved = errno;
            close(fd);
            errno = saved;
        }
    } else if (!strcmp(name, "socketpair_inet")) {
        int sv[2];
        rc = syscall(SYS_socketpair, AF_INET, SOCK_STREAM, 0, sv);
    } else if (!strcmp(name, "inotify_init")) {
        rc = syscall(SYS_inotify_init);
        close_if_fd(rc);
    } else if (!strcmp(name, "inotify_init1")) {
        rc = syscall(SYS_inotify_init1, IN_CLOEXEC); // succeeds (0) when let through
        close_if_fd(rc);
    } else if (!strcmp(name, "inotify_add_watch")) {
        rc = syscall(SYS_inotify_add_watch, -1, "/", IN_OPEN); // EBADF when let through
    } else if (!strcmp(name, "fanotify_init")) {
        // Unprivileged fanotify needs FAN_REPORT_FID (kernel >= 5.13); with it the call succeeds
        // unless a filter refuses it, so EPERM here is the filter's answer, not the kernel's.
        rc = syscall(SYS_fanotify_init, FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_REPORT_FID, O_RDONLY);
        close_if_fd(rc);
    } else if (!strcmp(name, "fanotify_mark")) {
        rc = syscall(SYS_fanotify_mark, -1, FAN_MARK_ADD, FAN_OPEN, AT_FDCWD, "/"); // EBADF when let through
    } else if (!strcmp(name, "execve")) {
        char *argv[] = {"/nonexistent-leasehold", NULL};
        rc = syscall(SYS_execve, argv[0], argv, probe_envp);
    } else if (!strcmp(name, "fork")) {
        rc = syscall(SYS_fork);
        reap_if_child(rc);
    } else if (!strcmp(name, "vfork")) {
        rc = syscall(SYS_clone, CLONE_VM | CLONE_VFORK | SIGCHLD, NULL, NULL, NULL, NULL);
        reap_if_child(rc);
    } else if (!strcmp(name, "kill")) {
        rc = syscall(SYS_kill, 0x7ffffff0, 0);
    } else if (!strcmp(name, "openat")) {
        rc = syscall(SYS_openat, AT_FDCWD, "/", O_PATH | O_CLOEXEC); // O_PATH: seccomp, not Landlock
        close_if_fd(rc);
    } else if (!strcmp(name, "write")) {
        rc = syscall(SYS_write, 1, "", 0);
    } else if (!strcmp(name, "getpid")) {
        rc = syscall(SYS_getpid);
    } else {
        return -1;
    }
done:
    return rc < 0 ? errno : 0;
}

static int install_filter(int fd) {
    size_t cap = 4096, len = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (!buf) return ENOMEM;
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno;
        if (n == 0) break;
        len += (size_t)n;
        if (len == cap) buf = realloc(buf, cap *= 2);
    }
    if (len == 0 || len % sizeof(struct sock_filter)) return EINVAL;
    close(fd);
    struct sock_fprog prog = {.len = (unsigned short)(len / sizeof(struct sock_filter)),
                              .filter = (struct sock_filter *)buf};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return errno;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0) return errno;
    return 0;
}

int main(int argc, char **argv, char **envp) {
    probe_envp = envp;
    int i = 1;
    if (argc > 2 && !strcmp(argv[1], "--install-filter-fd")) {
        int err = install_filter(atoi(argv[2]));
        if (err) {
            fprintf(stderr, "try-syscall: installing the filter: %s\n", strerror(err));
            return 1;
        }
        i = 3;
    }
    int status = 0;
    for (; i < argc; i++) {
        int err = try_one(argv[i]);
        char line[128];
        int n = err < 0 ? snprintf(line, sizeof line, "%s unknown\n", argv[i])
                        : snprintf(line, sizeof line, "%s %d\n", argv[i], err);
        if (err < 0) status = 2;
        // write(2) directly: stdio would need more syscalls (ioctl TCGETS) than a READ tier allows.
        if (write(1, line, (size_t)n) < 0) return 1;
    }
    return status;
}
