/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Connections to upstreams (this node's Ollama, peers' mesh listeners): our own HTTP/1.1 client
 * on plain bufferevents (TLS ones to peers), and the pool of idle keep-alive ones per
 * "host:port". */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <stdio.h>

#include "route-table.h"
#include "shimd-upstream.h"

typedef struct PoolEntry {
        char *hostport;
        UpstreamConn **idle;
        unsigned n_idle;
} PoolEntry;

struct UpstreamPool {
        struct event_base *base;
        unsigned max_idle;
        PoolEntry *entries;
        size_t n_entries;
        struct evbuffer *scratch;       /* decoded body bytes on their way to a client */
};

int upstream_pool_new(struct event_base *base, unsigned max_idle_per_upstream, UpstreamPool **ret) {
        UpstreamPool *pool;

        pool = calloc(1, sizeof(*pool));
        if (!pool)
                return -ENOMEM;
        pool->base = base;
        pool->max_idle = max_idle_per_upstream;
        pool->scratch = evbuffer_new();
        if (!pool->scratch) {
                free(pool);
                return -ENOMEM;
        }
        *ret = pool;
        return 0;
}

/* Closes the connection. Safe inside the bufferevent's own callbacks: libevent holds a
 * reference on it while it runs them and finalizes it afterwards. */
void upstream_conn_free(UpstreamConn *c) {
        if (!c)
                return;
        bufferevent_free(c->bev);
        free(c);
}

UpstreamPool *upstream_pool_free(UpstreamPool *pool) {
        if (!pool)
                return NULL;
        for (size_t i = 0; i < pool->n_entries; i++) {
                for (unsigned j = 0; j < pool->entries[i].n_idle; j++)
                        upstream_conn_free(pool->entries[i].idle[j]);
                free(pool->entries[i].idle);
                free(pool->entries[i].hostport);
        }
        free(pool->entries);
        evbuffer_free(pool->scratch);
        free(pool);
        return NULL;
}

static PoolEntry *pool_entry(UpstreamPool *pool, const char *hostport, bool create) {
        PoolEntry *e;

        for (size_t i = 0; i < pool->n_entries; i++)
                if (streq(pool->entries[i].hostport, hostport))
                        return &pool->entries[i];
        /* Upstreams come from the routing table, which is bounded (ROUTE_MAX_NODES). */
        if (!create || pool->n_entries >= ROUTE_MAX_NODES + 1)
                return NULL;
        e = realloc(pool->entries, (pool->n_entries + 1) * sizeof(PoolEntry));
        if (!e)
                return NULL;
        pool->entries = e;
        e = &pool->entries[pool->n_entries];
        *e = (PoolEntry) { .hostport = strdup(hostport), .idle = calloc(pool->max_idle ?: 1, sizeof(void *)) };
        if (!e->hostport || !e->idle) {
                free(e->hostport);
                free(e->idle);
                return NULL;
        }
        pool->n_entries++;
        return e;
}

/* An idle connection said something (EOF, reset, stray bytes): it cannot carry a request any
 * more. */
static void upstream_idle_drop(UpstreamConn *c) {
        PoolEntry *e = pool_entry(c->pool, c->hostport, false);

        for (unsigned i = 0; e && i < e->n_idle; i++)
                if (e->idle[i] == c) {
                        memmove(&e->idle[i], &e->idle[i + 1], (e->n_idle - i - 1) * sizeof(void *));
                        e->n_idle--;
                        break;
                }
        upstream_conn_free(c);
}

static void upstream_idle_read_cb(struct bufferevent *bev, void *userdata) {
        upstream_idle_drop(userdata);
}

static void upstream_idle_event_cb(struct bufferevent *bev, short what, void *userdata) {
        upstream_idle_drop(userdata);
}

UpstreamConn *upstream_pool_take(UpstreamPool *pool, const char *hostport) {
        PoolEntry *e = pool_entry(pool, hostport, false);

        if (!e || e->n_idle == 0)
                return NULL;
        /* Most recently used first: the likeliest to still be open. */
        return e->idle[--e->n_idle];
}

/* Closes every idle connection to hostport (a peer that left: its sockets may be half dead). */
void upstream_pool_drop(UpstreamPool *pool, const char *hostport) {
        PoolEntry *e = pool_entry(pool, hostport, false);

        if (!e)
                return;
        for (unsigned i = 0; i < e->n_idle; i++)
                upstream_conn_free(e->idle[i]);
        e->n_idle = 0;
}

/* Keeps c for another request (reading it, so that a close is noticed at once), or closes it
 * when the pool is full. */
void upstream_pool_put(UpstreamPool *pool, UpstreamConn *c) {
        PoolEntry *e = pool_entry(pool, c->hostport, true);

        c->p = NULL;
        if (!e || e->n_idle >= pool->max_idle) {
                upstream_conn_free(c);
                return;
        }
        bufferevent_setcb(c->bev, upstream_idle_read_cb, NULL, upstream_idle_event_cb, c);
        bufferevent_set_timeouts(c->bev, NULL, NULL);
        bufferevent_disable(c->bev, EV_WRITE);
        bufferevent_enable(c->bev, EV_READ);
        e->idle[e->n_idle++] = c;
}

/* A new connection to url, connecting. A numeric host (every peer address from gossip, and
 * the usual 127.0.0.1 upstream) is converted without any lookup; only a configured host name
 * (the local upstream, "localhost" say) goes through the blocking resolver. */
int upstream_conn_new(UpstreamPool *pool, const HttpBaseUrl *url, MeshTls *tls, UpstreamConn **ret) {
        struct evutil_addrinfo hints = {
                .ai_family = AF_UNSPEC,
                .ai_socktype = SOCK_STREAM,
                .ai_protocol = IPPROTO_TCP,
                .ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV,
        }, *ai = NULL;
        char port[8];
        UpstreamConn *c;
        int r;

        snprintf(port, sizeof(port), "%u", url->port);
        r = evutil_getaddrinfo(url->host, port, &hints, &ai);
        if (r == EVUTIL_EAI_NONAME) {
                hints.ai_flags = EVUTIL_AI_NUMERICSERV;
                r = evutil_getaddrinfo(url->host, port, &hints, &ai);
        }
        if (r != 0 || !ai)
                return -EHOSTUNREACH;
        c = calloc(1, sizeof(*c));
        if (!c) {
                evutil_freeaddrinfo(ai);
                return -ENOMEM;
        }
        c->pool = pool;
        snprintf(c->hostport, sizeof(c->hostport), "%s", url->hostport);
        c->bev = tls ? mesh_tls_bev_connecting(tls, pool->base) : bufferevent_socket_new(pool->base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (!c->bev) {
                evutil_freeaddrinfo(ai);
                free(c);
                return -ENOMEM;
        }
        /* A refused connect on loopback is reported from the loop, not from here. */
        r = bufferevent_socket_connect(c->bev, ai->ai_addr, (int) ai->ai_addrlen);
        evutil_freeaddrinfo(ai);
        if (r < 0) {
                upstream_conn_free(c);
                return -ECONNREFUSED;
        }
        *ret = c;
        return 0;
}

struct evbuffer *upstream_pool_scratch(UpstreamPool *pool) {
        return pool->scratch;
}
