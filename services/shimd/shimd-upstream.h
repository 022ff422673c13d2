/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Connections to upstreams and the pool of idle keep-alive ones: a connection is taken for one
 * request and put back after a complete response; idle ones are read, so a close is noticed. */
#pragma once

#include <event2/event.h>

#include "http-url.h"
#include "shimd-manager.h"

typedef struct UpstreamConn UpstreamConn;

/* One HTTP/1.1 connection to an upstream, on a plain bufferevent: serves one ProxyRequest at
 * a time, or waits idle in the pool. */
struct UpstreamConn {
        UpstreamPool *pool;
        struct bufferevent *bev;
        ProxyRequest *p;        /* NULL while idle */
        char hostport[sizeof(((HttpBaseUrl *) NULL)->hostport)];
};

int upstream_pool_new(struct event_base *base, unsigned max_idle_per_upstream, UpstreamPool **ret);
UpstreamPool *upstream_pool_free(UpstreamPool *pool);

/* A new connection to url, connecting (a numeric host is converted without a lookup); over TLS
 * when tls is given (a peer's mesh listener), BEV_EVENT_CONNECTED then after the handshake. The
 * pool keeps connections by host:port, and a host:port is either a peer's or an Ollama. */
int upstream_conn_new(UpstreamPool *pool, const HttpBaseUrl *url, MeshTls *tls, UpstreamConn **ret);
/* Closes the connection; safe inside its bufferevent's own callbacks. */
void upstream_conn_free(UpstreamConn *c);

/* An idle connection to hostport, most recently used first; NULL when there is none. */
UpstreamConn *upstream_pool_take(UpstreamPool *pool, const char *hostport);
/* Keeps c for another request, or closes it when the pool for its upstream is full. */
void upstream_pool_put(UpstreamPool *pool, UpstreamConn *c);
/* Closes every idle connection to hostport (a peer that left: its sockets may be half dead). */
void upstream_pool_drop(UpstreamPool *pool, const char *hostport);

/* A buffer the proxy decodes response bodies into on their way to a client (one per pool:
 * one loop, one request decoded at a time). */
struct evbuffer *upstream_pool_scratch(UpstreamPool *pool);
