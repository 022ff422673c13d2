/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* GET /metrics: this node's view gathered at scrape time, from the shim's own counters, the
 * router cache, the other daemons' properties and pids (asynchronous bus calls, bounded in time),
 * /proc and, under systemd, the units' restart counts. */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "build-config.h"
#include "bus-names.h"
#include "bus-process.h"
#include "evbuffer-util.h"
#include "gossip-member.h"
#include "log.h"
#include "mesh-tls.h"
#include "shim-metrics.h"
#include "shimd-auth.h"
#include "shimd-bus-reads.h"
#include "shimd-clients.h"
#include "shimd-errors.h"
#include "shimd-metrics.h"
#include "shimd-router-cache.h"
#include "shimd-shardstore.h"

/* Entries read from one a{st} of another daemon, and collections listed by name. */
#define METRICS_DICT_MAX 64
#define METRICS_COLLECTIONS_MAX 64

/* The daemons of a node, for the process families: their label, bus name and systemd unit. */
typedef enum MetricsDaemon {
        DAEMON_SHIMD,
        DAEMON_ROUTERD,
        DAEMON_GOSSIPD,
        DAEMON_SHARDD,
        DAEMON_DISCOVERYD,
        _DAEMON_MAX,
} MetricsDaemon;

static const struct {
        const char *label, *bus_name, *path, *unit;
} daemons[_DAEMON_MAX] = {
        [DAEMON_SHIMD] = { "shimd", SHIM1_BUS_NAME, SHIM1_OBJECT_PATH, "mycelia-shimd.service" },
        [DAEMON_ROUTERD] = { "routerd", ROUTER1_BUS_NAME, ROUTER1_OBJECT_PATH, "mycelia-routerd.service" },
        [DAEMON_GOSSIPD] = { "gossipd", GOSSIP1_BUS_NAME, GOSSIP1_OBJECT_PATH, "mycelia-gossipd.service" },
        [DAEMON_SHARDD] = { "shardd", SHARDSTORE1_BUS_NAME, SHARDSTORE1_OBJECT_PATH, "mycelia-shardd.service" },
        [DAEMON_DISCOVERYD] = { "discoveryd", DISCOVERY1_BUS_NAME, DISCOVERY1_OBJECT_PATH,
                                "mycelia-discoveryd.service" },
};

/* Every bus call of a scrape, all sent at once. The per-daemon ones: its org.mycelia.Process1
 * (pid, RSS, fds: under systemd the shim may not read another unit's /proc; the shim's own is
 * read here), and its systemd unit's MainPID and NRestarts (answered only where
 * org.freedesktop.systemd1 is on the bus). */
typedef enum MetricsCallKind {
        CALL_GOSSIP_MEMBERS,
        CALL_GOSSIP_COUNTERS,
        CALL_SHARD_COLLECTIONS,
        CALL_SHARD_SYNC,
        CALL_ROUTER_COOLDOWNS,
        CALL_DISCOVERY_PEERS,
        _CALL_PROPERTY_MAX,
        CALL_PROCESS = _CALL_PROPERTY_MAX,              /* + MetricsDaemon */
        CALL_UNIT_MAIN_PID = CALL_PROCESS + _DAEMON_MAX,        /* + MetricsDaemon */
        CALL_UNIT_RESTARTS = CALL_UNIT_MAIN_PID + _DAEMON_MAX,
        _CALL_MAX = CALL_UNIT_RESTARTS + _DAEMON_MAX,
} MetricsCallKind;

_Static_assert(_CALL_MAX <= BUS_READS_MAX, "a scrape's calls do not fit one BusReads");

typedef struct MetricsScrape MetricsScrape;

struct MetricsScrape {
        Manager *m;
        LIST_ENTRY(MetricsScrape) link;
        struct evhttp_request *client;
        struct evhttp_connection *evcon;
        BusReads *reads;        /* the calls of MetricsCallKind, by kind (shimd-bus-reads.c) */
};

struct ShimMetrics {
        MetricsRequests requests;
        MetricsNodes nodes;     /* retries and failovers by node */
        LIST_HEAD(, MetricsScrape) scrapes;
        unsigned n_scrapes;
};

static const struct {
        const char *bus_name, *path, *interface, *property;
} call_targets[_CALL_PROPERTY_MAX] = {
        [CALL_GOSSIP_MEMBERS] = { GOSSIP1_BUS_NAME, GOSSIP1_OBJECT_PATH, GOSSIP1_INTERFACE, "Members" },
        [CALL_GOSSIP_COUNTERS] = { GOSSIP1_BUS_NAME, GOSSIP1_OBJECT_PATH, GOSSIP1_INTERFACE, "Counters" },
        [CALL_SHARD_COLLECTIONS] = { SHARDSTORE1_BUS_NAME, SHARDSTORE1_OBJECT_PATH, SHARDSTORE1_INTERFACE,
                                     "Collections" },
        [CALL_SHARD_SYNC] = { SHARDSTORE1_BUS_NAME, SHARDSTORE1_OBJECT_PATH, SHARDSTORE1_INTERFACE, "Sync" },
        [CALL_ROUTER_COOLDOWNS] = { ROUTER1_BUS_NAME, ROUTER1_OBJECT_PATH, ROUTER1_INTERFACE, "Cooldowns" },
        [CALL_DISCOVERY_PEERS] = { DISCOVERY1_BUS_NAME, DISCOVERY1_OBJECT_PATH, DISCOVERY1_INTERFACE,
                                   "PeersBySource" },
};

int metrics_new(ShimMetrics **ret) {
        ShimMetrics *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        LIST_INIT(&s->scrapes);
        *ret = s;
        return 0;
}

static void scrape_free(MetricsScrape *s) {
        if (!s)
                return;
        bus_reads_free(s->reads);
        if (s->m) {
                LIST_REMOVE(s, link);
                s->m->metrics->n_scrapes--;
        }
        free(s);
}

ShimMetrics *metrics_free(Manager *m, ShimMetrics *metrics) {
        if (!metrics)
                return NULL;
        while (!LIST_EMPTY(&metrics->scrapes)) {
                MetricsScrape *s = LIST_FIRST(&metrics->scrapes);

                if (s->evcon)
                        manager_client_unwatch(m, s->evcon);
                scrape_free(s);
        }
        metrics_nodes_done(&metrics->nodes);
        free(metrics);
        return NULL;
}

/* A model the routing table knows keeps its name; any other is "other", so that clients cannot
 * make series by naming models. */
static const char *model_label(Manager *m, const char *model) {
        const RouteTable *t = router_cache_table(m->router);

        if (isempty(model))
                return "";
        /* The table's spelling: "m", "M" and "m:latest" are one model and one series. */
        for (size_t i = 0; i < t->n_nodes; i++)
                for (size_t j = 0; j < t->nodes[i].n_models; j++)
                        if (model_name_equal(t->nodes[i].models[j], model))
                                return t->nodes[i].models[j];
        return "other";
}

void metrics_request_end(Manager *m, const MetricsRequestEnd *e) {
        usec_t now = now_usec();

        if (!m->metrics)
                return;
        metrics_requests_add(&m->metrics->requests, e->mesh, metrics_endpoint(e->uri), model_label(m, e->model),
                             (unsigned) MAX(e->status, 0), e->served_by, e->tokens,
                             e->t_first_byte ? (double) (e->t_first_byte - e->t_start) / USEC_PER_SEC : -1,
                             (double) (now - e->t_start) / USEC_PER_SEC);
}

void metrics_node_event(Manager *m, const char *node_id, MetricsNodeEvent e) {
        int r;

        if (!m->metrics)
                return;
        /* -ENOENT: not routed, or a node the table no longer has: no series of its own. */
        r = metrics_nodes_add(&m->metrics->nodes, router_cache_table(m->router), node_id, e);
        if (r < 0 && r != -ENOENT)
                log_debug_errno(r, "Metrics: cannot count an event of node %s: %m", node_id);
}

char *metrics_request_model(struct evhttp_request *req) {
        struct iovec small[16], *vec, *heap = NULL;
        char *model = NULL;
        int n;

        n = evbuffer_iovecs(evhttp_request_get_input_buffer(req), small, ELEMENTSOF(small), &vec, &heap);
        if (n > 0)
                (void) shim_request_extract_model(vec, (size_t) n, &model);
        free(heap);
        return model;
}

/* ---- rendering ---- */

static void counter(MetricsText *t, const char *name, const char *help, uint64_t v) {
        (void) metrics_family(t, name, METRIC_COUNTER, help);
        (void) metrics_sample_u64(t, name, NULL, 0, v);
}

static void gauge(MetricsText *t, const char *name, const char *help, double v) {
        (void) metrics_family(t, name, METRIC_GAUGE, help);
        (void) metrics_sample(t, name, NULL, 0, v);
}

static void render_shim(MetricsText *t, Manager *m) {
        const ShimCounters *c = &m->counters;
        const MeshTlsCounters *tls = m->creds.tls ? mesh_tls_counters(m->creds.tls) : NULL;
        static const char *const reasons[] = { "busy", "too_large", "unauthenticated", "unauthorized" };
        uint64_t rejected[] = { c->rejected_busy, c->rejected_too_large, c->rejected_unauthenticated,
                                shim_auth_rejected_unauthorized() };
        const char *name;

        counter(t, "mycelia_shim_received_requests_total", "HTTP requests received on both listeners (Shim1 RequestsTotal).",
                c->requests_total);
        counter(t, "mycelia_shim_failed_requests_total", "Requests that ended in an error of the shim's (Shim1 RequestsFailed).",
                c->requests_failed);
        name = "mycelia_shim_rejected_requests_total";
        (void) metrics_family(t, name, METRIC_COUNTER, "Requests refused before any work, by reason.");
        for (size_t i = 0; i < ELEMENTSOF(reasons); i++)
                (void) metrics_sample_u64(t, name, &(MetricLabel) { "reason", reasons[i] }, 1, rejected[i]);
        counter(t, "mycelia_shim_client_cancelled_total", "Requests whose client went away before the answer ended.",
                c->client_cancelled);
        counter(t, "mycelia_shim_upstream_errors_total", "Attempts that failed at the upstream (connect, reset, timeout, 5xx).",
                c->upstream_errors);
        counter(t, "mycelia_shim_cooling_waits_total", "Requests that waited for a cooling node to recover.",
                c->cooling_waits);
        counter(t, "mycelia_shim_client_sent_bytes_total", "Response bytes written to clients.", c->bytes_to_clients);
        counter(t, "mycelia_shim_accept_paused_total", "Times a listener reached max_connections and paused accepting.",
                c->accept_paused);
        counter(t, "mycelia_shim_clients_timed_out_total", "Connections closed for not sending a whole request in time.",
                c->clients_timed_out);
        counter(t, "mycelia_shim_mesh_tls_refused_total", "TLS handshakes the mesh listener refused (no or another key).",
                tls ? tls->refused : 0);
        counter(t, "mycelia_shim_mesh_tls_failed_total", "TLS handshakes to peers that the peer refused.",
                tls ? tls->failed : 0);
        counter(t, "mycelia_shim_retries_total", "Attempts repeated on the same node on a fresh connection.",
                c->retries_fresh);
        name = "mycelia_shim_failovers_total";
        (void) metrics_family(t, name, METRIC_COUNTER, "Requests moved to another node before their first byte, by cause.");
        (void) metrics_sample_u64(t, name, &(MetricLabel) { "reason", "failure" }, 1, c->failovers_failure);
        (void) metrics_sample_u64(t, name, &(MetricLabel) { "reason", "status" }, 1, c->failovers_status);
        counter(t, "mycelia_shim_resumes_total", "Streams continued on another node after theirs failed mid-answer.",
                c->resumes);
        counter(t, "mycelia_shim_outcomes_dropped_total", "Outcome reports to routerd dropped because a batch was full.",
                router_cache_outcomes_dropped(m->router));
        gauge(t, "mycelia_shim_requests_in_flight", "Requests being answered.", m->requests_active);
        gauge(t, "mycelia_shim_connections", "Client connections open on both listeners.", m->clients_open);
}

static void render_requests(MetricsText *t, const MetricsRequests *r) {
        const char *requests = "mycelia_shim_requests_total", *tokens = "mycelia_shim_generated_tokens_total";

        (void) metrics_family(t, requests, METRIC_COUNTER,
                              "Requests relayed, by listener, endpoint class, model, status code and serving node.");
        for (size_t pass = 0; pass < 2; pass++) {
                if (pass == 1)
                        (void) metrics_family(t, tokens, METRIC_COUNTER,
                                              "Tokens generated (NDJSON lines / SSE frames counted), by the same labels.");
                for (size_t i = 0; i < r->n_series; i++) {
                        const MetricsRequestSeries *s = &r->series[i];
                        char code[16];
                        MetricLabel l[] = {
                                { "listener", s->key.mesh ? "mesh" : "api" },
                                { "endpoint", metrics_endpoint_to_string(s->key.endpoint) },
                                { "model", s->key.model },
                                { "code", code },
                                { "node", s->key.node },
                        };

                        snprintf(code, sizeof(code), "%u", s->key.code);
                        (void) metrics_sample_u64(t, pass == 0 ? requests : tokens, l, ELEMENTSOF(l),
                                                  pass == 0 ? s->requests : s->tokens);
                }
        }
        counter(t, "mycelia_shim_request_series_overflow_total",
                "Requests not in mycelia_shim_requests_total because its series were at their bound.", r->overflowed);

        for (size_t h = 0; h < 2; h++) {
                const char *name = h == 0 ? "mycelia_shim_time_to_first_byte_seconds" : "mycelia_shim_request_duration_seconds";

                (void) metrics_family(t, name, METRIC_HISTOGRAM,
                                      h == 0 ? "Time from the request to the first response byte (the first token of a stream)."
                                             : "Time from the request to the end of its answer.");
                for (size_t mesh = 0; mesh < 2; mesh++)
                        for (size_t e = 0; e < _METRICS_EP_MAX; e++) {
                                const MetricsHistogram *hist = h == 0 ? &r->ttfb[mesh][e] : &r->duration[mesh][e];
                                MetricLabel l[] = {
                                        { "listener", mesh ? "mesh" : "api" },
                                        { "endpoint", metrics_endpoint_to_string(e) },
                                };

                                if (hist->count > 0)
                                        (void) metrics_histogram(t, name, l, ELEMENTSOF(l), hist);
                        }
        }
}

static void render_routes(MetricsText *t, Manager *m) {
        const RouteTable *table = router_cache_table(m->router);
        static const char *const states[] = { "up", "cooling", "down" };
        unsigned by_state[3] = {};
        const char *name;

        for (size_t i = 0; i < table->n_nodes; i++)
                by_state[table->nodes[i].up ? 0 : table->nodes[i].cooling ? 1 : 2]++;
        name = "mycelia_route_nodes";
        (void) metrics_family(t, name, METRIC_GAUGE, "Nodes of the routing table (this shim's copy), by state.");
        for (size_t s = 0; s < ELEMENTSOF(states); s++)
                (void) metrics_sample_u64(t, name, &(MetricLabel) { "state", states[s] }, 1, by_state[s]);

        for (size_t f = 0; f < 4; f++) {
                static const char *const names[] = {
                        "mycelia_route_node_up", "mycelia_route_node_cooling", "mycelia_route_node_in_flight",
                        "mycelia_route_node_capacity",
                };
                static const char *const helps[] = {
                        "1 when the node is up in the routing table.",
                        "1 while routerd cools the node down after failures.",
                        "Requests in flight at the node, as routerd last heard.",
                        "Requests the node serves at once (0: unknown).",
                };

                (void) metrics_family(t, names[f], METRIC_GAUGE, helps[f]);
                for (size_t i = 0; i < table->n_nodes; i++) {
                        const RouteNode *n = &table->nodes[i];
                        MetricLabel l[] = { { "node", n->name }, { "node_id", n->id } };
                        unsigned v = f == 0 ? n->up : f == 1 ? n->cooling : f == 2 ? n->in_flight : n->capacity;

                        (void) metrics_sample_u64(t, names[f], l, ELEMENTSOF(l), v);
                }
        }
}

/* Names from another daemon become part of ours: only [a-z0-9_], at most 48 characters. */
static bool dict_key_valid(const char *k) {
        size_t n = strlen(k);

        if (n == 0 || n > 48)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= '0' && k[i] <= '9') || k[i] == '_'))
                        return false;
        return true;
}

/* An a{st} of counters (gauges: the keys named in gauges) as one family each, prefix_KEY_total;
 * the keys in skip are written by the caller under names of their own. */
static void render_dict(MetricsText *t, sd_bus_message *reply, const char *prefix, const char *who,
                        const char *const *gauges, const char *const *skip) {
        const char *keys[METRICS_DICT_MAX];
        size_t n_keys = 0;
        int r;

        r = bus_reply_enter_array(reply, "{st}");
        while (r >= 0 && n_keys < METRICS_DICT_MAX) {
                char name[128], help[160];
                const char *key;
                bool gauge_key = false, seen = false;
                uint64_t v;

                r = sd_bus_message_read(reply, "{st}", &key, &v);
                if (r <= 0)
                        break;
                if (!dict_key_valid(key))
                        continue;
                for (size_t i = 0; skip && skip[i]; i++)
                        seen = seen || streq(skip[i], key);
                for (size_t i = 0; i < n_keys; i++)
                        seen = seen || streq(keys[i], key);
                if (seen)
                        continue;
                keys[n_keys++] = key;
                for (size_t i = 0; gauges && gauges[i]; i++)
                        gauge_key = gauge_key || streq(gauges[i], key);
                snprintf(name, sizeof(name), "%s_%s%s", prefix, key, gauge_key ? "" : "_total");
                snprintf(help, sizeof(help), "%s '%s'.", who, key);
                (void) metrics_family(t, name, gauge_key ? METRIC_GAUGE : METRIC_COUNTER, help);
                (void) metrics_sample_u64(t, name, NULL, 0, v);
        }
        if (r < 0)
                log_debug_errno(r, "Failed to read %s for the metrics: %m", who);
}

static void render_gossip_members(MetricsText *t, sd_bus_message *reply) {
        static const char *const states[] = { "alive", "suspect", "dead", "left", "other" };
        uint64_t by_state[ELEMENTSOF(states)] = {};
        const char *name = "mycelia_gossip_members";
        GossipMember g;
        int r;

        r = bus_reply_enter_array(reply, GOSSIP_MEMBER_SIGNATURE);
        while (r >= 0 && (r = gossip_member_read(reply, &g)) > 0) {
                size_t s = 0;

                while (s < ELEMENTSOF(states) - 1 && !streq(states[s], g.state))
                        s++;
                by_state[s]++;
        }
        if (r < 0)
                log_debug_errno(r, "Failed to read Gossip1.Members for the metrics: %m");
        (void) metrics_family(t, name, METRIC_GAUGE, "Members gossipd knows, this node included, by state.");
        for (size_t s = 0; s < ELEMENTSOF(states); s++)
                (void) metrics_sample_u64(t, name, &(MetricLabel) { "state", states[s] }, 1, by_state[s]);
}

typedef struct DocumentsByCollection {
        MetricsText *t;
        uint64_t n, other;
} DocumentsByCollection;

static int collection_documents(const ShardStoreCollection *c, void *userdata) {
        DocumentsByCollection *d = userdata;

        if (d->n++ < METRICS_COLLECTIONS_MAX)
                (void) metrics_sample_u64(d->t, "mycelia_shard_documents", &(MetricLabel) { "collection", c->name }, 1,
                                          c->documents);
        else
                d->other += c->documents;
        return 0;
}

static void render_shard_collections(MetricsText *t, sd_bus_message *reply) {
        DocumentsByCollection d = { .t = t };
        int r;

        (void) metrics_family(t, "mycelia_shard_documents", METRIC_GAUGE,
                              "Documents held on this node, by collection (the first 64 collections; the rest as \"\").");
        r = shardstore_collections_read(reply, collection_documents, &d);
        if (d.n > METRICS_COLLECTIONS_MAX)
                (void) metrics_sample_u64(t, "mycelia_shard_documents", &(MetricLabel) { "collection", "" }, 1, d.other);
        if (r < 0)
                log_debug_errno(r, "Failed to read ShardStore1.Collections for the metrics: %m");
        gauge(t, "mycelia_shard_collections", "Collections shardd knows.", d.n);
}

/* A Properties.Get reply's value of type "u"; false when absent. */
static bool reply_u32(sd_bus_message *reply, uint32_t *ret) {
        int r;

        if (!reply)
                return false;
        r = sd_bus_message_rewind(reply, true);
        if (r >= 0)
                r = sd_bus_message_read(reply, "v", "u", ret);
        return r > 0;
}

/* Router1.Cooldowns (a{st}) into *ret, at most the table's bound; NULL when routerd did not
 * answer, so that the family is left out rather than shown as 0. */
static int read_cooldowns(sd_bus_message *reply, MetricsIdCount **ret, size_t *ret_n) {
        _cleanup_free_ MetricsIdCount *v = NULL;
        size_t n = 0;
        int r;

        *ret = NULL;
        *ret_n = 0;
        if (!reply)
                return 0;
        v = calloc(ROUTE_MAX_NODES, sizeof(*v));
        if (!v)
                return -ENOMEM;
        r = bus_reply_enter_array(reply, "{st}");
        while (r >= 0 && n < ROUTE_MAX_NODES) {
                const char *id;
                uint64_t count;

                r = sd_bus_message_read(reply, "{st}", &id, &count);
                if (r <= 0)
                        break;
                if (strlen(id) > NODE_ID_LEN)
                        continue;
                snprintf(v[n].id, sizeof(v[n].id), "%s", id);
                v[n++].count = count;
        }
        if (r < 0)
                return r;
        *ret = TAKE_PTR(v);
        *ret_n = n;
        return 0;
}

static void render_nodes(MetricsText *t, Manager *m, sd_bus_message *cooldowns_reply) {
        _cleanup_free_ MetricsIdCount *cooldowns = NULL;
        size_t n_cooldowns = 0;
        int r;

        r = read_cooldowns(cooldowns_reply, &cooldowns, &n_cooldowns);
        if (r < 0)
                log_debug_errno(r, "Failed to read Router1.Cooldowns for the metrics: %m");
        (void) metrics_picks_render(t, router_cache_picks(m->router));
        (void) metrics_nodes_render(t, router_cache_table(m->router), &m->metrics->nodes, cooldowns, n_cooldowns);
}

/* Discovery1.PeersBySource (a{su}): the two sources discoveryd has, anything else as "other". */
static void render_discovery(MetricsText *t, sd_bus_message *reply) {
        static const char *const sources[] = { "mdns", "seed", "other" };
        uint64_t n[ELEMENTSOF(sources)] = {};
        const char *name = "mycelia_discovery_peers";
        size_t entries = 0;
        int r;

        r = bus_reply_enter_array(reply, "{su}");
        while (r >= 0 && entries++ < METRICS_DICT_MAX) {
                const char *source;
                uint32_t count;
                size_t i = 0;

                r = sd_bus_message_read(reply, "{su}", &source, &count);
                if (r <= 0)
                        break;
                while (i < ELEMENTSOF(sources) - 1 && !streq(sources[i], source))
                        i++;
                n[i] += count;
        }
        if (r < 0)
                log_debug_errno(r, "Failed to read Discovery1.PeersBySource for the metrics: %m");
        (void) metrics_family(t, name, METRIC_GAUGE, "Peers discoveryd knows, by how it found them.");
        for (size_t i = 0; i < ELEMENTSOF(sources); i++)
                if (i < ELEMENTSOF(sources) - 1 || n[i] > 0)
                        (void) metrics_sample_u64(t, name, &(MetricLabel) { "source", sources[i] }, 1, n[i]);
}

/* One entry of an a{st} property; false when it is not there. */
static bool dict_lookup(sd_bus_message *reply, const char *key, uint64_t *ret) {
        size_t entries = 0;
        int r;

        r = bus_reply_enter_array(reply, "{st}");
        while (r >= 0 && entries++ < METRICS_DICT_MAX) {
                const char *k;
                uint64_t v;

                r = sd_bus_message_read(reply, "{st}", &k, &v);
                if (r <= 0)
                        break;
                if (streq(k, key)) {
                        *ret = v;
                        return true;
                }
        }
        return false;
}

/* The gauges of ShardStore1.Sync that get names of their own (the rest: render_dict()). */
static void render_shard_gauges(MetricsText *t, sd_bus_message *reply) {
        uint64_t v;

        if (dict_lookup(reply, "shards_held", &v)) {
                (void) metrics_family(t, "mycelia_shard_shards_held", METRIC_GAUGE,
                                      "Shards of every collection stored on this node.");
                (void) metrics_sample_u64(t, "mycelia_shard_shards_held", NULL, 0, v);
        }
        if (dict_lookup(reply, "lag_usec", &v)) {
                (void) metrics_family(t, "mycelia_shard_sync_lag_seconds", METRIC_GAUGE,
                                      "How long the oldest pending shard transfer has waited (0: none pending).");
                (void) metrics_sample(t, "mycelia_shard_sync_lag_seconds", NULL, 0, (double) v / USEC_PER_SEC);
        }
}

typedef struct ProcessSample {
        bool have_pid, have_rss, have_fds, have_restarts;
        uint32_t pid;
        uint64_t rss, fds, restarts;
} ProcessSample;

/* A daemon's Process1.GetAll (a{sv}): Pid, ResidentMemoryBytes, OpenFds; what is missing or of
 * another type is left out. At most a few entries are read. */
static void process_from_reply(sd_bus_message *reply, ProcessSample *ret) {
        size_t entries = 0;
        int r;

        if (!reply)
                return;
        r = sd_bus_message_rewind(reply, true);
        if (r >= 0)
                r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0 && entries++ < METRICS_DICT_MAX) {
                const char *key;

                r = sd_bus_message_enter_container(reply, 'e', "sv");
                if (r <= 0)
                        break;
                r = sd_bus_message_read(reply, "s", &key);
                if (r < 0)
                        break;
                if (streq(key, "Pid") && sd_bus_message_read(reply, "v", "u", &ret->pid) > 0)
                        ret->have_pid = true;
                else if (streq(key, "ResidentMemoryBytes") && sd_bus_message_read(reply, "v", "t", &ret->rss) > 0)
                        ret->have_rss = true;
                else if (streq(key, "OpenFds")) {
                        uint32_t fds;

                        if (sd_bus_message_read(reply, "v", "u", &fds) > 0) {
                                ret->fds = fds;
                                ret->have_fds = true;
                        }
                }
                /* Whatever was not read of the entry (another key, another type). */
                r = sd_bus_message_exit_container(reply);
        }
}

static void render_process(MetricsText *t, MetricsScrape *s) {
        static const char *const names[] = {
                "mycelia_process_resident_memory_bytes", "mycelia_process_open_fds", "mycelia_process_restarts_total",
        };
        static const char *const helps[] = {
                "Resident memory of the daemon (its /proc/self/statm; org.mycelia.Process1).",
                "Open file descriptors of the daemon (its /proc/self/fd; org.mycelia.Process1).",
                "Times systemd restarted the daemon's unit (NRestarts; only under systemd).",
        };
        ProcessSample p[_DAEMON_MAX] = {};

        for (MetricsDaemon d = 0; d < _DAEMON_MAX; d++) {
                uint32_t main_pid = 0, restarts;

                if (d == DAEMON_SHIMD) {
                        ProcessSelf self;

                        process_self_sample(&self);
                        p[d] = (ProcessSample) {
                                .have_pid = true, .pid = (uint32_t) getpid(),
                                .have_rss = self.have_rss, .rss = self.resident_memory_bytes,
                                .have_fds = self.have_fds, .fds = self.open_fds,
                        };
                } else
                        process_from_reply(bus_reads_value(s->reads, CALL_PROCESS + d), &p[d]);
                if (!p[d].have_pid || p[d].pid == 0)
                        continue;
                /* The unit's count is the daemon's only when the unit runs this very process: a
                 * unit that is not loaded, or a daemon started by hand beside it, says nothing. */
                if (reply_u32(bus_reads_value(s->reads, CALL_UNIT_MAIN_PID + d), &main_pid) && main_pid == p[d].pid &&
                    reply_u32(bus_reads_value(s->reads, CALL_UNIT_RESTARTS + d), &restarts)) {
                        p[d].restarts = restarts;
                        p[d].have_restarts = true;
                }
        }
        for (size_t f = 0; f < ELEMENTSOF(names); f++) {
                bool any = false;

                for (MetricsDaemon d = 0; d < _DAEMON_MAX; d++) {
                        bool have = f == 0 ? p[d].have_rss : f == 1 ? p[d].have_fds : p[d].have_restarts;
                        uint64_t v = f == 0 ? p[d].rss : f == 1 ? p[d].fds : p[d].restarts;

                        if (!have)
                                continue;
                        if (!any)
                                (void) metrics_family(t, names[f], f == 2 ? METRIC_COUNTER : METRIC_GAUGE, helps[f]);
                        any = true;
                        (void) metrics_sample_u64(t, names[f], &(MetricLabel) { "daemon", daemons[d].label }, 1, v);
                }
        }
}

static int render(Manager *m, MetricsScrape *s, MetricsText *t) {
        sd_bus_message *r[_CALL_PROPERTY_MAX];
        static const char *const sync_gauges[] = { "transfers_pending", NULL };
        static const char *const sync_own[] = { "shards_held", "lag_usec", NULL };
        const char *name = "mycelia_daemon_up";
        bool gossip_up, shard_up;

        for (size_t i = 0; i < _CALL_PROPERTY_MAX; i++)
                r[i] = bus_reads_value(s->reads, i);
        gossip_up = r[CALL_GOSSIP_MEMBERS] || r[CALL_GOSSIP_COUNTERS];
        shard_up = r[CALL_SHARD_COLLECTIONS] || r[CALL_SHARD_SYNC];

        (void) metrics_family(t, "mycelia_build_info", METRIC_GAUGE, "Always 1; the version of Mycelia Mesh.");
        (void) metrics_sample_u64(t, "mycelia_build_info", &(MetricLabel) { "version", PACKAGE_VERSION }, 1, 1);
        (void) metrics_family(t, name, METRIC_GAUGE,
                              "1 when the daemon answered this scrape (routerd: its table is current).");
        (void) metrics_sample_u64(t, name, &(MetricLabel) { "daemon", "shimd" }, 1, 1);
        (void) metrics_sample_u64(t, name, &(MetricLabel) { "daemon", "routerd" }, 1, m->router_connected ? 1 : 0);
        (void) metrics_sample_u64(t, name, &(MetricLabel) { "daemon", "gossipd" }, 1, gossip_up);
        (void) metrics_sample_u64(t, name, &(MetricLabel) { "daemon", "shardd" }, 1, shard_up);
        (void) metrics_sample_u64(t, name, &(MetricLabel) { "daemon", "discoveryd" }, 1, !!r[CALL_DISCOVERY_PEERS]);

        render_shim(t, m);
        render_requests(t, &m->metrics->requests);
        render_routes(t, m);
        render_nodes(t, m, r[CALL_ROUTER_COOLDOWNS]);
        if (r[CALL_GOSSIP_MEMBERS])
                render_gossip_members(t, r[CALL_GOSSIP_MEMBERS]);
        if (r[CALL_GOSSIP_COUNTERS])
                render_dict(t, r[CALL_GOSSIP_COUNTERS], "mycelia_gossip", "Gossip1.Counters", NULL, NULL);
        if (r[CALL_SHARD_COLLECTIONS])
                render_shard_collections(t, r[CALL_SHARD_COLLECTIONS]);
        if (r[CALL_SHARD_SYNC]) {
                render_dict(t, r[CALL_SHARD_SYNC], "mycelia_shard_sync", "ShardStore1.Sync", sync_gauges, sync_own);
                render_shard_gauges(t, r[CALL_SHARD_SYNC]);
        }
        if (r[CALL_DISCOVERY_PEERS])
                render_discovery(t, r[CALL_DISCOVERY_PEERS]);
        render_process(t, s);
        return t->error;
}

/* ---- the scrape ---- */

static void scrape_answer(MetricsScrape *s) {
        Manager *m = s->m;
        MetricsText t;
        struct evbuffer *buf = evbuffer_new();
        int r;

        metrics_text_init(&t, METRICS_TEXT_MAX);
        r = render(m, s, &t);
        manager_client_unwatch(m, s->evcon);
        if (r < 0 || !buf || evbuffer_add(buf, t.buf, t.len) < 0) {
                log_warning_errno(r < 0 ? r : -ENOMEM, "Failed to write the metrics: %m");
                shim_reply_error(s->client, 500, SHIM_ERROR_JSON, "could not write the metrics", false);
        } else {
                struct evkeyvalq *out = evhttp_request_get_output_headers(s->client);

                (void) evhttp_add_header(out, "Content-Type", METRICS_CONTENT_TYPE);
                if (evhttp_request_get_command(s->client) == EVHTTP_REQ_HEAD)
                        shim_reply_head(s->client, t.len);
                else {
                        m->counters.bytes_to_clients += t.len;
                        evhttp_send_reply(s->client, 200, NULL, buf);
                }
        }
        if (buf)
                evbuffer_free(buf);
        metrics_text_done(&t);
        scrape_free(s);
}

static void scrape_done_cb(BusReads *reads, void *userdata) {
        scrape_answer(userdata);
}

static void scrape_client_close_cb(struct evhttp_connection *evcon, void *userdata) {
        MetricsScrape *s = userdata;

        manager_client_gone(s->m, evcon);
        s->m->counters.client_cancelled++;
        if (!evhttp_request_get_connection(s->client))
                evhttp_request_free(s->client);
        scrape_free(s);
}

/* The message of one call of the scrape (see MetricsCallKind). */
static int scrape_message(sd_bus *bus, MetricsCallKind kind, sd_bus_message **ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        _cleanup_free_ char *unit_path = NULL;
        int r;

        if (kind < _CALL_PROPERTY_MAX) {
                r = sd_bus_message_new_method_call(bus, &msg, call_targets[kind].bus_name, call_targets[kind].path,
                                                   "org.freedesktop.DBus.Properties", "Get");
                if (r >= 0)
                        r = sd_bus_message_append(msg, "ss", call_targets[kind].interface, call_targets[kind].property);
        } else if (kind < CALL_UNIT_MAIN_PID) {
                MetricsDaemon d = kind - CALL_PROCESS;

                r = sd_bus_message_new_method_call(bus, &msg, daemons[d].bus_name, daemons[d].path,
                                                   "org.freedesktop.DBus.Properties", "GetAll");
                if (r >= 0)
                        r = sd_bus_message_append(msg, "s", PROCESS1_INTERFACE);
        } else {
                MetricsDaemon d = kind < CALL_UNIT_RESTARTS ? kind - CALL_UNIT_MAIN_PID : kind - CALL_UNIT_RESTARTS;

                r = sd_bus_path_encode("/org/freedesktop/systemd1/unit", daemons[d].unit, &unit_path);
                if (r >= 0)
                        r = sd_bus_message_new_method_call(bus, &msg, "org.freedesktop.systemd1", unit_path,
                                                           "org.freedesktop.DBus.Properties", "Get");
                if (r >= 0)
                        r = sd_bus_message_append(msg, "ss", "org.freedesktop.systemd1.Service",
                                                  kind < CALL_UNIT_RESTARTS ? "MainPID" : "NRestarts");
        }
        if (r < 0)
                return r;
        /* A daemon that is not running is not started for a scrape. (systemd answers for a unit
         * it does not have too, as not loaded with MainPID 0: render_process() compares pids.) */
        (void) sd_bus_message_set_auto_start(msg, false);
        *ret = TAKE_PTR(msg);
        return 0;
}

bool metrics_handle(Manager *m, struct evhttp_request *req, const char *uri) {
        enum evhttp_cmd_type method = evhttp_request_get_command(req);
        sd_bus_message *calls[_CALL_MAX] = {};
        MetricsScrape *s;
        int r;

        if (!shim_uri_is(uri, "/metrics") || (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD))
                return false;
        if (m->metrics->n_scrapes >= METRICS_SCRAPES_MAX) {
                m->counters.rejected_busy++;
                shim_reply_error(req, 503, SHIM_ERROR_JSON, "too many scrapes at once", false);
                return true;
        }
        for (MetricsCallKind i = 0; m->bus && i < _CALL_MAX; i++) {
                if (i == CALL_PROCESS + DAEMON_SHIMD)
                        continue;       /* read here: process_self_sample() */
                r = scrape_message(m->bus, i, &calls[i]);
                if (r < 0)
                        log_debug_errno(r, "Metrics: failed to make bus call %d: %m", (int) i);
        }
        s = calloc(1, sizeof(*s));
        r = s ? bus_calls_start(m, calls, _CALL_MAX, METRICS_BUS_TIMEOUT_USEC, scrape_done_cb, s, &s->reads) : -ENOMEM;
        for (size_t i = 0; i < _CALL_MAX; i++)
                sd_bus_message_unref(calls[i]);
        if (r < 0) {
                free(s);
                log_oom();
                shim_reply_error(req, 500, SHIM_ERROR_JSON, "out of memory", true);
                return true;
        }
        /* The answer is written from scrape_done_cb(), with what came within the timeout. */
        s->m = m;
        s->client = req;
        s->evcon = evhttp_request_get_connection(req);
        LIST_INSERT_HEAD(&m->metrics->scrapes, s, link);
        m->metrics->n_scrapes++;
        manager_client_watch(m, s->evcon, scrape_client_close_cb, s);
        return true;
}

