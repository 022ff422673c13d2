/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Prometheus text exposition (format 0.0.4) from plain structs: families, samples, fixed-bucket
 * histograms, label escaping; the endpoint classes and the bounded request table. Pure. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
