/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Prometheus text exposition (format 0.0.4) from plain structs, the endpoint classes, the
 * bounded request table, routing decisions and per-node counters behind GET /metrics
 * (shimd-metrics.c gathers, this file writes). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "shim-metrics.h"
#include "shim-request.h"

const double metrics_latency_buckets[METRICS_BUCKETS] = {
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 90, 120,
};

void metrics_text_init(MetricsText *t, size_t max) {
        *t = (MetricsText) { .max = max };
}

void metrics_text_done(MetricsText *t) {
        free(t->buf);
        *t = (MetricsText) {};
}

static int text_reserve(MetricsText *t, size_t n) {
        size_t want;
        char *b;

        if (t->error < 0)
                return t->error;
        if (n > t->max - MIN(t->len, t->max) || t->len + n + 1 > t->max) {
                t->error = -ENOBUFS;
                return t->error;
        }
        want = t->len + n + 1;
        if (want <= t->allocated)
                return 0;
        want = MIN(MAX(want, t->allocated * 2), t->max);
        b = realloc(t->buf, want);
        if (!b) {
                t->error = -ENOMEM;
                return t->error;
        }
        t->buf = b;
        t->allocated = want;
        return 0;
}

static int text_add(MetricsText *t, const char *s, size_t n) {
        int r = text_reserve(t, n);

        if (r < 0)
                return r;
        memcpy(t->buf + t->len, s, n);
        t->len += n;
        t->buf[t->len] = '\0';
        return 0;
}

static int text_puts(MetricsText *t, const char *s) {
        return text_add(t, s, strlen(s));
}

/* Label values escape backslash, double quote and newline; HELP text backslash and newline. */
static int text_escaped(MetricsText *t, const char *s, bool quote) {
        int r = 0;

        for (; *s && r >= 0; s++)
                if (*s == '\\')
                        r = text_add(t, "\\\\", 2);
                else if (*s == '\n')
                        r = text_add(t, "\\n", 2);
                else if (*s == '"' && quote)
                        r = text_add(t, "\\\"", 2);
                else
                        r = text_add(t, s, 1);
        return r < 0 ? r : t->error;
}

static const char *type_name(MetricType type) {
        switch (type) {
        case METRIC_COUNTER: return "counter";
        case METRIC_GAUGE: return "gauge";
        default: return "histogram";
        }
}

int metrics_family(MetricsText *t, const char *name, MetricType type, const char *help) {
        (void) text_puts(t, "# HELP ");
        (void) text_puts(t, name);
        (void) text_puts(t, " ");
        (void) text_escaped(t, help, false);
        (void) text_puts(t, "\n# TYPE ");
        (void) text_puts(t, name);
        (void) text_puts(t, " ");
        (void) text_puts(t, type_name(type));
        return text_puts(t, "\n");
}

static int sample_head(MetricsText *t, const char *name, const MetricLabel *labels, size_t n_labels) {
        (void) text_puts(t, name);
        for (size_t i = 0; i < n_labels; i++) {
                (void) text_puts(t, i == 0 ? "{" : ",");
                (void) text_puts(t, labels[i].name);
                (void) text_puts(t, "=\"");
                (void) text_escaped(t, labels[i].value ?: "", true);
                (void) text_puts(t, "\"");
        }
        if (n_labels > 0)
                (void) text_puts(t, "}");
        return text_puts(t, " ");
}

static void format_double(double v, char *buf, size_t size) {
        if (isnan(v))
                snprintf(buf, size, "NaN");
        else if (isinf(v))
                snprintf(buf, size, v > 0 ? "+Inf" : "-Inf");
        else
                snprintf(buf, size, "%.15g", v);
}

int metrics_sample(MetricsText *t, const char *name, const MetricLabel *labels, size_t n_labels, double value) {
        char v[64];

        format_double(value, v, sizeof(v));
        (void) sample_head(t, name, labels, n_labels);
        (void) text_puts(t, v);
        return text_puts(t, "\n");
}

int metrics_sample_u64(MetricsText *t, const char *name, const MetricLabel *labels, size_t n_labels, uint64_t value) {
        char v[32];

        snprintf(v, sizeof(v), "%" PRIu64, value);
        (void) sample_head(t, name, labels, n_labels);
        (void) text_puts(t, v);
        return text_puts(t, "\n");
}

void metrics_histogram_observe(MetricsHistogram *h, double seconds) {
        if (isnan(seconds) || seconds < 0)
                seconds = 0;
        for (size_t i = 0; i < METRICS_BUCKETS; i++)
                if (seconds <= metrics_latency_buckets[i]) {
                        h->buckets[i]++;
                        break;
                }
        h->count++;
        h->sum += seconds;
}

#define HISTOGRAM_LABELS_MAX 7

int metrics_histogram(MetricsText *t, const char *name, const MetricLabel *labels, size_t n_labels,
                      const MetricsHistogram *h) {
        MetricLabel l[HISTOGRAM_LABELS_MAX + 1];
        char sample[256], le[32];
        uint64_t cumulative = 0;

        if (n_labels > HISTOGRAM_LABELS_MAX || strlen(name) > sizeof(sample) - 16)
                return -EINVAL;
        memcpy(l, labels, n_labels * sizeof(*l));
        l[n_labels] = (MetricLabel) { "le", le };
        snprintf(sample, sizeof(sample), "%s_bucket", name);
        for (size_t i = 0; i < METRICS_BUCKETS; i++) {
                cumulative += h->buckets[i];
                snprintf(le, sizeof(le), "%g", metrics_latency_buckets[i]);
                (void) metrics_sample_u64(t, sample, l, n_labels + 1, cumulative);
        }
        snprintf(le, sizeof(le), "+Inf");
        (void) metrics_sample_u64(t, sample, l, n_labels + 1, h->count);
        snprintf(sample, sizeof(sample), "%s_sum", name);
        (void) metrics_sample(t, sample, labels, n_labels, h->sum);
        snprintf(sample, sizeof(sample), "%s_count", name);
        return metrics_sample_u64(t, sample, labels, n_labels, h->count);
}

static const char *const endpoint_names[_METRICS_EP_MAX] = {
        [METRICS_EP_GENERATE] = "generate",
        [METRICS_EP_CHAT] = "chat",
        [METRICS_EP_EMBED] = "embed",
        [METRICS_EP_EMBEDDINGS] = "embeddings",
        [METRICS_EP_SHOW] = "show",
        [METRICS_EP_TAGS] = "tags",
        [METRICS_EP_PS] = "ps",
        [METRICS_EP_VERSION] = "version",
        [METRICS_EP_MANAGE] = "manage",
        [METRICS_EP_V1_CHAT] = "v1_chat_completions",
        [METRICS_EP_V1_COMPLETIONS] = "v1_completions",
        [METRICS_EP_V1_EMBEDDINGS] = "v1_embeddings",
        [METRICS_EP_V1_MODELS] = "v1_models",
        [METRICS_EP_ROOT] = "root",
        [METRICS_EP_OTHER] = "other",
};

const char *metrics_endpoint_to_string(MetricsEndpoint e) {
        return e >= 0 && e < _METRICS_EP_MAX ? endpoint_names[e] : "other";
}

MetricsEndpoint metrics_endpoint(const char *uri) {
        static const struct {
                const char *path;
                MetricsEndpoint endpoint;
        } exact[] = {
                { "/api/generate", METRICS_EP_GENERATE },
                { "/api/chat", METRICS_EP_CHAT },
                { "/api/embed", METRICS_EP_EMBED },
                { "/api/embeddings", METRICS_EP_EMBEDDINGS },
                { "/api/show", METRICS_EP_SHOW },
                { "/api/tags", METRICS_EP_TAGS },
                { "/api/ps", METRICS_EP_PS },
                { "/api/version", METRICS_EP_VERSION },
                { "/api/pull", METRICS_EP_MANAGE },
                { "/api/push", METRICS_EP_MANAGE },
                { "/api/create", METRICS_EP_MANAGE },
                { "/api/copy", METRICS_EP_MANAGE },
                { "/api/delete", METRICS_EP_MANAGE },
                { "/v1/chat/completions", METRICS_EP_V1_CHAT },
                { "/v1/completions", METRICS_EP_V1_COMPLETIONS },
                { "/v1/embeddings", METRICS_EP_V1_EMBEDDINGS },
                { "/v1/models", METRICS_EP_V1_MODELS },
                { "/", METRICS_EP_ROOT },
        };

        if (!uri)
                return METRICS_EP_OTHER;
        for (size_t i = 0; i < ELEMENTSOF(exact); i++)
                if (shim_uri_is(uri, exact[i].path))
                        return exact[i].endpoint;
        if (strncmp(uri, "/api/blobs/", 11) == 0)
                return METRICS_EP_MANAGE;
        if (strncmp(uri, "/v1/models/", 11) == 0)
                return METRICS_EP_V1_MODELS;
        return METRICS_EP_OTHER;
}

static void copy_name(char dst[METRICS_NAME_MAX], const char *src) {
        size_t n = src ? strlen(src) : 0;

        if (n >= METRICS_NAME_MAX)
                snprintf(dst, METRICS_NAME_MAX, "other");
        else {
                memcpy(dst, src ?: "", n);
                dst[n] = '\0';
        }
}

static bool key_equal(const MetricsRequestKey *a, const MetricsRequestKey *b) {
        return a->mesh == b->mesh && a->endpoint == b->endpoint && a->code == b->code &&
               streq(a->model, b->model) && streq(a->node, b->node);
}

static MetricsRequestSeries *series_find(MetricsRequests *r, const MetricsRequestKey *k) {
        for (size_t i = 0; i < r->n_series; i++)
                if (key_equal(&r->series[i].key, k))
                        return &r->series[i];
        if (r->n_series >= METRICS_REQUESTS_MAX)
                return NULL;
        r->series[r->n_series] = (MetricsRequestSeries) { .key = *k };
        return &r->series[r->n_series++];
}

void metrics_requests_add(MetricsRequests *r, bool mesh, MetricsEndpoint endpoint, const char *model,
                          unsigned code, const char *node, uint64_t tokens, double ttfb_seconds,
                          double duration_seconds) {
        MetricsRequestKey k = { .mesh = mesh, .endpoint = endpoint, .code = MIN(code, 999U) };
        MetricsRequestSeries *s;

        if (endpoint < 0 || endpoint >= _METRICS_EP_MAX)
                k.endpoint = endpoint = METRICS_EP_OTHER;
        copy_name(k.model, model);
        copy_name(k.node, node);
        s = series_find(r, &k);
        if (!s) {
                /* Full: counted apart, and in the histograms, which are bounded by themselves. */
                r->overflowed++;
                r->overflowed_tokens += tokens;
        } else {
                s->requests++;
                s->tokens += tokens;
        }
        if (ttfb_seconds >= 0)
                metrics_histogram_observe(&r->ttfb[mesh][endpoint], ttfb_seconds);
        metrics_histogram_observe(&r->duration[mesh][endpoint], duration_seconds);
}

static const char *const pick_reason_names[_METRICS_PICK_MAX] = {
        [METRICS_PICK_GRAVITY_HIT] = "gravity_hit",
        [METRICS_PICK_RENDEZVOUS] = "rendezvous",
        [METRICS_PICK_OVERLOADED] = "overloaded",
        [METRICS_PICK_NO_CONTEXT] = "no_context",
        [METRICS_PICK_ROUND_ROBIN] = "round_robin",
        [METRICS_PICK_LEAST_LOADED] = "least_loaded",
        [METRICS_PICK_FASTER_OF_TWO] = "faster_of_two",
        [METRICS_PICK_LOCAL] = "local",
        [METRICS_PICK_LOCAL_BUSY] = "local_busy",
        [METRICS_PICK_ONLY_NODE] = "only_node",
        [METRICS_PICK_ALL_COOLING] = "all_cooling",
        [METRICS_PICK_NO_NODE] = "no_node",
        [METRICS_PICK_OTHER] = "other",
};

const char *metrics_pick_reason_to_string(MetricsPickReason r) {
        return r >= 0 && r < _METRICS_PICK_MAX ? pick_reason_names[r] : "other";
}

MetricsPickReason metrics_pick_reason(const char *reason) {
        /* The strings of common/route-table.c; test-shim-metrics.c picks through it, so that a
         * reworded reason shows up there rather than as "other" in production. */
        static const struct {
                const char *text;
                MetricsPickReason reason;
        } known[] = {
                { "holds the context", METRICS_PICK_GRAVITY_HIT },
                { "rendezvous of the context", METRICS_PICK_RENDEZVOUS },
                { "context holder busy: rendezvous", METRICS_PICK_OVERLOADED },
                { "no context: least loaded", METRICS_PICK_NO_CONTEXT },
                { "round-robin", METRICS_PICK_ROUND_ROBIN },
                { "least loaded", METRICS_PICK_LEAST_LOADED },
                { "faster of two", METRICS_PICK_FASTER_OF_TWO },
                { "this node", METRICS_PICK_LOCAL },
                { "this node busy or without the model: least loaded", METRICS_PICK_LOCAL_BUSY },
                { "only live node serving the model", METRICS_PICK_ONLY_NODE },
                { "every node serving the model is cooling down: the first to recover", METRICS_PICK_ALL_COOLING },
                { "no live node serves the model", METRICS_PICK_NO_NODE },
        };

        for (size_t i = 0; reason && i < ELEMENTSOF(known); i++)
                if (streq(reason, known[i].text))
                        return known[i].reason;
        return METRICS_PICK_OTHER;
}

void metrics_picks_add(MetricsPicks *p, RoutePolicy policy, const char *reason) {
        if (policy < 0 || policy >= _ROUTE_POLICY_MAX)
                return;
        p->n[policy][metrics_pick_reason(reason)]++;
}

/* Whether the policy can give the reason: those are written from the start (as 0), so that a
 * rate() sees the first pick. */
static bool pick_reason_possible(RoutePolicy policy, MetricsPickReason r) {
        if (r == METRICS_PICK_ONLY_NODE || r == METRICS_PICK_ALL_COOLING || r == METRICS_PICK_NO_NODE)
                return true;
        switch (policy) {
        case ROUTE_POLICY_ROUND_ROBIN:
                return r == METRICS_PICK_ROUND_ROBIN;
        case ROUTE_POLICY_LEAST_LOADED:
                return r == METRICS_PICK_LEAST_LOADED;
        case ROUTE_POLICY_GRAVITY:
                return r == METRICS_PICK_GRAVITY_HIT || r == METRICS_PICK_RENDEZVOUS || r == METRICS_PICK_OVERLOADED ||
                       r == METRICS_PICK_NO_CONTEXT;
        case ROUTE_POLICY_LATENCY:
                return r == METRICS_PICK_FASTER_OF_TWO;
        case ROUTE_POLICY_LOCAL_FIRST:
                return r == METRICS_PICK_LOCAL || r == METRICS_PICK_LOCAL_BUSY;
        default:
                return false;
        }
}

int metrics_picks_render(MetricsText *t, const MetricsPicks *p) {
        const char *name = "mycelia_route_picks_total";

        (void) metrics_family(t, name, METRIC_COUNTER,
                              "Routing decisions this shim made (its local copy of the table), by policy and reason.");
        for (RoutePolicy policy = 0; policy < _ROUTE_POLICY_MAX; policy++)
                for (MetricsPickReason r = 0; r < _METRICS_PICK_MAX; r++) {
                        MetricLabel l[] = {
                                { "policy", route_policy_to_string(policy) },
                                { "reason", metrics_pick_reason_to_string(r) },
                        };

                        if (p->n[policy][r] > 0 || pick_reason_possible(policy, r))
                                (void) metrics_sample_u64(t, name, l, ELEMENTSOF(l), p->n[policy][r]);
                }
        return t->error;
}

MetricsNodeCount *metrics_nodes_find(const MetricsNodes *n, const char *id) {
        for (size_t i = 0; i < n->n; i++)
                if (streq(n->v[i].id, id))
                        return &n->v[i];
        return NULL;
}

int metrics_nodes_add(MetricsNodes *n, const RouteTable *table, const char *id, MetricsNodeEvent e) {
        MetricsNodeCount *c;

        if (e < 0 || e >= _METRICS_NODE_EVENT_MAX || isempty(id) || !route_table_find(table, id))
                return -ENOENT;
        c = metrics_nodes_find(n, id);
        if (!c && n->n >= ROUTE_MAX_NODES) {
                /* Full: forget the nodes that left the table. The table holds at most as many
                 * nodes as there are entries, so this always makes room. */
                size_t k = 0;

                for (size_t i = 0; i < n->n; i++)
                        if (route_table_find(table, n->v[i].id))
                                n->v[k++] = n->v[i];
                n->n = k;
                if (n->n >= ROUTE_MAX_NODES)
                        return -ENOBUFS;
        }
        if (!c) {
                if (n->n == n->allocated) {
                        size_t a = MIN(MAX(n->allocated * 2, (size_t) 16), (size_t) ROUTE_MAX_NODES);
                        MetricsNodeCount *v = reallocarray(n->v, a, sizeof(*v));

                        if (!v)
                                return -ENOMEM;
                        n->v = v;
                        n->allocated = a;
                }
                c = &n->v[n->n++];
                *c = (MetricsNodeCount) {};
                snprintf(c->id, sizeof(c->id), "%s", id);
        }
        c->n[e]++;
        return 0;
}

void metrics_nodes_done(MetricsNodes *n) {
        free(n->v);
        *n = (MetricsNodes) {};
}

int metrics_nodes_render(MetricsText *t, const RouteTable *table, const MetricsNodes *n,
                         const MetricsIdCount *cooldowns, size_t n_cooldowns) {
        const char *retries = "mycelia_route_node_retries_total", *failovers = "mycelia_route_node_failovers_total",
                   *cool = "mycelia_route_node_cooldowns_total";

        (void) metrics_family(t, retries, METRIC_COUNTER,
                              "Attempts this shim repeated on the node on a fresh connection (a pooled one was closed).");
        for (size_t i = 0; i < table->n_nodes; i++) {
                const RouteNode *node = &table->nodes[i];
                const MetricsNodeCount *c = metrics_nodes_find(n, node->id);
                MetricLabel l[] = { { "node", node->name }, { "node_id", node->id } };

                (void) metrics_sample_u64(t, retries, l, ELEMENTSOF(l), c ? c->n[METRICS_NODE_RETRY] : 0);
        }
        (void) metrics_family(t, failovers, METRIC_COUNTER,
                              "Requests this shim moved away from the node to another before their first byte, by cause.");
        for (size_t i = 0; i < table->n_nodes; i++) {
                const RouteNode *node = &table->nodes[i];
                const MetricsNodeCount *c = metrics_nodes_find(n, node->id);

                for (size_t k = 0; k < 2; k++) {
                        MetricLabel l[] = {
                                { "node", node->name },
                                { "node_id", node->id },
                                { "reason", k == 0 ? "failure" : "status" },
                        };
                        MetricsNodeEvent e = k == 0 ? METRICS_NODE_FAILOVER_FAILURE : METRICS_NODE_FAILOVER_STATUS;

                        (void) metrics_sample_u64(t, failovers, l, ELEMENTSOF(l), c ? c->n[e] : 0);
                }
        }
        if (!cooldowns)
                return t->error;
        (void) metrics_family(t, cool, METRIC_COUNTER,
                              "Times routerd's circuit breaker for the node opened (a cooling period began; Router1.Cooldowns).");
        for (size_t i = 0; i < table->n_nodes; i++) {
                const RouteNode *node = &table->nodes[i];
                MetricLabel l[] = { { "node", node->name }, { "node_id", node->id } };
                uint64_t v = 0;

                for (size_t k = 0; k < n_cooldowns; k++)
                        if (streq(cooldowns[k].id, node->id)) {
                                v = cooldowns[k].count;
                                break;
                        }
                (void) metrics_sample_u64(t, cool, l, ELEMENTSOF(l), v);
        }
        return t->error;
}
