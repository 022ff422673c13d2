/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* GET /api/mycelia/status: see shimd-status.h. The nodes are the union of gossip's members (dead
 * and left ones too, until gossipd forgets them) and the routing table's, by id. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>

#include "build-config.h"
#include "bus-names.h"
#include "gossip-member.h"
#include "json-cleanup.h"
#include "json-document.h"
#include "log.h"
#include "shim-metrics.h"
#include "shim-request.h"
#include "shim-status.h"
#include "shimd-bus-reads.h"
#include "shimd-clients.h"
#include "shimd-errors.h"
#include "shimd-router-cache.h"
#include "shimd-shardstore.h"
#include "shimd-status.h"

/* Collections listed by name; the rest are counted. */
#define STATUS_COLLECTIONS_MAX 64
/* Entries read from ShardStore1.Sync. */
#define STATUS_SYNC_MAX 64

typedef enum StatusRead {
        READ_GOSSIP_MEMBERS,
        READ_SHARD_NODES,
        READ_SHARD_COLLECTIONS,
        READ_SHARD_SYNC,
        _READ_MAX,
} StatusRead;

static const BusPropertyRef status_reads[_READ_MAX] = {
        [READ_GOSSIP_MEMBERS] = { GOSSIP1_BUS_NAME, GOSSIP1_OBJECT_PATH, GOSSIP1_INTERFACE, "Members" },
        [READ_SHARD_NODES] = { SHARDSTORE1_BUS_NAME, SHARDSTORE1_OBJECT_PATH, SHARDSTORE1_INTERFACE, "Nodes" },
        [READ_SHARD_COLLECTIONS] = { SHARDSTORE1_BUS_NAME, SHARDSTORE1_OBJECT_PATH, SHARDSTORE1_INTERFACE,
                                     "Collections" },
        [READ_SHARD_SYNC] = { SHARDSTORE1_BUS_NAME, SHARDSTORE1_OBJECT_PATH, SHARDSTORE1_INTERFACE, "Sync" },
};

typedef struct StatusRequest {
        Manager *m;
        LIST_ENTRY(StatusRequest) link;
        struct evhttp_request *client;
        struct evhttp_connection *evcon;
        BusReads *reads;
} StatusRequest;

struct ShimStatus {
        ShimFlows flows;
        LIST_HEAD(, StatusRequest) requests;
        unsigned n_requests;
};

int status_new(ShimStatus **ret) {
        ShimStatus *s = calloc(1, sizeof(*s));

        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static void status_request_free(StatusRequest *sr) {
        if (!sr)
                return;
        bus_reads_free(sr->reads);
        LIST_REMOVE(sr, link);
        sr->m->status->n_requests--;
        free(sr);
}

ShimStatus *status_free(Manager *m, ShimStatus *s) {
        if (!s)
                return NULL;
        while (!LIST_EMPTY(&s->requests)) {
                StatusRequest *sr = LIST_FIRST(&s->requests);

                if (sr->evcon)
                        manager_client_unwatch(m, sr->evcon);
                status_request_free(sr);
        }
        free(s);
        return NULL;
}

void status_flow_target(Manager *m, uint64_t id, const char *to, const char *to_name, const char *model,
                        const char *uri) {
        if (m->status)
                shim_flows_target(&m->status->flows, id, to, to_name, model,
                                  metrics_endpoint_to_string(metrics_endpoint(uri)), now_usec());
}

void status_flow_end(Manager *m, uint64_t id, unsigned status, uint64_t tokens) {
        if (m->status)
                shim_flows_end(&m->status->flows, id, status, tokens, now_usec());
}

/* ---- the answer ---- */

/* The gossip members in the reply (NULL: gossipd did not answer): their entries stay in reply.
 * *ret is malloc()ed. */
static int read_members(sd_bus_message *reply, GossipMember **ret, size_t *ret_n) {
        _cleanup_free_ GossipMember *members = NULL;
        size_t n = 0, allocated = 0;
        int r;

        *ret = NULL;
        *ret_n = 0;
        if (!reply)
                return 0;
        r = bus_reply_enter_array(reply, GOSSIP_MEMBER_SIGNATURE);
        while (r >= 0) {
                GossipMember g;

                r = gossip_member_read(reply, &g);
                if (r <= 0)
                        break;
                if (n >= ROUTE_MAX_NODES)
                        continue;
                if (n == allocated) {
                        GossipMember *a = reallocarray(members, allocated ? allocated * 2 : 16, sizeof(*a));

                        if (!a)
                                return -ENOMEM;
                        members = a;
                        allocated = allocated ? allocated * 2 : 16;
                }
                members[n++] = g;
        }
        if (r < 0)
                return r;
        *ret = TAKE_PTR(members);
        *ret_n = n;
        return 0;
}

/* Whether ShardStore1.Nodes lists node id. */
static bool shard_runs_on(sd_bus_message *reply, const char *id) {
        int r;

        if (!reply)
                return false;
        r = bus_reply_enter_array(reply, "(ssb)");
        while (r >= 0) {
                const char *node, *url;
                int alive;

                r = sd_bus_message_read(reply, "(ssb)", &node, &url, &alive);
                if (r <= 0)
                        break;
                if (streq(node, id))
                        return true;
        }
        return false;
}

static const char *route_state(const RouteNode *n) {
        return n->up ? "up" : n->cooling ? "cooling" : "down";
}

static int status_nodes_add(json_object *a, const ShimStatusNode *n) {
        json_object *o = shim_status_node_json(n);

        if (!o || json_object_array_add(a, o) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        return 0;
}

static json_object *status_nodes_json(Manager *m, BusReads *reads) {
        const RouteTable *table = router_cache_table(m->router);
        sd_bus_message *shard_nodes = bus_reads_value(reads, READ_SHARD_NODES);
        _cleanup_free_ GossipMember *members = NULL;
        _cleanup_(json_object_putp) json_object *a = json_object_new_array();
        usec_t realtime = now_realtime_usec();
        size_t n_members = 0;
        int r;

        if (!a)
                return NULL;
        r = read_members(bus_reads_value(reads, READ_GOSSIP_MEMBERS), &members, &n_members);
        if (r < 0)
                log_debug_errno(r, "Failed to read Gossip1.Members for the status: %m");

        /* The routing table's nodes, with what gossip says of each. */
        for (size_t i = 0; i < table->n_nodes; i++) {
                const RouteNode *rn = &table->nodes[i];
                const GossipMember *g = NULL;
                ShimStatusNode n;

                for (size_t j = 0; j < n_members && !g; j++)
                        if (streq(members[j].id, rn->id))
                                g = &members[j];
                n = (ShimStatusNode) {
                        .id = rn->id, .name = rn->name, .gossip_state = g ? g->state : NULL,
                        .route_state = route_state(rn), .local = rn->local || streq(rn->id, m->node_id),
                        .api = g ? gossip_member_meta(g, "api") : NULL, .mesh = g ? gossip_member_meta(g, "mesh") : NULL,
                        .shard = shard_runs_on(shard_nodes, rn->id), .models = rn->models, .n_models = rn->n_models,
                        .in_flight = rn->in_flight, .capacity = rn->capacity, .ttft_usec = rn->ttfb_ewma_usec,
                        .cooling_left_usec = rn->cooling && rn->cooling_until > realtime ? rn->cooling_until - realtime : 0,
                };
                if (status_nodes_add(a, &n) < 0)
                        return NULL;
        }
        /* Members the table does not have: dead, left, or not read by routerd yet. */
        for (size_t j = 0; j < n_members; j++) {
                const GossipMember *g = &members[j];
                ShimStatusNode n;

                if (route_table_find((RouteTable *) table, g->id))
                        continue;
                n = (ShimStatusNode) {
                        .id = g->id, .name = g->name, .gossip_state = g->state, .local = streq(g->id, m->node_id),
                        .api = gossip_member_meta(g, "api"), .mesh = gossip_member_meta(g, "mesh"),
                        .shard = shard_runs_on(shard_nodes, g->id),
                };
                if (status_nodes_add(a, &n) < 0)
                        return NULL;
        }
        return TAKE_PTR(a);
}

static int status_collection_add(const ShardStoreCollection *c, void *userdata) {
        json_object *a = userdata, *o = json_object_new_object();

        if (!o || json_object_array_add(a, o) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        if (json_document_add(o, "name", json_object_new_string(c->name)) < 0 ||
            json_document_add(o, "model", json_object_new_string(c->model)) < 0 ||
            json_document_add(o, "dimension", json_object_new_uint64(c->dimension)) < 0 ||
            json_document_add(o, "shards", json_object_new_uint64(c->shards)) < 0 ||
            json_document_add(o, "replicas", json_object_new_uint64(c->replicas)) < 0 ||
            json_document_add(o, "documents", json_object_new_uint64(c->documents)) < 0)
                return -ENOMEM;
        /* The first STATUS_COLLECTIONS_MAX are listed. */
        return json_object_array_length(a) >= STATUS_COLLECTIONS_MAX;
}

static json_object *status_collections_json(sd_bus_message *reply) {
        _cleanup_(json_object_putp) json_object *a = json_object_new_array();

        if (!a || !reply)
                return TAKE_PTR(a);
        if (shardstore_collections_read(reply, status_collection_add, a) == -ENOMEM)
                return NULL;
        return TAKE_PTR(a);
}

/* ShardStore1.Sync as an object (null when shardd did not answer). */
static int status_sync_add(json_object *o, sd_bus_message *reply) {
        _cleanup_(json_object_putp) json_object *sync = NULL;
        size_t n = 0;
        int r;

        if (!reply)
                return json_object_object_add(o, "sync", NULL) < 0 ? -ENOMEM : 0;
        sync = json_object_new_object();
        if (!sync)
                return -ENOMEM;
        r = bus_reply_enter_array(reply, "{st}");
        while (r >= 0 && n++ < STATUS_SYNC_MAX) {
                const char *key;
                uint64_t v;

                r = sd_bus_message_read(reply, "{st}", &key, &v);
                if (r <= 0)
                        break;
                if (json_document_add(sync, key, json_object_new_uint64(v)) < 0)
                        return -ENOMEM;
        }
        return json_document_add(o, "sync", TAKE_PTR(sync));
}

static int status_render(Manager *m, BusReads *reads, char **ret, size_t *ret_size) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        json_object *node, *daemons, *requests;
        int r;

        if (!o)
                return -ENOMEM;
        r = json_document_add(o, "version", json_object_new_string(PACKAGE_VERSION));
        if (r >= 0)
                r = json_document_add(o, "node", node = json_object_new_object());
        if (r >= 0)
                r = json_document_add(node, "id", json_object_new_string(m->node_id));
        if (r >= 0)
                r = json_document_add(node, "name", json_object_new_string(strempty(m->node_name)));
        if (r >= 0)
                r = json_document_add(o, "policy", json_object_new_string(
                                       route_policy_to_string(router_cache_policy(m->router)) ?: "unknown"));
        if (r >= 0)
                r = json_document_add(o, "daemons", daemons = json_object_new_object());
        if (r >= 0)
                r = json_document_add(daemons, "shimd", json_object_new_boolean(true));
        if (r >= 0)
                r = json_document_add(daemons, "routerd", json_object_new_boolean(m->router_connected));
        if (r >= 0)
                r = json_document_add(daemons, "gossipd", json_object_new_boolean(!!bus_reads_value(reads, READ_GOSSIP_MEMBERS)));
        if (r >= 0)
                r = json_document_add(daemons, "shardd", json_object_new_boolean(!!bus_reads_value(reads, READ_SHARD_NODES)));
        if (r >= 0)
                r = json_document_add(o, "requests", requests = json_object_new_object());
        if (r >= 0)
                r = json_document_add(requests, "total", json_object_new_uint64(m->counters.requests_total));
        if (r >= 0)
                r = json_document_add(requests, "active", json_object_new_uint64(m->requests_active));
        if (r >= 0)
                r = json_document_add(requests, "failed", json_object_new_uint64(m->counters.requests_failed));
        if (r >= 0)
                r = json_document_add(requests, "resumed", json_object_new_uint64(m->counters.resumes));
        if (r >= 0)
                r = json_document_add(o, "nodes", status_nodes_json(m, reads));
        if (r >= 0)
                r = json_document_add(o, "flows", shim_flows_json(&m->status->flows, m->node_id, now_usec()));
        if (r >= 0)
                r = json_document_add(o, "collections", status_collections_json(bus_reads_value(reads, READ_SHARD_COLLECTIONS)));
        if (r >= 0)
                r = status_sync_add(o, bus_reads_value(reads, READ_SHARD_SYNC));
        if (r < 0)
                return r;
        return json_document_write(o, ret, ret_size);
}

static void status_reads_done(BusReads *reads, void *userdata) {
        StatusRequest *sr = userdata;
        Manager *m = sr->m;
        _cleanup_free_ char *text = NULL;
        struct evbuffer *buf = NULL;
        size_t size = 0;
        int r;

        manager_client_unwatch(m, sr->evcon);
        r = status_render(m, reads, &text, &size);
        if (r >= 0 && !(buf = evbuffer_new()))
                r = -ENOMEM;
        if (r >= 0 && evbuffer_add(buf, text, size) < 0)
                r = -ENOMEM;
        if (r < 0) {
                log_warning_errno(r, "Failed to write the status: %m");
                shim_reply_error(sr->client, 500, SHIM_ERROR_JSON, "could not write the status", false);
        } else {
                struct evkeyvalq *out = evhttp_request_get_output_headers(sr->client);

                (void) evhttp_add_header(out, "Content-Type", "application/json; charset=utf-8");
                (void) evhttp_add_header(out, "Cache-Control", "no-store");
                if (evhttp_request_get_command(sr->client) == EVHTTP_REQ_HEAD)
                        shim_reply_head(sr->client, size);
                else {
                        m->counters.bytes_to_clients += size;
                        evhttp_send_reply(sr->client, 200, NULL, buf);
                }
        }
        if (buf)
                evbuffer_free(buf);
        status_request_free(sr);
}

static void status_client_close_cb(struct evhttp_connection *evcon, void *userdata) {
        StatusRequest *sr = userdata;

        manager_client_gone(sr->m, evcon);
        sr->m->counters.client_cancelled++;
        if (!evhttp_request_get_connection(sr->client))
                evhttp_request_free(sr->client);
        status_request_free(sr);
}

bool status_handle(Manager *m, struct evhttp_request *req, const char *uri) {
        enum evhttp_cmd_type method = evhttp_request_get_command(req);
        StatusRequest *sr;
        int r;

        if (!shim_uri_is(uri, "/api/mycelia/status"))
                return false;
        if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
                shim_reply_error_with_header(req, 405, SHIM_ERROR_JSON, "method not allowed", false, "Allow",
                                             "GET, HEAD");
                return true;
        }
        if (m->status->n_requests >= STATUS_REQUESTS_MAX) {
                m->counters.rejected_busy++;
                shim_reply_error(req, 503, SHIM_ERROR_JSON, "too many status requests at once", false);
                return true;
        }
        sr = calloc(1, sizeof(*sr));
        if (!sr) {
                log_oom();
                shim_reply_error(req, 500, SHIM_ERROR_JSON, "out of memory", true);
                return true;
        }
        sr->m = m;
        sr->client = req;
        sr->evcon = evhttp_request_get_connection(req);
        LIST_INSERT_HEAD(&m->status->requests, sr, link);
        m->status->n_requests++;
        r = bus_reads_start(m, status_reads, _READ_MAX, STATUS_BUS_TIMEOUT_USEC, status_reads_done, sr, &sr->reads);
        if (r < 0) {
                status_request_free(sr);
                log_oom();
                shim_reply_error(req, 500, SHIM_ERROR_JSON, "out of memory", true);
                return true;
        }
        manager_client_watch(m, sr->evcon, status_client_close_cb, sr);
        return true;
}
