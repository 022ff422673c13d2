/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The HTTP edge of the collections API (shimd-collections.h): one CollectionRequest per client
 * request, a chain of at most three asynchronous steps (read the collection's model, embed the
 * texts through this shim's own /api/embed, call ShardStore1), the client watched throughout so
 * that one that leaves cancels what is in flight. Paths, errors and bodies: shim-collections.c. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <stdio.h>

#include "bus-names.h"
#include "json-cleanup.h"
#include "json-document.h"
#include "log.h"
#include "shim-collections.h"
#include "shim-request.h"
#include "shimd-audit.h"
#include "shimd-clients.h"
#include "shim-request.h"
#include "shimd-collections.h"
#include "shimd-errors.h"
#include "shimd-shardstore.h"

/* The system bus's dbus-daemon drops a connection that sends a message over its
 * max_message_size (32 MiB by default), and with it the shim's routing: an argument larger than
 * this is refused with 413 before it is sent. */
#define COLLECTIONS_BUS_ARG_MAX ((32U << 20) - (64U << 10))
/* The largest answer the embedding request may bring; what could be stored is smaller still. */
#define COLLECTIONS_EMBED_ANSWER_MAX (64U << 20)

typedef struct CollectionRequest CollectionRequest;

/* What a request does with its embeddings (an array of n vectors, borrowed for the call). */
typedef void (*CollectionEmbeddedFn)(CollectionRequest *c, json_object *embeddings);

struct CollectionRequest {
        Manager *m;
        LIST_ENTRY(CollectionRequest) link;
        uint64_t id;
        char *target;                   /* the request target, for the log */
        const char *method;
        ShimCollectionsPath path;
        struct evhttp_request *client;
        struct evhttp_connection *client_evcon;
        usec_t t_start;

        json_object *body;              /* POST: the parsed body, changed before it goes on */
        ShimCollectionSpec spec;        /* create: borrowed from body */

        /* Texts to embed (borrowed from body), where their embeddings go, and with what model. */
        const char **texts;
        size_t *indexes;
        size_t n_texts;
        char *model;
        CollectionEmbeddedFn embedded;

        sd_bus_slot *call;              /* the ShardStore1 call in flight */

        /* The embedding request to this shim's own API. */
        struct evhttp_connection *embed_conn;
        struct evhttp_request *embed_req;       /* while in flight */
        struct evbuffer *embed_answer;
        int embed_status;               /* 0: no answer */
        int embed_error;                /* enum evhttp_request_error, -1 when none */
        struct event *embed_done;       /* continues from the loop, after libevent's callback */
};

static const char *collections_method(enum evhttp_cmd_type t) {
        switch (t) {
        case EVHTTP_REQ_GET: return "GET";
        case EVHTTP_REQ_POST: return "POST";
        case EVHTTP_REQ_DELETE: return "DELETE";
        default: return "OTHER";
        }
}

static void collection_log(CollectionRequest *c, int level, int status, const char *error) {
        char fields[64];

        /* Called once as each request ends, with the client's request still there. */
        shim_audit_request(SHIM_LISTENER_API, c->client, status, c->model, NULL, c->t_start);
        if (level > log_get_max_level())
                return;
        snprintf(fields, sizeof(fields), "REQUEST_ID=%" PRIu64, c->id);
        log_fields(level, fields, "%s %s -> %d, %" PRIu64 " ms%s%s", c->method, c->target, status,
                   (now_usec() - c->t_start) / USEC_PER_MSEC, error ? ": " : "", strempty(error));
}

static void collection_free(CollectionRequest *c) {
        Manager *m = c->m;

        LIST_REMOVE(c, link);
        m->requests_active--;
        manager_drain_check(m);
        /* Unreferencing the slot drops the reply; freeing the connection cancels the embedding
         * (libevent frees its requests without calling them back). */
        sd_bus_slot_unref(c->call);
        if (c->embed_conn)
                evhttp_connection_free(c->embed_conn);
        if (c->embed_done)
                event_free(c->embed_done);
        if (c->embed_answer)
                evbuffer_free(c->embed_answer);
        json_object_put(c->body);
        free(c->texts);
        free(c->indexes);
        free(c->model);
        shim_collections_path_done(&c->path);
        free(c->target);
        free(c);
}

/* Answers 200 with json and frees c. */
static void collection_reply(CollectionRequest *c, const char *json, size_t len) {
        struct evkeyvalq *out = evhttp_request_get_output_headers(c->client);
        struct evbuffer *buf = evbuffer_new();

        manager_client_unwatch(c->m, c->client_evcon);
        if (!buf || evbuffer_add(buf, json, len) < 0) {
                log_oom();
                shim_reply_error(c->client, 500, SHIM_ERROR_JSON, "out of memory", true);
        } else {
                (void) evhttp_add_header(out, "Content-Type", "application/json; charset=utf-8");
                (void) evhttp_add_header(out, SHIM_SERVED_BY_HEADER, c->m->node_name);
                c->m->counters.bytes_to_clients += len;
                evhttp_send_reply(c->client, 200, NULL, buf);
                collection_log(c, LOG_DEBUG, 200, NULL);
        }
        if (buf)
                evbuffer_free(buf);
        collection_free(c);
}

/* Answers status with an Ollama error object and frees c. */
static void collection_fail(CollectionRequest *c, int status, const char *message) {
        manager_client_unwatch(c->m, c->client_evcon);
        c->m->counters.requests_failed++;
        collection_log(c, status >= 500 ? LOG_WARNING : LOG_DEBUG, status, message);
        shim_reply_error(c->client, status, SHIM_ERROR_JSON, message, false);
        collection_free(c);
}

static void collection_reply_object(CollectionRequest *c, json_object *o) {
        _cleanup_free_ char *text = NULL;
        size_t len;

        if (!o || json_document_write(o, &text, &len) < 0) {
                log_oom();
                collection_fail(c, 500, "out of memory");
                return;
        }
        collection_reply(c, text, len);
}

/* The client went away (closed, reset, timed out): whatever is in flight is dropped. A call
 * shardd already received still completes there; only its answer is lost. */
static void collection_client_close_cb(struct evhttp_connection *evcon, void *userdata) {
        CollectionRequest *c = userdata;

        manager_client_gone(c->m, evcon);
        c->m->counters.client_cancelled++;
        collection_log(c, LOG_DEBUG, 499, "client went away");
        /* A request detached from its failed connection is ours to free (as in the relay). */
        if (!evhttp_request_get_connection(c->client))
                evhttp_request_free(c->client);
        c->client = NULL;
        collection_free(c);
}

/* ---- ShardStore1 ---- */

/* A call that could not be sent: answered to the client. */
static void collection_call_failed(CollectionRequest *c, int r) {
        if (r == -ENOTCONN)
                collection_fail(c, 503, SHIM_COLLECTIONS_NOT_RUNNING);
        else if (r == -EINVAL)
                /* sd-bus refuses strings that are not valid UTF-8 (a D-Bus rule). */
                collection_fail(c, 400, "the request is not valid UTF-8");
        else {
                log_warning_errno(r, "Failed to call %s: %m", SHARDSTORE1_BUS_NAME);
                collection_fail(c, 500, r == -ENOMEM ? "out of memory" : SHIM_COLLECTIONS_FAILED);
        }
}

/* Takes the reply of the call in flight: true (and the client answered) when it is an error. */
static bool collection_bus_failed(CollectionRequest *c, sd_bus_message *reply) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        const char *message;
        int status;

        c->call = sd_bus_slot_unref(c->call);
        if (!e)
                return false;
        status = shim_collections_bus_error_status(e->name, e->message, &message);
        if (status == 500)
                /* The client reads a fixed text; what happened goes to the log. */
                log_warning("%s failed: %s: %s", SHARDSTORE1_BUS_NAME, strempty(e->name), strempty(e->message));
        collection_fail(c, status, message);
        return true;
}

static void collection_reply_malformed(CollectionRequest *c, int r) {
        log_warning_errno(r, "Unexpected reply from %s: %m", SHARDSTORE1_BUS_NAME);
        collection_fail(c, 500, SHIM_COLLECTIONS_FAILED);
}

/* Replies that carry nothing: the client gets {}. */
static int collection_empty_reply_cb(sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        CollectionRequest *c = userdata;

        if (!collection_bus_failed(c, reply))
                collection_reply(c, "{}", 2);
        return 0;
}

/* Replies with one JSON string, passed through (Get, Search). */
static int collection_json_reply_cb(sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        CollectionRequest *c = userdata;
        const char *json;
        int r;

        if (collection_bus_failed(c, reply))
                return 0;
        r = sd_bus_message_read(reply, "s", &json);
        if (r < 0)
                collection_reply_malformed(c, r);
        else
                collection_reply(c, json, strlen(json));
        return 0;
}

/* A reply whose answer is {key: [...]}: fill makes the array's items from the reply. */
typedef int (*CollectionFillFn)(CollectionRequest *c, sd_bus_message *reply, json_object *array);

static void collection_reply_array(CollectionRequest *c, sd_bus_message *reply, const char *key,
                                   CollectionFillFn fill) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object(), *array = json_object_new_array();
        int r;

        if (collection_bus_failed(c, reply))
                return;
        if (!o || !array) {
                collection_fail(c, 500, "out of memory");
                return;
        }
        r = fill(c, reply, array);
        if (r < 0) {
                collection_reply_malformed(c, r);
                return;
        }
        (void) json_object_object_add(o, key, TAKE_PTR(array));
        collection_reply_object(c, o);
}

static int collection_fill_ids(CollectionRequest *c, sd_bus_message *reply, json_object *ids) {
        const char *id;
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "s");
        while (r >= 0 && (r = sd_bus_message_read(reply, "s", &id)) > 0)
                if (json_object_array_add(ids, json_object_new_string(id)) < 0)
                        r = -ENOMEM;
        return r;
}

static int collection_put_reply_cb(sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        collection_reply_array(userdata, reply, "ids", collection_fill_ids);
        return 0;
}

static int collection_create_reply_cb(sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        CollectionRequest *c = userdata;
        _cleanup_(json_object_putp) json_object *o = NULL;

        if (collection_bus_failed(c, reply))
                return 0;
        o = shim_collections_info_to_json(&(ShimCollectionInfo) {
                .name = c->spec.name,
                .dimension = c->spec.dimension,
                .metric = c->spec.metric,
                .model = c->spec.model,
                .documents = -1,
        });
        collection_reply_object(c, o);
        return 0;
}

/* Sends a body (Put, Search) to shardd, refused when it is too large for the bus. */
static void collection_send_body(CollectionRequest *c, const char *member, sd_bus_message_handler_t cb) {
        _cleanup_free_ char *json = NULL;
        char message[160];
        size_t len;
        int r;

        r = json_document_write(c->body, &json, &len);
        if (r < 0) {
                collection_fail(c, 500, "out of memory");
                return;
        }
        if (len > COLLECTIONS_BUS_ARG_MAX) {
                snprintf(message, sizeof(message), "request too large for the shard store: %zu bytes of JSON, "
                         "at most %u in one request", len, COLLECTIONS_BUS_ARG_MAX);
                collection_fail(c, 413, message);
                return;
        }
        r = shardstore_call(c->m, &c->call, SHARDSTORE1_INTERFACE, member, cb, c, "ss", c->path.name, json);
        if (r < 0)
                collection_call_failed(c, r);
}

static void collection_create(CollectionRequest *c) {
        int r;

        r = shardstore_call(c->m, &c->call, SHARDSTORE1_INTERFACE, "CreateCollection", collection_create_reply_cb, c,
                            "suss", c->spec.name, c->spec.dimension, c->spec.metric, c->spec.model);
        if (r < 0)
                collection_call_failed(c, r);
}

/* ---- the Collections property ---- */

/* Reads the Collections property (the list, or a collection's model); cb gets the reply. */
static void collection_get_collections(CollectionRequest *c, sd_bus_message_handler_t cb) {
        int r;

        r = shardstore_call(c->m, &c->call, "org.freedesktop.DBus.Properties", "Get", cb, c, "ss",
                            SHARDSTORE1_INTERFACE, "Collections");
        if (r < 0)
                collection_call_failed(c, r);
}

static int collections_list_add(const ShardStoreCollection *c, void *userdata) {
        json_object *o = shim_collections_info_to_json(&(ShimCollectionInfo) {
                .name = c->name, .dimension = c->dimension, .metric = c->metric, .model = c->model,
                .documents = (int64_t) MIN(c->documents, (uint64_t) INT64_MAX) });

        if (!o || json_object_array_add(userdata, o) < 0) {
                json_object_put(o);
                return -ENOMEM;
        }
        return 0;
}

static int collection_fill_list(CollectionRequest *c, sd_bus_message *reply, json_object *list) {
        return shardstore_collections_read(reply, collections_list_add, list);
}

static int collection_list_reply_cb(sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        collection_reply_array(userdata, reply, "collections", collection_fill_list);
        return 0;
}


/* ---- embedding through this shim's own API ---- */

static void collection_embed_response_cb(struct evhttp_request *req, void *userdata) {
        CollectionRequest *c = userdata;

        c->embed_req = NULL;
        /* NULL, or no response code: refused, reset, timed out, too large. */
        c->embed_status = req ? evhttp_request_get_response_code(req) : 0;
        if (c->embed_status != 0 && (c->embed_answer = evbuffer_new()))
                (void) evbuffer_add_buffer(c->embed_answer, evhttp_request_get_input_buffer(req));
        /* The connection is freed with c, which may happen next: not inside its own callback. */
        event_active(c->embed_done, EV_TIMEOUT, 1);
}

static void collection_embed_error_cb(enum evhttp_request_error error, void *userdata) {
        CollectionRequest *c = userdata;

        c->embed_error = (int) error;
}

static void collection_embed_done_cb(evutil_socket_t fd, short what, void *userdata) {
        _cleanup_(json_object_putp) json_object *answer = NULL;
        CollectionRequest *c = userdata;
        size_t len = c->embed_answer ? evbuffer_get_length(c->embed_answer) : 0;
        json_object *embeddings;
        char message[512];

        if (len > 0)
                (void) json_document_parse(evbuffer_pullup(c->embed_answer, -1), len, &answer);
        if (c->embed_status != 200) {
                const char *e = answer ? shim_collections_answer_error(answer) : NULL;
                int status = c->embed_error == EVREQ_HTTP_DATA_TOO_LONG
                                     ? 413 : shim_collections_embed_error_status(c->embed_status);

                if (c->embed_error == EVREQ_HTTP_DATA_TOO_LONG)
                        snprintf(message, sizeof(message), "embedding with model '%.200s': the embeddings are larger "
                                 "than %u bytes; send fewer texts at once", c->model, COLLECTIONS_EMBED_ANSWER_MAX);
                else if (e)
                        snprintf(message, sizeof(message), "embedding with model '%.200s' failed: %.250s", c->model, e);
                else
                        snprintf(message, sizeof(message), "embedding with model '%.200s' failed: %s", c->model,
                                 c->embed_status ? "the mesh answered with an error" : "no answer");
                collection_fail(c, status, message);
                return;
        }
        if (!answer || shim_collections_embeddings(answer, c->n_texts, &embeddings) < 0) {
                snprintf(message, sizeof(message), "embedding with model '%.200s' gave no embedding of the expected "
                         "shape", c->model);
                collection_fail(c, 502, message);
                return;
        }
        c->embedded(c, embeddings);
}

/* Embeds c->texts with c->model in one /api/embed request to this shim's own API listener over
 * loopback, so that routing and the split fan-out apply as for any client; then c->embedded. */
static void collection_embed(CollectionRequest *c) {
        _cleanup_free_ char *body = NULL;
        const char *auth;
        Manager *m = c->m;
        HttpBaseUrl self;
        struct evkeyvalq *h;
        size_t len;
        int r;

        if (m->draining) {
                collection_fail(c, 503, "server is shutting down");
                return;
        }
        r = shim_collections_self_url(m->api.address, &self);
        if (r < 0) {
                log_warning_errno(r, "Cannot reach this shim's own API at '%s' to embed: %m", m->api.address);
                collection_fail(c, 500, "this node cannot embed texts: its API address is not known");
                return;
        }
        r = shim_collections_embed_body(c->model, c->texts, c->n_texts, &body, &len);
        if (r < 0) {
                collection_fail(c, 500, "out of memory");
                return;
        }
        c->embed_error = -1;
        c->embed_done = event_new(m->base, -1, 0, collection_embed_done_cb, c);
        c->embed_conn = evhttp_connection_base_new(m->base, NULL, self.host, self.port);
        c->embed_req = evhttp_request_new(collection_embed_response_cb, c);
        if (!c->embed_done || !c->embed_conn || !c->embed_req) {
                if (c->embed_req)
                        evhttp_request_free(c->embed_req);
                c->embed_req = NULL;
                collection_fail(c, 500, "out of memory");
                return;
        }
        evhttp_connection_set_timeout_tv(c->embed_conn, &m->upstream_tv);
        evhttp_connection_set_max_body_size(c->embed_conn, COLLECTIONS_EMBED_ANSWER_MAX);
        evhttp_connection_set_retries(c->embed_conn, 0);
        evhttp_request_set_error_cb(c->embed_req, collection_embed_error_cb);
        h = evhttp_request_get_output_headers(c->embed_req);
        (void) evhttp_add_header(h, "Host", self.hostport);
        (void) evhttp_add_header(h, "Content-Type", "application/json");
        /* As the client: its token (docs/api-auth.md) goes through the API listener's check. */
        if ((auth = evhttp_find_header(evhttp_request_get_input_headers(c->client), "Authorization")))
                (void) evhttp_add_header(h, "Authorization", auth);
        if (evbuffer_add(evhttp_request_get_output_buffer(c->embed_req), body, len) < 0) {
                evhttp_request_free(c->embed_req);
                c->embed_req = NULL;
                collection_fail(c, 500, "out of memory");
                return;
        }
        /* On failure libevent frees the request. */
        if (evhttp_make_request(c->embed_conn, c->embed_req, EVHTTP_REQ_POST, "/api/embed") < 0) {
                c->embed_req = NULL;
                collection_fail(c, 502, "could not send the texts to be embedded");
                return;
        }
        log_debug("Request %" PRIu64 ": embedding %zu text(s) with %s through %s.", c->id, c->n_texts, c->model,
                  self.hostport);
}

typedef struct ModelLookup {
        const char *name;
        bool found;
        char *model;
} ModelLookup;

static int collections_find(const ShardStoreCollection *c, void *userdata) {
        ModelLookup *l = userdata;

        if (l->found || !streq(c->name, l->name))
                return 0;
        l->found = true;
        l->model = strdup(strempty(c->model));
        return l->model ? 0 : -ENOMEM;
}

/* The collection's model, then the embedding of c->texts with it, then c->embedded. */
static int collection_model_reply_cb(sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        CollectionRequest *c = userdata;
        ModelLookup l = { .name = c->path.name };
        char message[320];
        int r;

        if (collection_bus_failed(c, reply))
                return 0;
        r = shardstore_collections_read(reply, collections_find, &l);
        if (r < 0) {
                free(l.model);
                collection_reply_malformed(c, r);
                return 0;
        }
        if (!l.found) {
                /* shardd's own words for it. */
                snprintf(message, sizeof(message), "collection \"%s\" not found", c->path.name);
                collection_fail(c, 404, message);
                return 0;
        }
        if (isempty(l.model)) {
                free(l.model);
                snprintf(message, sizeof(message), "collection \"%s\" has no model to embed texts with: send %s",
                         c->path.name, c->path.route == SHIM_COLLECTIONS_QUERY ? "the query's \"embedding\""
                                                                              : "each document's \"embedding\"");
                collection_fail(c, 400, message);
                return 0;
        }
        c->model = l.model;
        collection_embed(c);
        return 0;
}


/* ---- the routes ---- */

static void collection_create_embedded(CollectionRequest *c, json_object *embeddings) {
        size_t dimension = json_object_array_length(json_object_array_get_idx(embeddings, 0));

        c->spec.dimension = (uint32_t) MIN(dimension, (size_t) UINT32_MAX);
        log_debug("Request %" PRIu64 ": model %s embeds in %zu dimensions.", c->id, c->model, dimension);
        collection_create(c);
}

static void collection_post_collections(CollectionRequest *c) {
        static const char *const probe[] = { SHIM_COLLECTIONS_PROBE_TEXT };
        const char *error;

        if (shim_collections_create_parse(c->body, &c->spec, &error) < 0) {
                collection_fail(c, 400, error);
                return;
        }
        if (c->spec.dimension > 0) {
                collection_create(c);
                return;
        }
        c->model = strdup(c->spec.model);
        c->texts = malloc(sizeof(probe));
        if (!c->model || !c->texts) {
                collection_fail(c, 500, "out of memory");
                return;
        }
        memcpy(c->texts, probe, sizeof(probe));
        c->n_texts = 1;
        c->embedded = collection_create_embedded;
        collection_embed(c);
}

static void collection_put(CollectionRequest *c) {
        collection_send_body(c, "Put", collection_put_reply_cb);
}

static void collection_documents_embedded(CollectionRequest *c, json_object *embeddings) {
        if (shim_collections_documents_fill(c->body, c->indexes, c->n_texts, embeddings) < 0) {
                collection_fail(c, 500, "out of memory");
                return;
        }
        collection_put(c);
}

static void collection_post_documents(CollectionRequest *c) {
        _cleanup_free_ char *error = NULL;
        int r;

        r = shim_collections_documents_plan(c->body, &c->indexes, &c->texts, &c->n_texts, &error);
        if (r < 0) {
                collection_fail(c, r == -E2BIG ? 413 : r == -EINVAL ? 400 : 500, error ?: "out of memory");
                return;
        }
        if (c->n_texts == 0) {
                collection_put(c);
                return;
        }
        c->embedded = collection_documents_embedded;
        collection_get_collections(c, collection_model_reply_cb);
}

/* A query's answer. Context gravity for RAG: with X-Mycelia-Affinity, the generate or chat that
 * follows with the same key goes to this node, whose shardd holds shards of the collection and
 * just read the context, as long as it is eligible there (it serves the model, within its bounded
 * load); docs/collections-api.md. */
static int collection_search_reply_cb(sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        CollectionRequest *c = userdata;
        const char *key = c->client ? evhttp_find_header(evhttp_request_get_input_headers(c->client),
                                                         SHIM_AFFINITY_HEADER) : NULL;

        if (!isempty(key) && !sd_bus_message_is_method_error(reply, NULL)) {
                AffinityChain chain;

                affinity_chain_init(&chain);
                if (affinity_chain_from_key(&chain, key) >= 0)
                        (void) affinity_index_learn(c->m->affinity, &chain, c->m->node_id);
                affinity_chain_done(&chain);
        }
        return collection_json_reply_cb(reply, userdata, error);
}

static void collection_search(CollectionRequest *c) {
        collection_send_body(c, "Search", collection_search_reply_cb);
}

static void collection_query_embedded(CollectionRequest *c, json_object *embeddings) {
        json_object *embedding = json_object_array_get_idx(embeddings, 0);

        if (json_object_object_add(c->body, "embedding", json_object_get(embedding)) < 0) {
                collection_fail(c, 500, "out of memory");
                return;
        }
        collection_search(c);
}

static void collection_post_query(CollectionRequest *c) {
        const char *text, *error;

        if (shim_collections_query_plan(c->body, &text, &error) < 0) {
                collection_fail(c, 400, error);
                return;
        }
        if (!text) {
                collection_search(c);
                return;
        }
        c->texts = calloc(1, sizeof(char *));
        if (!c->texts) {
                collection_fail(c, 500, "out of memory");
                return;
        }
        c->texts[0] = text;
        c->n_texts = 1;
        c->embedded = collection_query_embedded;
        collection_get_collections(c, collection_model_reply_cb);
}

static void collection_simple_call(CollectionRequest *c, const char *member, sd_bus_message_handler_t cb) {
        int r;

        if (c->path.id)
                r = shardstore_call(c->m, &c->call, SHARDSTORE1_INTERFACE, member, cb, c, "ss", c->path.name,
                                    c->path.id);
        else
                r = shardstore_call(c->m, &c->call, SHARDSTORE1_INTERFACE, member, cb, c, "s", c->path.name);
        if (r < 0)
                collection_call_failed(c, r);
}

static void collection_start(CollectionRequest *c) {
        bool get = streq(c->method, "GET");

        switch (c->path.route) {
        case SHIM_COLLECTIONS_LIST:
                if (get)
                        collection_get_collections(c, collection_list_reply_cb);
                else
                        collection_post_collections(c);
                break;
        case SHIM_COLLECTIONS_ONE:
                collection_simple_call(c, "DeleteCollection", collection_empty_reply_cb);
                break;
        case SHIM_COLLECTIONS_DOCUMENTS:
                collection_post_documents(c);
                break;
        case SHIM_COLLECTIONS_DOCUMENT:
                if (get)
                        collection_simple_call(c, "Get", collection_json_reply_cb);
                else
                        collection_simple_call(c, "Delete", collection_empty_reply_cb);
                break;
        case SHIM_COLLECTIONS_QUERY:
                collection_post_query(c);
                break;
        default:
                collection_fail(c, 404, "not found");
        }
}

/* The request body as JSON: 0, or the client answered (400) and -EINVAL. */
static int collection_parse_body(Manager *m, struct evhttp_request *req, json_object **ret) {
        struct evbuffer *buf = evhttp_request_get_input_buffer(req);
        size_t len = evbuffer_get_length(buf);
        int r;

        if (len == 0) {
                /* Ollama's words for it. */
                shim_reply_error(req, 400, SHIM_ERROR_JSON, "missing request body", false);
                m->counters.requests_failed++;
                return -EINVAL;
        }
        r = json_document_parse(evbuffer_pullup(buf, -1), len, ret);
        if (r < 0) {
                shim_reply_error(req, r == -ENOMEM ? 500 : 400, SHIM_ERROR_JSON,
                                 r == -ENOMEM ? "out of memory" : "invalid JSON in the request body", false);
                m->counters.requests_failed++;
                return -EINVAL;
        }
        return 0;
}

bool collections_handle(Manager *m, struct evhttp_request *req) {
        const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
        const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
        const char *method = collections_method(evhttp_request_get_command(req));
        _cleanup_(shim_collections_path_done) ShimCollectionsPath parsed = {};
        _cleanup_(json_object_putp) json_object *body = NULL;
        CollectionRequest *c;
        const char *error;
        int r, status;

        if (!shim_collections_path_is_ours(path))
                return false;

        /* What can be told from the request alone is answered at once. */
        r = shim_collections_path_parse(path, &parsed, &error);
        if (r < 0 || !shim_collections_method_allowed(parsed.route, method)) {
                status = r == -ENOMEM ? 500 : r == -ENOENT ? 404 : r < 0 ? 400 : 405;
                shim_reply_error(req, status, SHIM_ERROR_JSON,
                                 r == -ENOMEM ? "out of memory" : r < 0 ? error : "method not allowed", false);
                m->counters.requests_failed++;
                return true;
        }
        if (streq(method, "POST") && collection_parse_body(m, req, &body) < 0)
                return true;

        c = calloc(1, sizeof(*c));
        if (!c || !(c->target = strdup(evhttp_request_get_uri(req)))) {
                free(c);
                log_oom();
                shim_reply_error(req, 500, SHIM_ERROR_JSON, "out of memory", true);
                return true;
        }
        c->m = m;
        c->id = ++m->next_request_id;
        c->method = method;
        c->path = parsed;
        parsed = (ShimCollectionsPath) {};
        c->body = TAKE_PTR(body);
        c->client = req;
        c->client_evcon = evhttp_request_get_connection(req);
        c->t_start = now_usec();
        LIST_INSERT_HEAD(&m->collections, c, link);
        m->requests_active++;
        manager_client_watch(m, c->client_evcon, collection_client_close_cb, c);
        collection_start(c);
        return true;
}

void collections_abort_all(Manager *m) {
        while (!LIST_EMPTY(&m->collections)) {
                CollectionRequest *c = LIST_FIRST(&m->collections);

                if (c->client_evcon)
                        manager_client_unwatch(m, c->client_evcon);
                collection_free(c);
        }
}
