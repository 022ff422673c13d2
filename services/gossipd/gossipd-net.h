/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The sockets of mycelia-gossipd: SWIM datagrams over UDP (batched receive, never-blocking
 * send) and the TCP push-pull exchanges (server and client), all bounded and on libevent. */
#pragma once

#include <event2/event.h>

#include "swim.h"

/* Datagrams read per recvmmsg() call, and at most per wake-up of the loop: a flood cannot
 * starve the timers, the bus or the push-pull connections. */
#define GOSSIP_NET_RECV_BATCH 16U
#define GOSSIP_NET_RECV_PER_WAKEUP 64U
/* Push-pull connections at once; more incoming ones are closed at accept. */
#define GOSSIP_PUSH_PULL_IN_MAX 16U
#define GOSSIP_PUSH_PULL_OUT_MAX 4U
/* A push-pull exchange (connect, request, reply) must end within this. */
#define GOSSIP_PUSH_PULL_TIMEOUT_USEC (5 * USEC_PER_SEC)
/* Bytes all push-pull connections together may hold of messages being received. */
#define GOSSIP_PUSH_PULL_RX_BUDGET (64U << 20)

typedef struct GossipNet GossipNet;

typedef struct GossipNetCounters {
        uint64_t send_errors;           /* sendto() failed (other than a full buffer) */
        uint64_t send_dropped;          /* the socket buffer was full: dropped, as UDP may */
        uint64_t receive_errors;
        uint64_t datagrams_truncated;   /* larger than SWIM_DATAGRAM_MAX */
        uint64_t push_pull_failed;      /* an exchange that did not complete (either side) */
        uint64_t push_pull_refused;     /* over the connection, size or memory limits */
} GossipNetCounters;

typedef struct GossipNetHandlers {
        /* One datagram; data is valid during the call. */
        void (*datagram)(const SwimAddr *from, const void *data, size_t size, void *userdata);
        /* After the datagrams of one wake-up. */
        void (*datagrams_done)(void *userdata);
        /* A whole request arrived on an incoming connection. Set *ret_reply (malloc()ed, taken
         * over) to answer it; leave it NULL to close without an answer. */
        void (*push_pull_request)(const SwimAddr *from, const void *data, size_t size, void **ret_reply,
                                  size_t *ret_reply_size, void *userdata);
        /* An outgoing exchange ended: error < 0, or the reply. The slot is free again. */
        void (*push_pull_done)(const SwimAddr *to, int error, const void *data, size_t size, void *userdata);
} GossipNetHandlers;

/* Takes both fds (tcp_fd may be -EBADF: no push-pull server). */
int gossip_net_new(struct event_base *base, int udp_fd, int tcp_fd, const GossipNetHandlers *handlers,
                   void *userdata, GossipNet **ret);
GossipNet *gossip_net_free(GossipNet *n);
DEFINE_TRIVIAL_CLEANUP_FUNC(GossipNet *, gossip_net_free);

/* Sends one datagram without blocking; a full socket buffer drops it (counted). */
int gossip_net_send(GossipNet *n, const SwimAddr *to, const void *data, size_t size);

/* Starts a push-pull with to, sending request (taken over, freed in every case). -EBUSY when
 * GOSSIP_PUSH_PULL_OUT_MAX exchanges are running, -EMSGSIZE when it is too big. */
int gossip_net_push_pull(GossipNet *n, const SwimAddr *to, void *request, size_t size);
size_t gossip_net_n_outgoing(GossipNet *n);
size_t gossip_net_n_incoming(GossipNet *n);
bool gossip_net_push_pull_running(GossipNet *n, const SwimAddr *to);

const GossipNetCounters *gossip_net_counters(GossipNet *n);

/* Binds UDP and TCP (listening) on the same "ADDR:PORT"; with port 0 UDP picks the number and
 * TCP takes the same one (retried a few times when that number is taken for TCP). */
int gossip_net_bind(const char *addr_port, int *ret_udp, int *ret_tcp);
/* Where an fd is bound, as a SwimAddr (IPv4-mapped IPv6 addresses become IPv4). */
int gossip_net_local_addr(int fd, SwimAddr *ret);
/* True for 0.0.0.0 and ::. */
bool gossip_addr_is_unspecified(const SwimAddr *a);
/* The first non-loopback address of the host (IPv4 first), with the given port. -EADDRNOTAVAIL
 * when there is none. */
int gossip_net_host_addr(uint16_t port, SwimAddr *ret);
