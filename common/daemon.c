/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* sd-daemon glue for a daemon's libevent loop, made here with its event base. Works the same
 * under systemd, under the mycelia-node launcher (which sets NOTIFY_SOCKET and WATCHDOG_USEC
 * itself) and started by hand. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>

#include "build-config.h"
#include "daemon.h"
#include "log.h"

struct DaemonLoop {
        struct event_base *base;
        struct event *sigterm;
        struct event *sigint;
        struct event *watchdog;
};

static void daemon_signal_cb(evutil_socket_t sig, short what, void *userdata) {
        DaemonLoop *d = userdata;

        daemon_notify_stopping();
        (void) event_base_loopbreak(d->base);
}

static void daemon_watchdog_cb(evutil_socket_t fd, short what, void *userdata) {
        (void) sd_notify(0, "WATCHDOG=1");
}

static int daemon_loop_attach(struct event_base *base, DaemonLoop **ret) {
        _cleanup_(daemon_loop_freep) DaemonLoop *d = NULL;
        uint64_t watchdog_usec = 0;

        (void) signal(SIGPIPE, SIG_IGN);

        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        d->base = base;
        d->sigterm = evsignal_new(base, SIGTERM, daemon_signal_cb, d);
        d->sigint = evsignal_new(base, SIGINT, daemon_signal_cb, d);
        if (!d->sigterm || !d->sigint)
                return -ENOMEM;
        if (event_add(d->sigterm, NULL) < 0 || event_add(d->sigint, NULL) < 0)
                return -EIO;

        if (sd_watchdog_enabled(false, &watchdog_usec) > 0 && watchdog_usec > 0) {
                struct timeval tv = {
                        .tv_sec = watchdog_usec / 2 / USEC_PER_SEC,
                        .tv_usec = watchdog_usec / 2 % USEC_PER_SEC,
                };

                d->watchdog = event_new(base, -1, EV_PERSIST, daemon_watchdog_cb, d);
                if (!d->watchdog || event_add(d->watchdog, &tv) < 0)
                        return -ENOMEM;
        }

        *ret = TAKE_PTR(d);
        return 0;
}

int daemon_loop_new(int base_flags, struct event_base **ret_base, DaemonLoop **ret) {
        struct event_config *cfg;
        struct event_base *base;
        DaemonLoop *d;
        int r;

        /* With no flags this is what event_base_new() makes. */
        cfg = event_config_new();
        if (!cfg)
                return -ENOMEM;
        (void) event_config_set_flag(cfg, base_flags);
        base = event_base_new_with_config(cfg);
        event_config_free(cfg);
        if (!base)
                return -ENOMEM;

        r = daemon_loop_attach(base, &d);
        if (r < 0) {
                event_base_free(base);
                return r;
        }
        *ret_base = base;
        *ret = d;
        return 0;
}

DaemonLoop *daemon_loop_free(DaemonLoop *d) {
        if (!d)
                return NULL;
        if (d->sigterm)
                event_free(d->sigterm);
        if (d->sigint)
                event_free(d->sigint);
        if (d->watchdog)
                event_free(d->watchdog);
        free(d);
        return NULL;
}

void daemon_notify_ready(const char *status) {
        if (status)
                (void) sd_notifyf(0, "READY=1\nSTATUS=%s", status);
        else
                (void) sd_notify(0, "READY=1");
}

void daemon_notify_status(const char *fmt, ...) {
        char buf[512];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        (void) sd_notifyf(0, "STATUS=%s", buf);
}

void daemon_notify_stopping(void) {
        (void) sd_notify(0, "STOPPING=1");
}

/* Accepted sockets inherit TCP_NODELAY from the listener on Linux. With Nagle on, a token
 * written while the previous one is unacknowledged waits for the peer's delayed ACK (~40 ms).
 * Fails harmlessly on non-TCP sockets. */
static void listen_fd_set_nodelay(int fd) {
        int one = 1;

        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int listen_fds_n = -1;
static char **listen_fds_names;

int listen_fd_take(const char *name) {
        if (listen_fds_n < 0) {
                listen_fds_n = sd_listen_fds_with_names(true, &listen_fds_names);
                if (listen_fds_n < 0)
                        listen_fds_n = 0;
        }
        for (int i = 0; i < listen_fds_n; i++)
                if (listen_fds_names && listen_fds_names[i] && streq(listen_fds_names[i], name)) {
                        int fd = SD_LISTEN_FDS_START + i;

                        /* Hand each fd out once. */
                        free(listen_fds_names[i]);
                        listen_fds_names[i] = NULL;
                        (void) fcntl(fd, F_SETFD, FD_CLOEXEC);
                        listen_fd_set_nodelay(fd);
                        return fd;
                }
        return -ENOENT;
}

int listen_fds_take(const char *name, int *fds, size_t max) {
        size_t n = 0;
        int fd;

        /* listen_fd_take() hands each fd out once, so this simply takes them in order. */
        while (n < max && (fd = listen_fd_take(name)) >= 0)
                fds[n++] = fd;
        return (int) n;
}

int sockaddr_parse(const char *addr_port, struct sockaddr_storage *ret, socklen_t *ret_len) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV | AI_PASSIVE };
        struct addrinfo *res = NULL;
        char host[256];
        const char *colon, *port;
        int r;

        if (isempty(addr_port))
                return -EINVAL;
        if (addr_port[0] == '[') {
                const char *close = strchr(addr_port, ']');

                if (!close || close[1] != ':' || (size_t) (close - addr_port - 1) >= sizeof(host))
                        return -EINVAL;
                snprintf(host, sizeof(host), "%.*s", (int) (close - addr_port - 1), addr_port + 1);
                port = close + 2;
        } else {
                colon = strrchr(addr_port, ':');
                if (!colon || (size_t) (colon - addr_port) >= sizeof(host))
                        return -EINVAL;
                snprintf(host, sizeof(host), "%.*s", (int) (colon - addr_port), addr_port);
                port = colon + 1;
        }
        if (isempty(port))
                return -EINVAL;

        r = getaddrinfo(host[0] == 0 ? NULL : host, port, &hints, &res);
        if (r != 0)
                return r == EAI_SYSTEM ? -errno_or_eio() : -EADDRNOTAVAIL;
        memcpy(ret, res->ai_addr, res->ai_addrlen);
        *ret_len = res->ai_addrlen;
        freeaddrinfo(res);
        return 0;
}

int listen_tcp(const char *addr_port, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_storage sa;
        socklen_t len;
        int one = 1, r;

        r = sockaddr_parse(addr_port, &sa, &len);
        if (r < 0)
                return r;
        fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        listen_fd_set_nodelay(fd);
        if (bind(fd, (struct sockaddr *) &sa, len) < 0)
                return -errno;
        if (listen(fd, SOMAXCONN) < 0)
                return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int sockaddr_format_local(int fd, char *buf, size_t size) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);
        char host[INET6_ADDRSTRLEN];

        if (getsockname(fd, (struct sockaddr *) &sa, &len) < 0)
                return -errno;
        if (sa.ss_family == AF_INET) {
                struct sockaddr_in *in = (struct sockaddr_in *) &sa;

                inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
                snprintf(buf, size, "%s:%u", host, ntohs(in->sin_port));
        } else if (sa.ss_family == AF_INET6) {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &sa;

                inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
                snprintf(buf, size, "[%s]:%u", host, ntohs(in6->sin6_port));
        } else
                return -EAFNOSUPPORT;
        return 0;
}

int daemon_node_id_get(const char *configured, const char *state_dir, char ret[static NODE_ID_LEN + 1]) {
        int r;

        r = node_id_get(configured, state_dir, ret);
        if (r == -EINVAL && !isempty(configured))
                return log_error_errno(r, "Invalid node id '%s' ([node] id, --node-id): expected 32 hex digits, "
                                       "not all zero.", configured);
        if (r == -EBADMSG)
                return log_error_errno(r, "%s/" NODE_ID_FILE " does not hold a node id (32 hex digits and a newline). "
                                       "Remove it to have a new one made, or give one with [node] id or --node-id.",
                                       state_dir);
        if (r < 0)
                return log_error_errno(r, "Failed to read or create the node id in %s/" NODE_ID_FILE ": %m. "
                                       "Give a writable state directory ([node] state_dir, --state-dir) or an id "
                                       "([node] id, --node-id).", strempty(state_dir));
        return 0;
}

int daemon_parse_args(const char *program, const char *summary, MyceliaConfig *config, int argc, char **argv) {
        _cleanup_free_ int *unknown = NULL;
        int n_unknown = 0, r;

        unknown = calloc(argc > 0 ? argc : 1, sizeof(int));
        if (!unknown)
                return log_oom();
        r = config_load(config, argc, argv, unknown, &n_unknown);
        if (r == 1) {
                printf("%s [OPTIONS]\n\n%s\n\n"
                       "  -h --help                  show this help\n"
                       "     --version                show the version\n",
                       program, summary);
                config_help(stdout);
                return 1;
        }
        if (r < 0)
                return r;
        for (int i = 0; i < n_unknown; i++)
                if (streq(argv[unknown[i]], "--version")) {
                        printf("%s %s\n", program, PACKAGE_VERSION);
                        return 1;
                }
        if (n_unknown > 0) {
                log_error("Unknown argument '%s'; see --help.", argv[unknown[0]]);
                return -EINVAL;
        }
        return 0;
}

int node_name_get(const MyceliaConfig *c, char **ret) {
        char host[HOST_NAME_MAX + 1] = "";

        if (!isempty(c->node_name)) {
                *ret = strdup(c->node_name);
                return *ret ? 0 : -ENOMEM;
        }
        if (gethostname(host, sizeof(host) - 1) < 0)
                return -errno;
        *ret = strdup(host[0] == '\0' ? "localhost" : host);
        return *ret ? 0 : -ENOMEM;
}

int daemon_bus_connect(struct event_base *base, const char *address, const BusReconnectOps *ops, void *userdata,
                       BusReconnect **ret) {
        _cleanup_(bus_reconnect_freep) BusReconnect *r = NULL;
        int k;

        k = bus_reconnect_new(base, address, ops, userdata, &r);
        if (k < 0)
                return log_error_errno(k, "Failed to set up the bus connection: %m");
        k = bus_reconnect_start(r, false);
        if (k < 0)
                return log_error_errno(k, "Failed to connect or register on the bus %s: %m", isempty(address) ? "(system)" : address);
        *ret = TAKE_PTR(r);
        return 0;
}

int daemon_fd_limit_raise(uint64_t *ret_soft) {
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return -errno;
        if (rl.rlim_cur != rl.rlim_max) {
                struct rlimit raised = { .rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max };

                if (setrlimit(RLIMIT_NOFILE, &raised) < 0) {
                        *ret_soft = rl.rlim_cur;
                        return -errno;
                }
                rl.rlim_cur = rl.rlim_max;
        }
        *ret_soft = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t) rl.rlim_cur;
        return 0;
}

void daemon_base_settle(struct event_base *base) {
        if (!base)
                return;
        for (unsigned i = 0; i < 4; i++)
                (void) event_base_loop(base, EVLOOP_NONBLOCK);
}
