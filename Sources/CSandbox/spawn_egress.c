// A network grant's loopback listener, made inside the child's network namespace and handed to
// the runner's egress proxy. Child side: async-signal-safe only.
#include "spawn_internal.h"

// A network grant: the child owns its new network namespace (through its user namespace, or as
// root of the initial one before it becomes the tenant's ids), so it brings `lo` up and listens
// on 127.0.0.1:egress_port there, then hands the listening socket to the runner over a socketpair
// made before clone (SCM_RIGHTS; the child shares the runner's memory but not its descriptor
// table) and closes its own copy: the worker never holds it, and nothing in this namespace can
// reach past it. The runner's egress proxy accepts on it and decides every connection.
void csb_setup_egress(const struct csb_ctx *c) {
    const struct csb_spawn_spec *s = c->spec;
    int ctl = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CSB_TRY(c, ctl, CSB_STAGE_EGRESS);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    CSB_TRY(c, ioctl(ctl, SIOCGIFFLAGS, &ifr), CSB_STAGE_EGRESS);
    ifr.ifr_flags |= IFF_UP;
    CSB_TRY(c, ioctl(ctl, SIOCSIFFLAGS, &ifr), CSB_STAGE_EGRESS);
    close(ctl);
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    CSB_TRY(c, listener, CSB_STAGE_EGRESS);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)s->egress_port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CSB_TRY(c, bind(listener, (struct sockaddr *)&addr, sizeof addr), CSB_STAGE_EGRESS);
    CSB_TRY(c, listen(listener, 64), CSB_STAGE_EGRESS);
    char byte = 0;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
                         .msg_controllen = sizeof control.buf};
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &listener, sizeof(int));
    ssize_t sent;
    do sent = sendmsg(c->egress_fd, &msg, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    CSB_TRY(c, sent, CSB_STAGE_EGRESS);
    close(listener);
    close(c->egress_fd);
}
