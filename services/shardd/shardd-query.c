/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Scatter-gather search (docs/shardd.md, "Reads"): every shard of the collection is asked of one
 * holder, this node first when it holds it, else the live holders in placement order; each peer
 * gets one request for all the shards it is asked for. A holder that fails passes its shards to
 * the next holder; a shard none can answer is named in "missing_shards" and the answer is
 * "partial": a dead shard never blocks a query. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "bus-names.h"
#include "json-cleanup.h"
#include "json-document.h"
#include "log.h"
#include "shardd-client.h"
#include "shardd-manager.h"
#include "shardd-reply.h"

#define QUERY_PEER_TIMEOUT_USEC (10 * USEC_PER_SEC)

/* One peer asked for some shards. */
typedef struct QueryPart {
        ShardQuery *query;
        ShardCall *call;
        char node_id[NODE_ID_LEN + 1];
} QueryPart;

struct ShardQuery {
        Manager *m;
        LIST_ENTRY(ShardQuery) link;
        char *collection;
        char *query_json;
        ShardQueryRequest q;
        sd_bus_message *reply_to;
        ShardAnswer answer;
        unsigned n_shards;
        /* Per shard: how many of its holders were tried, done (answered), and who is asked now. */
        unsigned *tried;
        bool *done;
        char (*asked)[NODE_ID_LEN + 1];
        ssize_t *part_of;       /* the part shard i was sent in, -1: none (not asked, or waiting
                                 * for its node's part in flight to end) */
        QueryPart *parts;
        size_t n_parts, n_pending;
};

static void query_free(ShardQuery *qr) {
        LIST_REMOVE(qr, link);
        for (size_t i = 0; i < qr->n_parts; i++)
                shard_call_cancel(qr->parts[i].call);
        free(qr->parts);
        free(qr->tried);
        free(qr->done);
        free(qr->asked);
        free(qr->part_of);
        shard_answer_done(&qr->answer);
        shard_query_request_done(&qr->q);
        sd_bus_message_unref(qr->reply_to);
        free(qr->collection);
        free(qr->query_json);
        free(qr);
}

static void query_reply(ShardQuery *qr) {
        _cleanup_free_ unsigned *missing = calloc(qr->n_shards, sizeof(unsigned));
        _cleanup_free_ char *json = NULL;
        size_t n_missing = 0;
        int r;

        if (!missing) {
                (void) sd_bus_reply_method_errno(qr->reply_to, ENOMEM, NULL);
                query_free(qr);
                return;
        }
        for (unsigned i = 0; i < qr->n_shards; i++)
                if (!qr->done[i])
                        missing[n_missing++] = i;
        if (n_missing > 0)
                log_notice("Search of '%s': %zu of %u shards have no holder that answered.", qr->collection, n_missing,
                           qr->n_shards);
        shard_answer_top(&qr->answer, qr->q.k);
        r = shard_answer_format(&qr->answer, missing, n_missing, &json);
        if (r < 0)
                (void) sd_bus_reply_method_errno(qr->reply_to, -r, NULL);
        else if (strlen(json) > SHARD_REQUEST_SIZE_MAX)
                (void) sd_bus_reply_method_errorf(qr->reply_to, SHARDSTORE1_ERROR_TOO_LARGE,
                                                  "the answer would be larger than %u bytes; ask for fewer results (\"k\")",
                                                  SHARD_REQUEST_SIZE_MAX);
        else
                (void) sd_bus_reply_method_return(qr->reply_to, "s", json);
        query_free(qr);
}

static int query_dispatch(ShardQuery *qr);

static void query_part_cb(ShardCall *call, int status, struct evbuffer *body, void *userdata) {
        QueryPart *p = userdata;
        ShardQuery *qr = p->query;
        bool ok = false;

        _cleanup_free_ bool *not_ready = calloc(qr->n_shards, sizeof(bool));

        p->call = NULL;
        if (status == 200 && body && not_ready) {
                size_t n = evbuffer_get_length(body);
                const void *data = evbuffer_pullup(body, -1);
                int r = data || n == 0 ? shard_answer_parse(&qr->answer, data ?: "", n, not_ready, qr->n_shards) : -ENOMEM;

                ok = r >= 0;
                if (r < 0)
                        log_warning_errno(r, "Search of '%s': node %s sent an answer that cannot be read: %m",
                                          qr->collection, p->node_id);
        } else
                log_notice("Search of '%s': node %s did not answer (%d); asking the next holders.", qr->collection,
                           p->node_id, status);
        /* Shards it answered are done; those it failed or whose copy is not complete there go to
         * their next holders. */
        for (unsigned i = 0; i < qr->n_shards; i++)
                if (qr->part_of[i] == p - qr->parts) {
                        qr->part_of[i] = -1;
                        qr->asked[i][0] = '\0';
                        qr->done[i] = ok && !not_ready[i];
                }
        qr->n_pending--;
        /* Failed shards go to their next holders, in a new round. */
        if (query_dispatch(qr) <= 0 && qr->n_pending == 0)
                query_reply(qr);
}

/* The next holder of shard i to ask, NULL when none is left: this node first when its copy is
 * complete, then the other live holders in placement order, then suspects. A copy here that is
 * not complete is not asked at all while another holder may have one (it is once none is left). */
static const char *query_next_holder(ShardQuery *qr, ShardedCollection *c, unsigned i) {
        const char *holders[SHARD_REPLICAS_MAX], *order[SHARD_REPLICAS_MAX];
        size_t n = manager_holders(qr->m, c->config, i, holders), k = 0;
        bool self_ready = manager_shard_ready(qr->m, c, i);

        for (int pass = 0; pass < 3; pass++)
                for (size_t h = 0; h < n; h++) {
                        const ShardPeer *p = shard_members_find(&qr->m->members, holders[h]);
                        bool self = streq(holders[h], qr->m->node_id), alive = p && p->alive;

                        if ((pass == 0 && self && self_ready) || (pass == 1 && !self && alive) ||
                            (pass == 2 && !self && !alive))
                                order[k++] = holders[h];
                }
        return qr->tried[i] < k ? order[qr->tried[i]++] : NULL;
}

/* One round of query_dispatch(): *ret_retry when a peer could not be asked (its shards then
 * need their next holders). */
static int query_dispatch_round(ShardQuery *qr, bool *ret_retry) {
        Manager *m = qr->m;
        ShardedCollection *c = manager_collection(m, qr->collection);
        _cleanup_free_ bool *local = NULL;
        bool any_local = false;
        int sent = 0;

        if (!c)
                return 0;       /* deleted meanwhile: what came so far is the answer */
        local = calloc(qr->n_shards, sizeof(bool));
        if (!local)
                return 0;
        for (unsigned i = 0; i < qr->n_shards; i++) {
                const char *node;

                if (qr->done[i] || qr->asked[i][0])
                        continue;
                node = query_next_holder(qr, c, i);
                if (!node)
                        continue;
                if (streq(node, m->node_id)) {
                        local[i] = any_local = true;
                        continue;
                }
                snprintf(qr->asked[i], sizeof(qr->asked[i]), "%s", node);
        }
        if (any_local) {
                int r = manager_search_local(m, c, &qr->q, local, &qr->answer);

                for (unsigned i = 0; i < qr->n_shards; i++)
                        if (local[i])
                                qr->done[i] = r >= 0;
                if (r < 0)
                        log_warning_errno(r, "Search of '%s' on this node failed: %m", qr->collection);
        }
        /* One request per peer asked in this round. */
        for (unsigned i = 0; i < qr->n_shards; i++) {
                _cleanup_free_ char *body = NULL, *target = NULL, *shards = NULL;
                const ShardPeer *peer;
                size_t len = 0;
                FILE *f;
                QueryPart *p;
                bool seen = false;
                int r;

                if (qr->done[i] || !qr->asked[i][0] || qr->part_of[i] >= 0)
                        continue;
                for (size_t k = 0; k < qr->n_parts && !seen; k++)
                        seen = streq(qr->parts[k].node_id, qr->asked[i]) && qr->parts[k].call;
                if (seen)
                        continue;
                f = open_memstream(&shards, &len);
                if (!f)
                        return sent;
                for (unsigned j = i; j < qr->n_shards; j++)
                        if (!qr->done[j] && qr->part_of[j] < 0 && streq(qr->asked[j], qr->asked[i])) {
                                fprintf(f, "%s%u", j == i ? "" : ",", j);
                                qr->part_of[j] = (ssize_t) qr->n_parts;
                        }
                fclose(f);
                peer = shard_members_find(&m->members, qr->asked[i]);
                if (asprintf(&body, "{\"shards\":[%s],\"query\":%s}", shards, qr->query_json) < 0 ||
                    asprintf(&target, "/shard/search?collection=%s", qr->collection) < 0) {
                        /* Out of memory: these shards are left unanswered (missing). */
                        for (unsigned j = i; j < qr->n_shards; j++)
                                if (qr->part_of[j] == (ssize_t) qr->n_parts) {
                                        qr->part_of[j] = -1;
                                        qr->asked[j][0] = '\0';
                                        qr->tried[j] = UINT_MAX / 2;
                                }
                        return sent;
                }
                p = &qr->parts[qr->n_parts];
                *p = (QueryPart) { .query = qr };
                snprintf(p->node_id, sizeof(p->node_id), "%s", qr->asked[i]);
                r = peer ? shard_call(m, p->node_id, peer->url, EVHTTP_REQ_POST, target, body, strlen(body),
                                      QUERY_PEER_TIMEOUT_USEC, query_part_cb, p, &p->call)
                         : -ENOENT;
                if (r < 0) {
                        log_debug_errno(r, "Search of '%s': cannot ask node %s: %m", qr->collection, p->node_id);
                        for (unsigned j = i; j < qr->n_shards; j++)
                                if (qr->part_of[j] == (ssize_t) qr->n_parts) {
                                        qr->part_of[j] = -1;
                                        qr->asked[j][0] = '\0';
                                }
                        *ret_retry = true;
                        continue;
                }
                qr->n_parts++;
                qr->n_pending++;
                sent++;
        }
        return sent;
}

/* Asks every shard that is neither answered nor being asked of its next holder: this node's own
 * at once, peers with one request each. Returns how many peer requests went out. */
static int query_dispatch(ShardQuery *qr) {
        int sent = 0;

        /* Each round that fails to send moves some shard on to its next holder: it ends. */
        for (;;) {
                bool retry = false;

                sent += query_dispatch_round(qr, &retry);
                if (!retry)
                        return sent;
        }
}

int manager_query_start(Manager *m, ShardedCollection *c, const char *query_json, ShardQueryRequest *q,
                        sd_bus_message *reply_to) {
        unsigned n = c->config->n_shards;
        ShardQuery *qr;

        qr = calloc(1, sizeof(*qr));
        if (!qr)
                return -ENOMEM;
        *qr = (ShardQuery) { .m = m, .n_shards = n, .q = *q, .reply_to = sd_bus_message_ref(reply_to) };
        *q = (ShardQueryRequest) {};
        LIST_INSERT_HEAD(&m->queries, qr, link);
        qr->collection = strdup(c->config->name);
        qr->query_json = strdup(query_json);
        qr->tried = calloc(n, sizeof(unsigned));
        qr->done = calloc(n, sizeof(bool));
        qr->asked = calloc(n, sizeof(*qr->asked));
        qr->part_of = malloc(n * sizeof(ssize_t));
        for (unsigned i = 0; qr->part_of && i < n; i++)
                qr->part_of[i] = -1;
        /* Each shard is asked of at most 2 * R holders in all: room for every part. */
        qr->parts = calloc((size_t) n * 2 * SHARD_REPLICAS_MAX, sizeof(QueryPart));
        if (!qr->collection || !qr->query_json || !qr->tried || !qr->done || !qr->asked || !qr->part_of || !qr->parts) {
                query_free(qr);
                return -ENOMEM;
        }
        if (query_dispatch(qr) == 0 && qr->n_pending == 0)
                query_reply(qr);
        return 0;
}

void manager_queries_cancel_all(Manager *m) {
        while (!LIST_EMPTY(&m->queries)) {
                ShardQuery *qr = LIST_FIRST(&m->queries);

                (void) sd_bus_reply_method_errorf(qr->reply_to, SD_BUS_ERROR_FAILED, "the shard store is stopping");
                query_free(qr);
        }
}

/* POST /shard/search?collection=NAME {"shards": [...], "query": {...}}: this node's top k over
 * those shards. */
void manager_peer_search(Manager *m, struct evhttp_request *req, const char *collection) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        _cleanup_(json_object_putp) json_object *o = NULL;
        _cleanup_(shard_query_request_done) ShardQueryRequest q = {};
        _cleanup_(shard_answer_done) ShardAnswer answer = {};
        _cleanup_free_ bool *shards = NULL;
        _cleanup_free_ unsigned *not_ready = NULL;
        _cleanup_free_ char *json = NULL, *error = NULL;
        ShardedCollection *c = manager_collection(m, collection);
        size_t n_not_ready = 0;
        json_object *list, *query;
        int r;

        if (!c) {
                shard_peer_reply_error(req, 404, "Not Found", "unknown collection");
                return;
        }
        r = json_document_parse(evbuffer_pullup(in, -1) ?: (void *) "", evbuffer_get_length(in), &o);
        if (r < 0 || !json_object_object_get_ex(o, "shards", &list) || !json_object_is_type(list, json_type_array) ||
            !json_object_object_get_ex(o, "query", &query)) {
                shard_peer_reply_error(req, 400, "Bad Request", "malformed search");
                return;
        }
        shards = calloc(c->config->n_shards, sizeof(bool));
        if (!shards) {
                shard_peer_reply_error(req, 500, "Internal Server Error", "out of memory");
                return;
        }
        not_ready = calloc(c->config->n_shards, sizeof(unsigned));
        if (!not_ready) {
                shard_peer_reply_error(req, 500, "Internal Server Error", "out of memory");
                return;
        }
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                int64_t s = json_object_get_int64(json_object_array_get_idx(list, i));

                if (s < 0 || s >= c->config->n_shards || shards[s])
                        continue;
                /* A copy that is not complete here is not searched: the asker tries another holder. */
                if (manager_shard_ready(m, c, (unsigned) s))
                        shards[s] = true;
                else
                        not_ready[n_not_ready++] = (unsigned) s;
        }
        r = shard_query_request_from_object(query, c->config->dimension, &q, &error);
        if (r >= 0)
                r = manager_search_local(m, c, &q, shards, &answer);
        if (r >= 0)
                r = shard_answer_format_peer(&answer, not_ready, n_not_ready, &json);
        if (r < 0) {
                shard_peer_reply_error(req, r == -ENOMEM ? 500 : 400, r == -ENOMEM ? "Internal Server Error" : "Bad Request",
                                 "search failed");
                return;
        }
        shard_peer_reply_json(req, json);
}

/* ---- one document ---- */

struct ShardGet {
        Manager *m;
        LIST_ENTRY(ShardGet) link;
        char *collection;
        char *id;
        sd_bus_message *reply_to;
        ShardCall *call;
        const char *holders[SHARD_REPLICAS_MAX];
        char holder_ids[SHARD_REPLICAS_MAX][NODE_ID_LEN + 1];
        size_t n_holders, next;
};

static void get_free(ShardGet *g) {
        LIST_REMOVE(g, link);
        shard_call_cancel(g->call);
        sd_bus_message_unref(g->reply_to);
        free(g->collection);
        free(g->id);
        free(g);
}

/* This node's copy as JSON: 0, -ENOENT when it has none. */
static int get_local(Manager *m, const char *collection, const char *id, char **ret) {
        _cleanup_free_ ShardDoc *doc = NULL;
        int r;

        r = shard_store_get(m->store, collection, id, 0, &doc);
        if (r < 0)
                return r == -EINVAL ? -ENOENT : r;
        return shard_document_format(doc, ret);
}

static void get_next(ShardGet *g);

static void get_part_cb(ShardCall *call, int status, struct evbuffer *body, void *userdata) {
        ShardGet *g = userdata;

        g->call = NULL;
        if (status == 200 && body) {
                _cleanup_free_ char *json = strndup((const char *) evbuffer_pullup(body, -1) ?: "",
                                                    evbuffer_get_length(body));

                if (json) {
                        (void) sd_bus_reply_method_return(g->reply_to, "s", json);
                        get_free(g);
                        return;
                }
        }
        get_next(g);
}

/* Asks the next holder; answers NotFound when none is left. */
static void get_next(ShardGet *g) {
        Manager *m = g->m;

        while (g->next < g->n_holders) {
                const char *node = g->holders[g->next++];
                const ShardPeer *peer = shard_members_find(&m->members, node);
                _cleanup_free_ char *target = NULL, *id = NULL;
                char *json = NULL;

                if (streq(node, m->node_id)) {
                        if (get_local(m, g->collection, g->id, &json) >= 0) {
                                (void) sd_bus_reply_method_return(g->reply_to, "s", json);
                                free(json);
                                get_free(g);
                                return;
                        }
                        continue;
                }
                id = evhttp_encode_uri(g->id);
                if (!peer || !peer->alive || !id ||
                    asprintf(&target, "/shard/get?collection=%s&id=%s", g->collection, id) < 0)
                        continue;
                if (shard_call(m, node, peer->url, EVHTTP_REQ_GET, target, NULL, 0, QUERY_PEER_TIMEOUT_USEC, get_part_cb,
                               g, &g->call) >= 0)
                        return;
        }
        (void) sd_bus_reply_method_errorf(g->reply_to, SHARDSTORE1_ERROR_NOT_FOUND, "document \"%s\" not found", g->id);
        get_free(g);
}

int manager_get_start(Manager *m, ShardedCollection *c, const char *id, sd_bus_message *reply_to) {
        int shard = shard_of(c->config->name, id, c->config->n_shards);
        const char *holders[SHARD_REPLICAS_MAX];
        size_t n, k = 0;
        ShardGet *g;

        if (shard < 0)
                return shard;
        g = calloc(1, sizeof(*g));
        if (!g)
                return -ENOMEM;
        *g = (ShardGet) { .m = m, .reply_to = sd_bus_message_ref(reply_to) };
        LIST_INSERT_HEAD(&m->gets, g, link);
        g->collection = strdup(c->config->name);
        g->id = strdup(id);
        if (!g->collection || !g->id) {
                get_free(g);
                return -ENOMEM;
        }
        /* This node first when it holds the shard and its copy is complete, then the others in
         * placement order (this node's incomplete copy last). */
        n = manager_holders(m, c->config, (unsigned) shard, holders);
        bool self_first = manager_shard_ready(m, c, (unsigned) shard);
        for (int pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < n; i++)
                        if ((pass == 0) == (streq(holders[i], m->node_id) == self_first)) {
                                snprintf(g->holder_ids[k], sizeof(g->holder_ids[k]), "%s", holders[i]);
                                g->holders[k] = g->holder_ids[k];
                                k++;
                        }
        g->n_holders = k;
        get_next(g);
        return 0;
}

void manager_gets_cancel_all(Manager *m) {
        while (!LIST_EMPTY(&m->gets)) {
                ShardGet *g = LIST_FIRST(&m->gets);

                (void) sd_bus_reply_method_errorf(g->reply_to, SD_BUS_ERROR_FAILED, "the shard store is stopping");
                get_free(g);
        }
}

void manager_peer_get(Manager *m, struct evhttp_request *req, const char *collection, const char *id) {
        _cleanup_free_ char *json = NULL;
        int r;

        r = id && manager_collection(m, collection) ? get_local(m, collection, id, &json) : -ENOENT;
        if (r < 0) {
                shard_peer_reply_error(req, r == -ENOENT ? 404 : 500, r == -ENOENT ? "Not Found" : "Error",
                                       r == -ENOENT ? "no such document" : "unreadable");
                return;
        }
        shard_peer_reply_json(req, json);
}
