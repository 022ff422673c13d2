/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* UDP datagrams and TCP push-pull exchanges of mycelia-gossipd on the libevent loop. Nothing
 * here understands SWIM: bytes go to and come from the Manager through GossipNetHandlers. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/uio.h>

#include "daemon.h"
#include "gossipd-net.h"
#include "log.h"

/* Largest slice of a push-pull message read in one wake-up, so one fast peer cannot hold the
 * loop for a whole 16 MiB message. */
#define PUSH_PULL_READ_PER_WAKEUP (1U << 20)
#define PUSH_PULL_RX_CHUNK (64U << 10)
/* Connections accepted per wake-up of the listener. */
#define ACCEPT_PER_WAKEUP 16

static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

typedef enum PushPullState {
        PUSH_PULL_CONNECTING,
        PUSH_PULL_WRITING,
        PUSH_PULL_READING_HEADER,
        PUSH_PULL_READING_BODY,
} PushPullState;

typedef struct PushPullConn PushPullConn;
struct PushPullConn {
        GossipNet *net;
        PushPullConn *prev, *next;
        bool outgoing;
        int fd;
        SwimAddr peer;
        PushPullState state;
        struct event *io;
        short io_what;
        struct event *timer;

        /* What we send: the 4-byte length, then tx. */
        uint8_t tx_header[4];
        void *tx;
        size_t tx_size;
        size_t tx_done;         /* header included */

        /* What we receive. */
        uint8_t rx_header[4];
        size_t rx_header_done;
        uint8_t *rx;
        size_t rx_size;         /* announced length */
        size_t rx_done;
        size_t rx_allocated;
};

struct GossipNet {
        struct event_base *base;
        GossipNetHandlers handlers;
        void *userdata;

        int udp_fd;
        int udp_family;
        struct event *udp_event;
        int tcp_fd;
        struct event *tcp_event;

        /* recvmmsg() buffers, one per datagram of a batch. */
        uint8_t (*rx_buffers)[SWIM_DATAGRAM_MAX];

        PushPullConn *conns;
        size_t n_in, n_out;
        size_t rx_bytes;        /* allocated by all connections' rx buffers */

        GossipNetCounters counters;
};

bool gossip_addr_is_unspecified(const SwimAddr *a) {
        static const uint8_t zero[16] = {};

        if (a->family == AF_INET)
                return memcmp(a->addr, zero, 4) == 0;
        return memcmp(a->addr, zero, 16) == 0;
}

/* swim only knows AF_INET and AF_INET6: an IPv4 peer reaching a dual-stack socket shows up as
 * ::ffff:a.b.c.d, which must compare equal to the a.b.c.d:port it advertises. */
static int addr_from_sockaddr(const struct sockaddr *sa, socklen_t len, SwimAddr *ret) {
        if (sa->sa_family == AF_INET6 && len >= (socklen_t) sizeof(struct sockaddr_in6)) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;

                if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
                        struct sockaddr_in in = {
                                .sin_family = AF_INET,
                                .sin_port = in6->sin6_port,
                        };

                        memcpy(&in.sin_addr, in6->sin6_addr.s6_addr + 12, 4);
                        return swim_addr_from_sockaddr((struct sockaddr *) &in, sizeof(in), ret);
                }
        }
        return swim_addr_from_sockaddr(sa, len, ret);
}

/* The socket address to reach a on a socket of family: IPv4 through an IPv6 socket goes as
 * ::ffff:a.b.c.d. */
static int addr_to_sockaddr(const SwimAddr *a, int family, struct sockaddr_storage *ret, socklen_t *ret_len) {
        if (a->family == AF_INET && family == AF_INET6) {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) ret;

                memset(ret, 0, sizeof(*ret));
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons(a->port);
                in6->sin6_addr.s6_addr[10] = 0xff;
                in6->sin6_addr.s6_addr[11] = 0xff;
                memcpy(in6->sin6_addr.s6_addr + 12, a->addr, 4);
                *ret_len = sizeof(*in6);
                return 0;
        }
        if (a->family == AF_INET6 && family == AF_INET)
                return -EAFNOSUPPORT;
        swim_addr_to_sockaddr(a, ret, ret_len);
        return 0;
}

static int fd_nonblock(int fd) {
        int flags = fcntl(fd, F_GETFL);

        if (flags < 0)
                return -errno;
        if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
                return -errno;
        if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                return -errno;
        return 0;
}

/* --- UDP --- */

static void udp_read_cb(evutil_socket_t fd, short what, void *userdata) {
        GossipNet *n = userdata;
        struct mmsghdr msgs[GOSSIP_NET_RECV_BATCH];
        struct iovec iovs[GOSSIP_NET_RECV_BATCH];
        struct sockaddr_storage froms[GOSSIP_NET_RECV_BATCH];
        unsigned total = 0;

        while (total < GOSSIP_NET_RECV_PER_WAKEUP) {
                unsigned want = MIN(GOSSIP_NET_RECV_BATCH, GOSSIP_NET_RECV_PER_WAKEUP - total);
                int got;

                for (unsigned i = 0; i < want; i++) {
                        iovs[i] = (struct iovec) { .iov_base = n->rx_buffers[i], .iov_len = SWIM_DATAGRAM_MAX };
                        msgs[i] = (struct mmsghdr) {
                                .msg_hdr = {
                                        .msg_name = &froms[i],
                                        .msg_namelen = sizeof(froms[i]),
                                        .msg_iov = &iovs[i],
                                        .msg_iovlen = 1,
                                },
                        };
                }
                got = recvmmsg(n->udp_fd, msgs, want, MSG_DONTWAIT, NULL);
                if (got < 0) {
                        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                                break;
                        /* ICMP errors of earlier sends (ECONNREFUSED on Linux) land here too. */
                        n->counters.receive_errors++;
                        log_debug_errno(-errno, "Failed to receive gossip datagrams: %m");
                        break;
                }
                for (int i = 0; i < got; i++) {
                        SwimAddr from;

                        if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) {
                                n->counters.datagrams_truncated++;
                                continue;
                        }
                        if (addr_from_sockaddr((struct sockaddr *) &froms[i], msgs[i].msg_hdr.msg_namelen,
                                               &from) < 0) {
                                n->counters.receive_errors++;
                                continue;
                        }
                        n->handlers.datagram(&from, n->rx_buffers[i], msgs[i].msg_len, n->userdata);
                }
                total += (unsigned) got;
                if ((unsigned) got < want)
                        break;
        }
        if (total > 0 && n->handlers.datagrams_done)
                n->handlers.datagrams_done(n->userdata);
}

int gossip_net_send(GossipNet *n, const SwimAddr *to, const void *data, size_t size) {
        struct sockaddr_storage sa;
        socklen_t len;
        int r;

        r = addr_to_sockaddr(to, n->udp_family, &sa, &len);
        if (r < 0) {
                n->counters.send_errors++;
                return r;
        }
        if (sendto(n->udp_fd, data, size, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *) &sa, len) < 0) {
                r = -errno;
                if (IN_SET(r, -EAGAIN, -EWOULDBLOCK, -ENOBUFS))
                        n->counters.send_dropped++;
                else
                        n->counters.send_errors++;
                return r;
        }
        return 0;
}

/* --- push-pull connections --- */

static void conn_free(PushPullConn *c) {
        GossipNet *n = c->net;

        if (c->prev)
                c->prev->next = c->next;
        else if (n->conns == c)
                n->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        if (c->outgoing)
                n->n_out--;
        else
                n->n_in--;
        if (c->io)
                event_free(c->io);
        if (c->timer)
                event_free(c->timer);
        if (c->fd >= 0)
                (void) close(c->fd);
        n->rx_bytes -= c->rx_allocated;
        free(c->rx);
        free(c->tx);
        free(c);
}

/* Ends a connection; an outgoing one reports error (or the reply when 0) to the Manager. The
 * connection is gone from the list before the handler runs, so it may start another. */
static void conn_finish(PushPullConn *c, int error) {
        GossipNet *n = c->net;

        if (error < 0) {
                n->counters.push_pull_failed++;
                log_debug_errno(error, "Push-pull %s failed: %m", c->outgoing ? "exchange" : "request");
        }
        if (c->outgoing) {
                SwimAddr peer = c->peer;
                uint8_t *rx = TAKE_PTR(c->rx);
                size_t size = c->rx_done;

                n->rx_bytes -= c->rx_allocated;
                c->rx_allocated = 0;
                conn_free(c);
                n->handlers.push_pull_done(&peer, error, error < 0 ? NULL : rx, error < 0 ? 0 : size,
                                           n->userdata);
                free(rx);
                return;
        }
        conn_free(c);
}

static void conn_io_cb(evutil_socket_t fd, short what, void *userdata);

static int conn_watch(PushPullConn *c, short what) {
        if (c->io_what == what)
                return 0;
        (void) event_del(c->io);
        if (event_assign(c->io, c->net->base, c->fd, what | EV_PERSIST, conn_io_cb, c) < 0)
                return -EIO;
        if (event_add(c->io, NULL) < 0)
                return -EIO;
        c->io_what = what;
        return 0;
}

static void conn_timeout_cb(evutil_socket_t fd, short what, void *userdata) {
        conn_finish(userdata, -ETIMEDOUT);
}

static int conn_new(GossipNet *n, int fd, bool outgoing, const SwimAddr *peer, PushPullConn **ret) {
        struct timeval tv = {
                .tv_sec = GOSSIP_PUSH_PULL_TIMEOUT_USEC / USEC_PER_SEC,
                .tv_usec = GOSSIP_PUSH_PULL_TIMEOUT_USEC % USEC_PER_SEC,
        };
        PushPullConn *c;

        c = calloc(1, sizeof(*c));
        if (!c) {
                (void) close(fd);
                return -ENOMEM;
        }
        c->net = n;
        c->fd = fd;
        c->outgoing = outgoing;
        c->peer = *peer;
        c->next = n->conns;
        if (n->conns)
                n->conns->prev = c;
        n->conns = c;
        if (outgoing)
                n->n_out++;
        else
                n->n_in++;

        /* Assigned for real by conn_watch(). */
        c->io = event_new(n->base, -1, 0, conn_io_cb, c);
        c->timer = evtimer_new(n->base, conn_timeout_cb, c);
        if (!c->io || !c->timer || evtimer_add(c->timer, &tv) < 0) {
                conn_free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

/* Writes what is left of the message. 1 when all of it went, 0 to wait, < 0 on error. */
static int conn_write(PushPullConn *c) {
        while (c->tx_done < sizeof(c->tx_header) + c->tx_size) {
                struct iovec iov[2];
                int n_iov = 0;
                ssize_t k;

                if (c->tx_done < sizeof(c->tx_header))
                        iov[n_iov++] = (struct iovec) {
                                .iov_base = c->tx_header + c->tx_done,
                                .iov_len = sizeof(c->tx_header) - c->tx_done,
                        };
                {
                        size_t body_done = c->tx_done > sizeof(c->tx_header) ? c->tx_done - sizeof(c->tx_header) : 0;

                        if (c->tx_size > body_done)
                                iov[n_iov++] = (struct iovec) {
                                        .iov_base = (uint8_t *) c->tx + body_done,
                                        .iov_len = c->tx_size - body_done,
                                };
                }
                k = writev(c->fd, iov, n_iov);
                if (k < 0) {
                        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                                return 0;
                        return -errno;
                }
                c->tx_done += (size_t) k;
        }
        return 1;
}

/* Reads the 4-byte length and the message. 1 when it is complete, 0 to wait, < 0 on error. */
static int conn_read(PushPullConn *c) {
        GossipNet *n = c->net;
        size_t budget = PUSH_PULL_READ_PER_WAKEUP;

        while (c->state == PUSH_PULL_READING_HEADER) {
                ssize_t k = read(c->fd, c->rx_header + c->rx_header_done, sizeof(c->rx_header) - c->rx_header_done);

                if (k < 0) {
                        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                                return 0;
                        return -errno;
                }
                if (k == 0)
                        return -ECONNRESET;
                c->rx_header_done += (size_t) k;
                if (c->rx_header_done < sizeof(c->rx_header))
                        continue;
                c->rx_size = (size_t) c->rx_header[0] << 24 | (size_t) c->rx_header[1] << 16 |
                             (size_t) c->rx_header[2] << 8 | (size_t) c->rx_header[3];
                if (c->rx_size == 0)
                        return -EBADMSG;
                if (c->rx_size > SWIM_PUSH_PULL_MAX) {
                        /* Refused unread. */
                        n->counters.push_pull_refused++;
                        return -EMSGSIZE;
                }
                c->state = PUSH_PULL_READING_BODY;
        }

        while (c->rx_done < c->rx_size) {
                ssize_t k;

                if (c->rx_done == c->rx_allocated) {
                        /* Grow with what arrives, not with what the peer announced. */
                        size_t want = MIN(c->rx_size, MAX(c->rx_allocated * 2, (size_t) PUSH_PULL_RX_CHUNK));
                        uint8_t *p;

                        if (n->rx_bytes + (want - c->rx_allocated) > GOSSIP_PUSH_PULL_RX_BUDGET) {
                                n->counters.push_pull_refused++;
                                return -ENOBUFS;
                        }
                        p = realloc(c->rx, want);
                        if (!p)
                                return -ENOMEM;
                        c->rx = p;
                        n->rx_bytes += want - c->rx_allocated;
                        c->rx_allocated = want;
                }
                if (budget == 0)
                        return 0;       /* the rest on the next wake-up */
                k = read(c->fd, c->rx + c->rx_done, MIN(c->rx_allocated - c->rx_done, budget));
                if (k < 0) {
                        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                                return 0;
                        return -errno;
                }
                if (k == 0)
                        return -ECONNRESET;
                c->rx_done += (size_t) k;
                budget -= (size_t) k;
        }
        return 1;
}

static void conn_set_tx(PushPullConn *c, void *data, size_t size) {
        c->tx = data;
        c->tx_size = size;
        c->tx_done = 0;
        c->tx_header[0] = (uint8_t) (size >> 24);
        c->tx_header[1] = (uint8_t) (size >> 16);
        c->tx_header[2] = (uint8_t) (size >> 8);
        c->tx_header[3] = (uint8_t) size;
}

/* One step of the exchange: < 0 failed, 0 waiting for the socket, 1 complete. */
static int conn_step(PushPullConn *c) {
        GossipNet *n = c->net;
        void *reply = NULL;
        size_t reply_size = 0;
        int r;

        if (c->state == PUSH_PULL_CONNECTING) {
                int error = 0;
                socklen_t len = sizeof(error);

                if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &len) < 0)
                        error = errno;
                if (error != 0)
                        return -error;
                c->state = PUSH_PULL_WRITING;
        }

        if (c->state == PUSH_PULL_WRITING) {
                r = conn_write(c);
                if (r <= 0)
                        return r < 0 ? r : conn_watch(c, EV_WRITE);
                c->tx = mfree(c->tx);
                if (!c->outgoing)
                        return 1;       /* the reply went out */
                c->state = PUSH_PULL_READING_HEADER;
                return conn_watch(c, EV_READ);
        }

        r = conn_read(c);
        if (r <= 0 || c->outgoing)
                return r;

        /* A whole request: the Manager answers it. */
        n->handlers.push_pull_request(&c->peer, c->rx, c->rx_done, &reply, &reply_size, n->userdata);
        n->rx_bytes -= c->rx_allocated;
        c->rx_allocated = 0;
        c->rx = mfree(c->rx);
        if (!reply)
                return 1;
        if (reply_size == 0 || reply_size > SWIM_PUSH_PULL_MAX) {
                free(reply);
                return -EMSGSIZE;
        }
        conn_set_tx(c, reply, reply_size);
        c->state = PUSH_PULL_WRITING;
        r = conn_write(c);
        if (r != 0)
                return r;
        return conn_watch(c, EV_WRITE);
}

static void conn_io_cb(evutil_socket_t fd, short what, void *userdata) {
        PushPullConn *c = userdata;
        int r;

        r = conn_step(c);
        if (r != 0)
                conn_finish(c, MIN(r, 0));
}

static void tcp_accept_cb(evutil_socket_t fd, short what, void *userdata) {
        GossipNet *n = userdata;

        for (int i = 0; i < ACCEPT_PER_WAKEUP; i++) {
                struct sockaddr_storage sa;
                socklen_t len = sizeof(sa);
                PushPullConn *c;
                SwimAddr peer;
                int cfd;

                cfd = accept4(n->tcp_fd, (struct sockaddr *) &sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (cfd < 0) {
                        if (!IN_SET(errno, EAGAIN, EWOULDBLOCK, EINTR, ECONNABORTED))
                                log_debug_errno(-errno, "Failed to accept a push-pull connection: %m");
                        return;
                }
                if (n->n_in >= GOSSIP_PUSH_PULL_IN_MAX || addr_from_sockaddr((struct sockaddr *) &sa, len, &peer) < 0) {
                        n->counters.push_pull_refused++;
                        (void) close(cfd);
                        continue;
                }
                if (conn_new(n, cfd, false, &peer, &c) < 0) {
                        n->counters.push_pull_refused++;
                        continue;
                }
                c->state = PUSH_PULL_READING_HEADER;
                if (conn_watch(c, EV_READ) < 0)
                        conn_finish(c, -EIO);
        }
}

int gossip_net_push_pull(GossipNet *n, const SwimAddr *to, void *request, size_t size) {
        _cleanup_free_ void *req = request;
        struct sockaddr_storage sa;
        _cleanup_close_ int fd = -EBADF;
        PushPullConn *c;
        socklen_t len;
        int r;

        if (n->n_out >= GOSSIP_PUSH_PULL_OUT_MAX)
                return -EBUSY;
        if (size == 0 || size > SWIM_PUSH_PULL_MAX)
                return -EMSGSIZE;

        swim_addr_to_sockaddr(to, &sa, &len);
        fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, len) < 0 && errno != EINPROGRESS) {
                n->counters.push_pull_failed++;
                return -errno;
        }

        r = conn_new(n, TAKE_FD(fd), true, to, &c);
        if (r < 0)
                return r;
        conn_set_tx(c, TAKE_PTR(req), size);
        c->state = PUSH_PULL_CONNECTING;
        if (conn_watch(c, EV_WRITE) < 0) {
                conn_free(c);
                return -EIO;
        }
        return 0;
}

size_t gossip_net_n_outgoing(GossipNet *n) {
        return n->n_out;
}

size_t gossip_net_n_incoming(GossipNet *n) {
        return n->n_in;
}

bool gossip_net_push_pull_running(GossipNet *n, const SwimAddr *to) {
        for (PushPullConn *c = n->conns; c; c = c->next)
                if (c->outgoing && swim_addr_equal(&c->peer, to))
                        return true;
        return false;
}

const GossipNetCounters *gossip_net_counters(GossipNet *n) {
        return &n->counters;
}

/* --- setup --- */

int gossip_net_new(struct event_base *base, int udp_fd, int tcp_fd, const GossipNetHandlers *handlers,
                   void *userdata, GossipNet **ret) {
        _cleanup_close_ int udp = udp_fd, tcp = tcp_fd;
        _cleanup_(gossip_net_freep) GossipNet *n = NULL;
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);
        int r, rcvbuf = 1 << 20;

        if (udp < 0)
                return -EBADF;
        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        n->base = base;
        n->handlers = *handlers;
        n->userdata = userdata;
        n->udp_fd = n->tcp_fd = -EBADF;
        n->rx_buffers = calloc(GOSSIP_NET_RECV_BATCH, sizeof(*n->rx_buffers));
        if (!n->rx_buffers)
                return -ENOMEM;

        r = fd_nonblock(udp);
        if (r < 0)
                return r;
        if (getsockname(udp, (struct sockaddr *) &sa, &len) < 0)
                return -errno;
        n->udp_family = sa.ss_family;
        /* Bursts (a push-pull's worth of joins, many members probing) should not be dropped by a
         * small default buffer; the kernel caps this at net.core.rmem_max. */
        (void) setsockopt(udp, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
        n->udp_fd = TAKE_FD(udp);
        n->udp_event = event_new(base, n->udp_fd, EV_READ | EV_PERSIST, udp_read_cb, n);
        if (!n->udp_event || event_add(n->udp_event, NULL) < 0)
                return -ENOMEM;

        if (tcp >= 0) {
                r = fd_nonblock(tcp);
                if (r < 0)
                        return r;
                n->tcp_fd = TAKE_FD(tcp);
                n->tcp_event = event_new(base, n->tcp_fd, EV_READ | EV_PERSIST, tcp_accept_cb, n);
                if (!n->tcp_event || event_add(n->tcp_event, NULL) < 0)
                        return -ENOMEM;
        }

        *ret = TAKE_PTR(n);
        return 0;
}

GossipNet *gossip_net_free(GossipNet *n) {
        if (!n)
                return NULL;
        while (n->conns)
                conn_free(n->conns);
        if (n->udp_event)
                event_free(n->udp_event);
        if (n->tcp_event)
                event_free(n->tcp_event);
        if (n->udp_fd >= 0)
                (void) close(n->udp_fd);
        if (n->tcp_fd >= 0)
                (void) close(n->tcp_fd);
        free(n->rx_buffers);
        free(n);
        return NULL;
}

static int bind_one(int type, const struct sockaddr_storage *sa, socklen_t len, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        int one = 1;

        fd = socket(sa->ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (type == SOCK_STREAM)
                (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, (const struct sockaddr *) sa, len) < 0)
                return -errno;
        if (type == SOCK_STREAM && listen(fd, SOMAXCONN) < 0)
                return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static void sockaddr_set_port(struct sockaddr_storage *sa, uint16_t port) {
        if (sa->ss_family == AF_INET)
                ((struct sockaddr_in *) sa)->sin_port = htons(port);
        else if (sa->ss_family == AF_INET6)
                ((struct sockaddr_in6 *) sa)->sin6_port = htons(port);
}

int gossip_net_bind(const char *addr_port, int *ret_udp, int *ret_tcp) {
        struct sockaddr_storage sa;
        socklen_t len;
        bool any_port;
        int r;

        r = sockaddr_parse(addr_port, &sa, &len);
        if (r < 0)
                return r;
        if (!IN_SET(sa.ss_family, AF_INET, AF_INET6))
                return -EAFNOSUPPORT;
        any_port = (sa.ss_family == AF_INET ? ((struct sockaddr_in *) &sa)->sin_port
                                            : ((struct sockaddr_in6 *) &sa)->sin6_port) == 0;

        /* With port 0 the UDP number may be taken for TCP: try a few numbers. */
        for (int attempt = 0; attempt < (any_port ? 16 : 1); attempt++) {
                _cleanup_close_ int udp = -EBADF, tcp = -EBADF;
                SwimAddr bound;

                if (any_port)
                        sockaddr_set_port(&sa, 0);
                r = bind_one(SOCK_DGRAM, &sa, len, &udp);
                if (r < 0)
                        return r;
                r = gossip_net_local_addr(udp, &bound);
                if (r < 0)
                        return r;
                sockaddr_set_port(&sa, bound.port);
                r = bind_one(SOCK_STREAM, &sa, len, &tcp);
                if (r == -EADDRINUSE && any_port)
                        continue;
                if (r < 0)
                        return r;
                *ret_udp = TAKE_FD(udp);
                *ret_tcp = TAKE_FD(tcp);
                return 0;
        }
        return -EADDRINUSE;
}

int gossip_net_local_addr(int fd, SwimAddr *ret) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);

        if (getsockname(fd, (struct sockaddr *) &sa, &len) < 0)
                return -errno;
        return addr_from_sockaddr((struct sockaddr *) &sa, len, ret);
}

int gossip_net_host_addr(uint16_t port, SwimAddr *ret) {
        struct ifaddrs *ifs = NULL;
        int r = -EADDRNOTAVAIL;

        if (getifaddrs(&ifs) < 0)
                return -errno;
        /* IPv4 first, then IPv6 (global scope: a link-local one needs an interface to be useful). */
        for (int family_pass = 0; family_pass < 2 && r < 0; family_pass++) {
                int family = family_pass == 0 ? AF_INET : AF_INET6;

                for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
                        SwimAddr a;

                        if (!i->ifa_addr || i->ifa_addr->sa_family != family)
                                continue;
                        if ((i->ifa_flags & IFF_LOOPBACK) || !(i->ifa_flags & IFF_UP))
                                continue;
                        if (family == AF_INET6) {
                                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) i->ifa_addr;

                                if (IN6_IS_ADDR_LINKLOCAL(&in6->sin6_addr) || IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
                                        continue;
                        }
                        if (swim_addr_from_sockaddr(i->ifa_addr,
                                                    family == AF_INET ? sizeof(struct sockaddr_in)
                                                                      : sizeof(struct sockaddr_in6),
                                                    &a) < 0)
                                continue;
                        a.port = port;
                        *ret = a;
                        r = 0;
                        break;
                }
        }
        freeifaddrs(ifs);
        return r;
}
