/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* /api/ps across the mesh and embeddings split over its nodes (shimd-spread.h): the plan and the
 * merge are pure (shim-embed.c), the parallel requests are shimd-fanout.c's; this file holds the
 * client's side: when to spread, retries of a failed chunk, the one answer. */
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <stdio.h>

#include "json-cleanup.h"
#include "json-document.h"
#include "log.h"
#include "shim-embed.h"
#include "shim-retry.h"
#include "shimd-audit.h"
#include "shimd-clients.h"
#include "shimd-errors.h"
#include "evbuffer-util.h"
#include "shimd-fanout.h"
#include "shimd-router-cache.h"
#include "shimd-spread.h"

/* Request bodies parsed to count inputs; larger ones go through the relay unsplit. */
#define SPREAD_EMBED_BODY_MAX (64U << 20)

typedef enum SpreadKind {
        SPREAD_PS,
        SPREAD_EMBED,
} SpreadKind;

struct SpreadRequest {
        Manager *m;
        LIST_ENTRY(SpreadRequest) link;
        SpreadKind kind;
        ShimApi api;
        struct evhttp_request *client;
        struct evhttp_connection *client_evcon;
        char *model;
        Fanout *fanout;
        ShimEmbedChunk chunks[FANOUT_PARTS_MAX];        /* embed: part i's inputs */
        /* embed: the nodes each part failed on (its retries). */
        char failed[FANOUT_PARTS_MAX][SHIM_RETRY_MAX_NODES][NODE_ID_LEN + 1];
        unsigned n_failed[FANOUT_PARTS_MAX];
        usec_t t_start;
};

static ShimErrorForm spread_error_form(const SpreadRequest *s) {
        return s->api == SHIM_API_OPENAI ? SHIM_ERROR_OPENAI : SHIM_ERROR_JSON;
}

static void spread_free(SpreadRequest *s) {
        Manager *m = s->m;

        LIST_REMOVE(s, link);
        m->requests_active--;
        manager_drain_check(m);
        fanout_free(s->fanout);
        free(s->model);
        free(s);
}

static void spread_client_close_cb(struct evhttp_connection *evcon, void *userdata) {
        SpreadRequest *s = userdata;

        manager_client_gone(s->m, evcon);
        s->m->counters.client_cancelled++;
        shim_audit_request(SHIM_LISTENER_API, s->client, 499, s->model, NULL, s->t_start);
        /* A request detached from its failed connection is ours to free (as in the relay). */
        if (!evhttp_request_get_connection(s->client))
                evhttp_request_free(s->client);
        s->client = NULL;
        spread_free(s);
}

/* Sends the answer (or an error when message is set) and frees s. */
static void spread_reply(SpreadRequest *s, int status, const char *message, struct evbuffer *body,
                         const char *served_by) {
        struct evkeyvalq *out = evhttp_request_get_output_headers(s->client);

        manager_client_unwatch(s->m, s->client_evcon);
        shim_audit_request(SHIM_LISTENER_API, s->client, status, s->model, served_by, s->t_start);
        if (message) {
                s->m->counters.requests_failed++;
                shim_reply_error(s->client, status, spread_error_form(s), message, false);
        } else {
                (void) evhttp_add_header(out, "Content-Type", "application/json; charset=utf-8");
                if (!isempty(served_by))
                        (void) evhttp_add_header(out, SHIM_SERVED_BY_HEADER, served_by);
                evhttp_send_reply(s->client, status, "OK", body);
        }
        spread_free(s);
}

/* A whole JSON document in b (an answer, a request body) of at most max bytes, or NULL. */
static json_object *parse_evbuffer(struct evbuffer *b, size_t max) {
        size_t len = b ? evbuffer_get_length(b) : 0;
        json_object *o = NULL;

        if (len == 0 || len > max || json_document_parse(evbuffer_pullup(b, -1), len, &o) < 0)
                return NULL;
        return o;
}

static json_object *parse_answer(FanoutPart *p) {
        return parse_evbuffer(p->answer, FANOUT_ANSWER_MAX);
}

/* "a, b, c": the nodes that answered, for X-Mycelia-Served-By. */
static void served_by_list(Fanout *f, char *buf, size_t size) {
        size_t off = 0;

        buf[0] = '\0';
        for (size_t i = 0; i < fanout_n_parts(f); i++) {
                FanoutPart *p = fanout_part(f, i);
                bool seen = false;

                if (p->status != 200)
                        continue;
                for (size_t k = 0; k < i; k++)
                        if (fanout_part(f, k)->status == 200 && streq(fanout_part(f, k)->target.name, p->target.name))
                                seen = true;
                if (!seen && off < size)
                        off += (size_t) snprintf(buf + off, size - off, "%s%s", off ? ", " : "", p->target.name);
        }
}

/* ---- /api/ps ---- */

static void spread_ps_done(Fanout *f, void *userdata) {
        _cleanup_(json_object_putp) json_object *merged = json_object_new_object(), *list = json_object_new_array();
        SpreadRequest *s = userdata;
        _cleanup_(evbuffer_freep) struct evbuffer *body = evbuffer_new();
        char served[512];
        size_t answered = 0, len;
        const char *out;

        if (!merged || !list || !body) {
                spread_reply(s, 500, "out of memory", NULL, NULL);
                return;
        }
        for (size_t i = 0; i < fanout_n_parts(f); i++) {
                FanoutPart *p = fanout_part(f, i);
                _cleanup_(json_object_putp) json_object *a = p->status == 200 ? parse_answer(p) : NULL;
                json_object *models;

                if (!a || !json_object_object_get_ex(a, "models", &models) || !json_object_is_type(models, json_type_array)) {
                        log_notice("/api/ps: node %s %s within %" PRIu64 " ms; left out.", p->target.name,
                                   p->status ? "answered with an error" : "did not answer",
                                   SPREAD_PS_TIMEOUT_USEC / USEC_PER_MSEC);
                        continue;
                }
                answered++;
                for (size_t k = 0; k < json_object_array_length(models); k++)
                        (void) json_object_array_add(list, json_object_get(json_object_array_get_idx(models, k)));
        }
        if (answered == 0) {
                spread_reply(s, 502, "no node of the mesh answered /api/ps", NULL, NULL);
                return;
        }
        json_object_object_add(merged, "models", TAKE_PTR(list));
        out = json_object_to_json_string_length(merged, JSON_C_TO_STRING_PLAIN, &len);
        if (!out || evbuffer_add(body, out, len) < 0) {
                spread_reply(s, 500, "out of memory", NULL, NULL);
                return;
        }
        served_by_list(f, served, sizeof(served));
        spread_reply(s, 200, NULL, body, served);
}

/* ---- embeddings ---- */

static bool part_failed_on(SpreadRequest *s, size_t i, const char *node_id) {
        for (unsigned k = 0; k < s->n_failed[i]; k++)
                if (streq(s->failed[i][k], node_id))
                        return true;
        return false;
}

/* A chunk that got no answer or a 5xx goes to another node serving the model, one it has not
 * failed on, up to [router] retries times. Returns true when it was sent again. */
static bool spread_embed_retry(SpreadRequest *s, size_t i) {
        RouterTarget targets[FANOUT_PARTS_MAX];
        FanoutPart *p = fanout_part(s->fanout, i);
        bool sent = false;
        int n;

        if (s->n_failed[i] >= MIN(s->m->config->route_retries, (unsigned) SHIM_RETRY_MAX_NODES - 1))
                return false;
        snprintf(s->failed[i][s->n_failed[i]++], NODE_ID_LEN + 1, "%s", p->target.node_id);
        n = router_cache_targets(s->m->router, s->model, targets, NULL, ELEMENTSOF(targets));
        for (int k = 0; k < n; k++) {
                if (!sent && !part_failed_on(s, i, targets[k].node_id)) {
                        log_debug("Embeddings %zu..%zu: node %s failed, sending them to %s.", s->chunks[i].first,
                                  s->chunks[i].first + s->chunks[i].n, p->target.name, targets[k].name);
                        sent = fanout_resend(s->fanout, i, &targets[k]) >= 0;
                }
                free(targets[k].address);
        }
        return sent;
}

static void spread_embed_done(Fanout *f, void *userdata) {
        SpreadRequest *s = userdata;
        json_object *answers[FANOUT_PARTS_MAX] = {};
        _cleanup_(evbuffer_freep) struct evbuffer *body = NULL;
        _cleanup_free_ char *merged = NULL;
        size_t n = fanout_n_parts(f), len = 0;
        bool waiting = false;
        char served[512];
        int r = 0;

        for (size_t i = 0; i < n; i++) {
                FanoutPart *p = fanout_part(f, i);

                if (p->done && (p->status == 0 || p->status >= 500)) {
                        router_cache_report(s->m->router, p->target.node_id, s->model, 0, p->duration, 0,
                                            (uint32_t) p->status, p->status ? "answered with an error status"
                                                                            : "no answer");
                        if (spread_embed_retry(s, i))
                                waiting = true;
                }
        }
        if (waiting)
                return;         /* called again when the resent chunks are answered */

        for (size_t i = 0; i < n && r >= 0; i++) {
                FanoutPart *p = fanout_part(f, i);

                if (p->status != 200) {
                        /* A client error (4xx) is the same on every node: pass Ollama's on. */
                        _cleanup_(json_object_putp) json_object *a = parse_answer(p);
                        json_object *e = NULL;
                        char message[512];

                        if (a && json_object_object_get_ex(a, "error", &e) && json_object_is_type(e, json_type_object))
                                json_object_object_get_ex(e, "message", &e);
                        snprintf(message, sizeof(message), "%s",
                                 e && json_object_is_type(e, json_type_string) ? json_object_get_string(e)
                                 : p->status ? "a node answered with an error" : "no node answered");
                        for (size_t k = 0; k < i; k++)
                                json_object_put(answers[k]);
                        spread_reply(s, p->status >= 400 && p->status < 500 ? p->status : 502, message, NULL, NULL);
                        return;
                }
                router_cache_report(s->m->router, p->target.node_id, s->model, p->duration, p->duration, 0, 200, NULL);
                answers[i] = parse_answer(p);
                if (!answers[i])
                        r = -EBADMSG;
        }
        if (r >= 0)
                r = shim_embed_merge(s->api, answers, s->chunks, n, &merged, &len);
        for (size_t i = 0; i < n; i++)
                json_object_put(answers[i]);
        body = r >= 0 ? evbuffer_new() : NULL;
        if (!body || evbuffer_add(body, merged, len) < 0) {
                spread_reply(s, 502, r == -EBADMSG ? "a node answered embeddings in another shape" : "out of memory",
                             NULL, NULL);
                return;
        }
        served_by_list(f, served, sizeof(served));
        log_debug("Embeddings of %zu inputs from %zu nodes in %" PRIu64 " ms.", s->chunks[n - 1].first + s->chunks[n - 1].n,
                  n, (now_usec() - s->t_start) / USEC_PER_MSEC);
        spread_reply(s, 200, NULL, body, served);
}

static SpreadRequest *spread_new(Manager *m, struct evhttp_request *req, SpreadKind kind, const ShimRequestClass *cls,
                                 const char *model) {
        SpreadRequest *s = calloc(1, sizeof(*s));

        if (!s)
                return NULL;
        s->m = m;
        s->kind = kind;
        s->api = cls->api;
        s->client = req;
        s->client_evcon = evhttp_request_get_connection(req);
        s->t_start = now_usec();
        if (model && !(s->model = strdup(model))) {
                free(s);
                return NULL;
        }
        LIST_INSERT_HEAD(&m->spreads, s, link);
        m->requests_active++;
        return s;
}

static bool spread_embed(Manager *m, struct evhttp_request *req, const ShimRequestClass *cls, const char *model) {
        RouterTarget targets[FANOUT_PARTS_MAX];
        unsigned weights[FANOUT_PARTS_MAX];
        ShimEmbedChunk chunks[FANOUT_PARTS_MAX];
        _cleanup_(json_object_putp) json_object *body = NULL;
        SpreadRequest *s;
        size_t n_inputs;
        int n;

        if (!model || m->config->embed_split == 0)
                return false;
        /* The body as JSON, when it is small enough to split. */
        body = parse_evbuffer(evhttp_request_get_input_buffer(req), SPREAD_EMBED_BODY_MAX);
        if (!body || shim_embed_count(body, &n_inputs) < 0 || n_inputs <= m->config->embed_split)
                return false;
        n = router_cache_targets(m->router, model, targets, weights, ELEMENTSOF(targets));
        if (n < 2) {
                for (int k = 0; k < n; k++)
                        free(targets[k].address);
                return false;
        }
        s = spread_new(m, req, SPREAD_EMBED, cls, model);
        if (!s || fanout_new(m, EVHTTP_REQ_POST, evhttp_request_get_uri(req), m->config->upstream_timeout,
                             spread_embed_done, s, &s->fanout) < 0) {
                for (int k = 0; k < n; k++)
                        free(targets[k].address);
                if (s)
                        spread_free(s);
                shim_reply_error(req, 500, cls->api == SHIM_API_OPENAI ? SHIM_ERROR_OPENAI : SHIM_ERROR_JSON,
                                 "out of memory", true);
                return true;
        }
        fanout_count_in_flight(s->fanout);
        /* The parsed request is only needed to cut the chunks; it is freed on return. */
        shim_embed_plan(n_inputs, weights, (size_t) n, chunks);
        for (int k = 0; k < n; k++) {
                _cleanup_free_ char *text = NULL;
                struct evbuffer *b = NULL;
                size_t len;
                int r = 0;

                if (chunks[k].n == 0) {
                        free(targets[k].address);
                        continue;
                }
                r = shim_embed_chunk_body(body, &chunks[k], &text, &len);
                if (r >= 0 && (!(b = evbuffer_new()) || evbuffer_add(b, text, len) < 0))
                        r = -ENOMEM;
                if (r >= 0)
                        r = fanout_add(s->fanout, &targets[k], b, NULL, NULL);
                if (r < 0) {
                        /* Every input must be in some part: no answer rather than a short one. */
                        if (b)
                                evbuffer_free(b);
                        for (int j = k; j < n; j++)
                                free(targets[j].address);
                        spread_reply(s, 500, "out of memory", NULL, NULL);
                        return true;
                }
                s->chunks[fanout_n_parts(s->fanout) - 1] = chunks[k];
        }
        manager_client_watch(m, s->client_evcon, spread_client_close_cb, s);
        (void) fanout_start(s->fanout);
        return true;
}

static bool spread_ps(Manager *m, struct evhttp_request *req, const ShimRequestClass *cls) {
        RouterTarget targets[FANOUT_PARTS_MAX];
        SpreadRequest *s;
        int n;

        n = router_cache_targets(m->router, NULL, targets, NULL, ELEMENTSOF(targets));
        if (n < 2) {
                for (int k = 0; k < n; k++)
                        free(targets[k].address);
                return false;
        }
        s = spread_new(m, req, SPREAD_PS, cls, NULL);
        if (!s || fanout_new(m, EVHTTP_REQ_GET, "/api/ps", SPREAD_PS_TIMEOUT_USEC, spread_ps_done, s, &s->fanout) < 0) {
                for (int k = 0; k < n; k++)
                        free(targets[k].address);
                if (s)
                        spread_free(s);
                shim_reply_error(req, 500, SHIM_ERROR_JSON, "out of memory", true);
                return true;
        }
        for (int k = 0; k < n; k++)
                if (fanout_add(s->fanout, &targets[k], NULL, NULL, NULL) < 0)
                        free(targets[k].address);
        manager_client_watch(m, s->client_evcon, spread_client_close_cb, s);
        (void) fanout_start(s->fanout);
        return true;
}

bool spread_handle(Manager *m, struct evhttp_request *req, const ShimRequestClass *cls, const char *path,
                   const char *model) {
        enum evhttp_cmd_type method = evhttp_request_get_command(req);

        if (method == EVHTTP_REQ_GET && shim_uri_is(path, "/api/ps"))
                return spread_ps(m, req, cls);
        if (method == EVHTTP_REQ_POST && cls->routing == SHIM_ROUTING_BY_MODEL &&
            (shim_uri_is(path, "/api/embed") || shim_uri_is(path, "/v1/embeddings")))
                return spread_embed(m, req, cls, model);
        return false;
}

void spread_abort_all(Manager *m) {
        while (!LIST_EMPTY(&m->spreads)) {
                SpreadRequest *s = LIST_FIRST(&m->spreads);

                if (s->client_evcon)
                        manager_client_unwatch(m, s->client_evcon);
                spread_free(s);
        }
}

void spread_cancel_all(Manager *m, const char *message) {
        while (!LIST_EMPTY(&m->spreads))
                spread_reply(LIST_FIRST(&m->spreads), 503, message, NULL, NULL);
}
