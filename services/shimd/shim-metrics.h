/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Prometheus text exposition (format 0.0.4) from plain structs: families, samples, fixed-bucket
 * histograms, label escaping; the endpoint classes, the bounded request table, routing decisions
 * by policy and reason, and the per-node counters. Pure. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "route-table.h"

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* A text being written: grows up to max bytes, then every write fails (-ENOBUFS) and so does
 * the result; the first error sticks. */
typedef struct MetricsText {
        char *buf;
        size_t len, allocated, max;
        int error;
} MetricsText;

void metrics_text_init(MetricsText *t, size_t max);
void metrics_text_done(MetricsText *t);

typedef enum MetricType {
        METRIC_COUNTER,
        METRIC_GAUGE,
        METRIC_HISTOGRAM,
} MetricType;

typedef struct MetricLabel {
        const char *name;
        const char *value;
} MetricLabel;

/* The # HELP and # TYPE lines of a family (HELP text escaped). */
int metrics_family(MetricsText *t, const char *name, MetricType type, const char *help);
/* One sample: name{labels} value. n_labels may be 0 (labels NULL). */
int metrics_sample(MetricsText *t, const char *name, const MetricLabel *labels, size_t n_labels, double value);
int metrics_sample_u64(MetricsText *t, const char *name, const MetricLabel *labels, size_t n_labels, uint64_t value);

/* Latency buckets in seconds, suited to LLM calls (a cached answer in ms, a long generation in
 * minutes); +Inf is added when written. */
#define METRICS_BUCKETS 16
extern const double metrics_latency_buckets[METRICS_BUCKETS];

typedef struct MetricsHistogram {
        uint64_t buckets[METRICS_BUCKETS];      /* observations <= bound i and > bound i-1 */
        uint64_t count;
        double sum;
} MetricsHistogram;

void metrics_histogram_observe(MetricsHistogram *h, double seconds);
/* name_bucket{labels,le="..."} (cumulative, +Inf last), name_sum, name_count. At most 7 labels. */
int metrics_histogram(MetricsText *t, const char *name, const MetricLabel *labels, size_t n_labels,
                      const MetricsHistogram *h);

/* The endpoint label: a fixed set of path classes, never the raw path. */
typedef enum MetricsEndpoint {
        METRICS_EP_GENERATE,
        METRICS_EP_CHAT,
        METRICS_EP_EMBED,
        METRICS_EP_EMBEDDINGS,
        METRICS_EP_SHOW,
        METRICS_EP_TAGS,
        METRICS_EP_PS,
        METRICS_EP_VERSION,
        METRICS_EP_MANAGE,      /* pull, push, create, copy, delete, blobs */
        METRICS_EP_V1_CHAT,
        METRICS_EP_V1_COMPLETIONS,
        METRICS_EP_V1_EMBEDDINGS,
        METRICS_EP_V1_MODELS,
        METRICS_EP_ROOT,
        METRICS_EP_OTHER,
        _METRICS_EP_MAX,
} MetricsEndpoint;

MetricsEndpoint metrics_endpoint(const char *uri);
const char *metrics_endpoint_to_string(MetricsEndpoint e);

/* Requests by (listener, endpoint, model, code, node), with the tokens they generated, in a
 * table of at most METRICS_REQUESTS_MAX series; once full, requests of new keys are counted in
 * overflowed (a series never changes its labels). Model and node names longer than the fields
 * are "other"; the caller maps unknown models to "other" before. */
#define METRICS_REQUESTS_MAX 512
#define METRICS_NAME_MAX 128

typedef struct MetricsRequestKey {
        bool mesh;              /* came in on the mesh listener */
        MetricsEndpoint endpoint;
        char model[METRICS_NAME_MAX];   /* "" when none */
        unsigned code;
        char node[METRICS_NAME_MAX];    /* the serving node's name, "" when none answered */
} MetricsRequestKey;

typedef struct MetricsRequestSeries {
        MetricsRequestKey key;
        uint64_t requests;
        uint64_t tokens;
} MetricsRequestSeries;

typedef struct MetricsRequests {
        MetricsRequestSeries series[METRICS_REQUESTS_MAX];
        size_t n_series;
        uint64_t overflowed;    /* requests not in series because the table was full */
        uint64_t overflowed_tokens;
        MetricsHistogram ttfb[2][_METRICS_EP_MAX];      /* [mesh][endpoint] */
        MetricsHistogram duration[2][_METRICS_EP_MAX];
} MetricsRequests;

/* model and node may be NULL or "". ttfb_seconds < 0: no first byte. */
void metrics_requests_add(MetricsRequests *r, bool mesh, MetricsEndpoint endpoint, const char *model,
                          unsigned code, const char *node, uint64_t tokens, double ttfb_seconds,
                          double duration_seconds);

/* Routing decisions: route_table_pick_for()'s reasons, which are static strings, as a fixed set
 * of labels; a reason this list does not know is "other". */
typedef enum MetricsPickReason {
        METRICS_PICK_GRAVITY_HIT,       /* gravity: the node holding the context */
        METRICS_PICK_RENDEZVOUS,        /* gravity: no holder known, rendezvous on the context */
        METRICS_PICK_OVERLOADED,        /* gravity: the holder was past its bounded load, rendezvous */
        METRICS_PICK_NO_CONTEXT,        /* gravity without a context: least loaded */
        METRICS_PICK_ROUND_ROBIN,
        METRICS_PICK_LEAST_LOADED,
        METRICS_PICK_FASTER_OF_TWO,     /* latency */
        METRICS_PICK_LOCAL,             /* local-first: this node */
        METRICS_PICK_LOCAL_BUSY,        /* local-first: this node busy or without the model */
        METRICS_PICK_ONLY_NODE,         /* one candidate: no policy involved */
        METRICS_PICK_ALL_COOLING,       /* every candidate cools down: the first to recover */
        METRICS_PICK_NO_NODE,           /* no live node serves the model: nothing picked */
        METRICS_PICK_OTHER,
        _METRICS_PICK_MAX,
} MetricsPickReason;

MetricsPickReason metrics_pick_reason(const char *reason);
const char *metrics_pick_reason_to_string(MetricsPickReason r);

typedef struct MetricsPicks {
        uint64_t n[_ROUTE_POLICY_MAX][_METRICS_PICK_MAX];
} MetricsPicks;

/* One pick under policy (out of range: not counted) for the reason it gave (NULL: "other"). */
void metrics_picks_add(MetricsPicks *p, RoutePolicy policy, const char *reason);
/* mycelia_route_picks_total{policy,reason}: for every policy the reasons it can give (0 before
 * the first), and any other pair that was counted. */
int metrics_picks_render(MetricsText *t, const MetricsPicks *p);

/* Per-node counters of the shim, keyed by node id. Only nodes of the routing table are counted,
 * so the label set is the table's (at most ROUTE_MAX_NODES); when the entries are all taken,
 * those of nodes that left the table are reused (their counts start again from 0). */
typedef enum MetricsNodeEvent {
        METRICS_NODE_RETRY,             /* attempt repeated there on a fresh connection */
        METRICS_NODE_FAILOVER_FAILURE,  /* request moved away from it: connect, reset, node lost */
        METRICS_NODE_FAILOVER_STATUS,   /* request moved away from it: it answered 5xx */
        _METRICS_NODE_EVENT_MAX,
} MetricsNodeEvent;

typedef struct MetricsNodeCount {
        char id[NODE_ID_LEN + 1];
        uint64_t n[_METRICS_NODE_EVENT_MAX];
} MetricsNodeCount;

typedef struct MetricsNodes {
        MetricsNodeCount *v;
        size_t n, allocated;
} MetricsNodes;

/* 0, or -ENOENT (not a node of the table: not counted), -ENOMEM. */
int metrics_nodes_add(MetricsNodes *n, const RouteTable *table, const char *id, MetricsNodeEvent e);
MetricsNodeCount *metrics_nodes_find(const MetricsNodes *n, const char *id);
void metrics_nodes_done(MetricsNodes *n);

/* A count per node id read from another daemon (routerd's Cooldowns). */
typedef struct MetricsIdCount {
        char id[NODE_ID_LEN + 1];
        uint64_t count;
} MetricsIdCount;

/* For every node of table, labels node (its name) and node_id: mycelia_route_node_retries_total,
 * mycelia_route_node_failovers_total{reason="failure"|"status"} (moved away from the node), and,
 * when cooldowns is not NULL (routerd answered), mycelia_route_node_cooldowns_total (0 for a node
 * it did not list). */
int metrics_nodes_render(MetricsText *t, const RouteTable *table, const MetricsNodes *n,
                         const MetricsIdCount *cooldowns, size_t n_cooldowns);
