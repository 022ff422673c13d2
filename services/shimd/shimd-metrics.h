/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* GET /metrics: gathers this node's view (the shim's counters and requests, the router cache,
 * the other daemons' properties and pids read at scrape time, /proc) and answers in Prometheus'
 * text format (shim-metrics.c writes it). docs/metrics.md. */
#pragma once

#include "shim-metrics.h"
#include "shimd-manager.h"

/* Scrapes answered at once; more get 503 (each one holds a few bus calls and a timer). */
#define METRICS_SCRAPES_MAX 8
/* How long a scrape waits for the other daemons (and the bus, and systemd); who has not
 * answered by then is left out. */
#define METRICS_BUS_TIMEOUT_USEC (1 * USEC_PER_SEC)
/* The largest answer; past it the scrape fails with 500 rather than grow. */
#define METRICS_TEXT_MAX (4U << 20)

int metrics_new(ShimMetrics **ret);
/* Cancels the scrapes in flight (their connections are closed by the caller's evhttp_free()). */
ShimMetrics *metrics_free(Manager *m, ShimMetrics *metrics);

/* A relayed request ended (shimd-proxy.c's proxy_free()). */
typedef struct MetricsRequestEnd {
        bool mesh;
        const char *uri;
        const char *model;      /* NULL when not routed by model */
        int status;
        const char *served_by;  /* node name, "" when no node answered */
        uint64_t tokens;
        usec_t t_start;
        usec_t t_first_byte;    /* 0: none */
} MetricsRequestEnd;

void metrics_request_end(Manager *m, const MetricsRequestEnd *e);

/* A retry on node_id, or a request moved away from it (shimd-proxy.c); node_id "" or not in the
 * routing table: not counted. */
void metrics_node_event(Manager *m, const char *node_id, MetricsNodeEvent e);

/* The body's "model" (malloc()ed) or NULL: for the model label of requests on the mesh listener,
 * which serves them without routing and so never reads it otherwise. */
char *metrics_request_model(struct evhttp_request *req);

/* GET or HEAD /metrics: answered (asynchronously), returns true; any other request: false. The
 * caller has checked the mesh authenticator or the bearer token already. */
bool metrics_handle(Manager *m, struct evhttp_request *req, const char *uri);

