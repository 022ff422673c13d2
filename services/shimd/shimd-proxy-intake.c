/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A request's intake: the listener's gates in order (the mesh authenticator, bearer tokens,
 * /metrics, the topology page, the request limit, the collections and blobs APIs), then what the
 * request asks of the relay: its model, routing policy and gravity context, a pinned node,
 * whether it may be resumed mid-stream, blobs a create needs first. shimd-proxy.c carries it out. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "evbuffer-util.h"
#include "json-cleanup.h"
#include "log.h"
#include "shim-affinity.h"
#include "shim-blobs.h"
#include "shim-request.h"
#include "shimd-auth.h"
#include "shimd-blobs.h"
#include "shimd-clients.h"
#include "shimd-collections.h"
#include "shimd-create.h"
#include "shimd-errors.h"
#include "shimd-mesh.h"
#include "shimd-metrics.h"
#include "shimd-proxy-request.h"
#include "shimd-proxy.h"
#include "shimd-resume.h"
#include "shimd-router-cache.h"
#include "shimd-spread.h"
#include "shimd-status.h"
#include "shimd-www.h"

/* Reads "model" from the body in place, chain by chain (json-c's tokener is incremental). */
static void proxy_extract_model(ProxyRequest *p, struct evbuffer *body) {
        struct iovec small[16], *vec, *heap = NULL;
        int n = evbuffer_iovecs(body, small, ELEMENTSOF(small), &vec, &heap);

        if (n > 0)
                (void) shim_request_extract_model(vec, (size_t) n, &p->model);
        free(heap);
}

/* The JSON value of the request body, parsed in place chain by chain (json-c's tokener is
 * incremental); NULL when the body is not one, or is larger than max. */
static json_object *proxy_parse_body(ProxyRequest *p, size_t max) {
        return evbuffer_parse_json(evhttp_request_get_input_buffer(p->client), max);
}

/* The body of a routed request parsed once for all that read it while it is routed (gravity's
 * context, resuming); NULL when it is not JSON or is over SHIM_AFFINITY_BODY_MAX. Owned by p. */
static json_object *proxy_body_json(ProxyRequest *p) {
        if (!p->body_parsed) {
                p->body_parsed = true;
                p->body_json = proxy_parse_body(p, SHIM_AFFINITY_BODY_MAX);
        }
        return p->body_json;
}

/* The context of a routed request for gravity: the chain of its parsed body, or of the key
 * X-Mycelia-Affinity gives. Without one it routes by load. */
static void proxy_affinity_chain(ProxyRequest *p, struct evhttp_request *req) {
        const char *key = evhttp_find_header(evhttp_request_get_input_headers(req), SHIM_AFFINITY_HEADER);
        json_object *obj;
        AffinityContext kind;

        if (key) {
                (void) affinity_chain_from_key(&p->chain, key);
                return;
        }
        /* Only what carries a context is parsed (an embedding request is not, here). */
        kind = shim_uri_is(p->uri, "/api/chat") || shim_uri_is(p->uri, "/v1/chat/completions") ? AFFINITY_CONTEXT_MESSAGES
             : shim_uri_is(p->uri, "/api/generate") || shim_uri_is(p->uri, "/v1/completions") ? AFFINITY_CONTEXT_PROMPT
             : AFFINITY_CONTEXT_NONE;
        if (kind == AFFINITY_CONTEXT_NONE)
                return;
        obj = proxy_body_json(p);
        if (obj && affinity_chain_from_request(&p->chain, kind, obj) < 0) {
                affinity_chain_done(&p->chain);
                affinity_chain_init(&p->chain);
        }
}

/* X-Mycelia-Node: the node must exist and be up, and serve the model of a routed request;
 * otherwise 404 in the endpoint's error form, and the request ends (returns -ENOENT). */
static int proxy_pin(ProxyRequest *p, struct evhttp_request *req) {
        const char *pin = evhttp_find_header(evhttp_request_get_input_headers(req), SHIM_NODE_HEADER);
        char message[256];
        int r;

        if (!pin)
                return 0;
        r = strlen(pin) > 64 ? -ENOENT : router_cache_node(p->m->router, pin, p->model, NULL, NULL);
        if (r >= 0) {
                p->pin = strdup(pin);
                if (p->pin)
                        return 0;
                log_oom();
                p->status = 500;
                shim_reply_error(req, 500, proxy_error_form(p), "out of memory", true);
                proxy_free(p);
                return -ENOMEM;
        }
        if (r == -ESRCH)
                snprintf(message, sizeof(message), "model '%.200s' not found on node '%.64s' (" SHIM_NODE_HEADER ")",
                         strempty(p->model), pin);
        else
                snprintf(message, sizeof(message), "no node '%.64s' %s in the mesh (" SHIM_NODE_HEADER ")", pin,
                         r == -EHOSTDOWN ? "is up" : "is known");
        p->status = 404;
        shim_reply_error(req, 404, proxy_error_form(p), message, false);
        proxy_free(p);
        return -ENOENT;
}

/* X-Mycelia-Policy and the context gravity needs. An unknown policy is the client's error: 400
 * in the endpoint's own error form, and the request ends (returns -EINVAL). */
static int proxy_routing_headers(ProxyRequest *p, struct evhttp_request *req) {
        const char *name = evhttp_find_header(evhttp_request_get_input_headers(req), SHIM_POLICY_HEADER);
        RoutePolicy policy = router_cache_policy(p->m->router);

        if (name) {
                policy = route_policy_from_string(name);
                if (policy < 0) {
                        p->status = 400;
                        shim_reply_error(req, 400, proxy_error_form(p),
                                         "unknown routing policy in " SHIM_POLICY_HEADER ": use gravity, round-robin, "
                                         "least-loaded, latency or local-first", false);
                        proxy_free(p);
                        return -EINVAL;
                }
                p->policy = policy;
        }
        if (policy == ROUTE_POLICY_GRAVITY)
                proxy_affinity_chain(p, req);
        return 0;
}

static void proxy_create_blobs_done(CreateBlobs *c, int r, const char *message, void *userdata) {
        ProxyRequest *p = userdata;

        if (r < 0) {
                proxy_fail(p, 502, message);
                return;
        }
        p->create_blobs = create_blobs_free(p->create_blobs);
        proxy_start(p);
}

/* An /api/create that this node's Ollama is to carry out: the blobs it names that the Ollama
 * lacks come from the mesh first (docs/blobs.md). True when that started (the relay follows once
 * done) or the request ended; false to relay it now. */
static bool proxy_create_blobs(ProxyRequest *p) {
        _cleanup_(json_object_putp) json_object *body = NULL;
        ShimCreateBlobs blobs;
        char message[160];
        int r;

        /* Without a bus there is no mesh to bring a blob from. */
        if (p->method != EVHTTP_REQ_POST || !shim_uri_is(p->uri, "/api/create") || proxy_target_is_peer(p) ||
            !p->m->bus)
                return false;
        body = proxy_parse_body(p, SHIM_CREATE_BODY_MAX);
        r = shim_create_blobs(body, &blobs);
        if (r == -E2BIG) {
                snprintf(message, sizeof(message), "too many blobs in one create: at most %d distinct digests in "
                         "\"files\" and \"adapters\"", SHIM_CREATE_BLOBS_MAX);
                proxy_fail(p, 400, message);
                return true;
        }
        if (r < 0 || blobs.n == 0)
                return false;
        r = create_blobs_new(p->m, p->id, &blobs, proxy_create_blobs_done, p, &p->create_blobs);
        if (r < 0) {
                log_oom();
                proxy_fail(p, 500, "out of memory");
                return true;
        }
        log_debug("Request %" PRIu64 ": checking %zu blob(s) of the create on this node's Ollama.", p->id, blobs.n);
        return true;
}

void proxy_handle_request(struct evhttp_request *req, void *userdata) {
        ShimListener *l = userdata;
        Manager *m = l->manager;
        ShimRequestClass cls;
        ProxyRequest *p;
        const char *uri = evhttp_request_get_uri(req);
        enum evhttp_cmd_type method = evhttp_request_get_command(req);
        char token[API_TOKEN_NAME_MAX + 1] = "";

        manager_client_begin(m, req);
        m->counters.requests_total++;
        if (l->kind == SHIM_LISTENER_MESH) {
                int r = mesh_request_verify(m, req, shim_method_name(method), uri);

                if (r < 0) {
                        mesh_request_reject(m, req, shim_method_name(method), uri, r);
                        return;
                }
        }
        shim_request_classify(shim_method_name(method), uri, &cls);
        /* Bearer tokens on the API listener: 401/403 before anything else (docs/api-auth.md). */
        if (shim_auth_request(m, l->kind, req, &cls, token) < 0)
                return;
        /* GET /metrics: this node's view in Prometheus' format (shimd-metrics.c). */
        if (metrics_handle(m, req, uri))
                return;
        /* The topology page and what it reads (shimd-www.c, shimd-status.c). */
        if (l->kind == SHIM_LISTENER_API && (www_handle(m, req, uri) || status_handle(m, req, uri)))
                return;

        if (shim_limit_requests_reached(m->requests_active, m->config->max_requests)) {
                m->counters.rejected_busy++;
                shim_audit_request(l->kind, req, 503, NULL, NULL, now_usec());
                shim_reply_error(req, 503, cls.api == SHIM_API_OPENAI ? SHIM_ERROR_OPENAI : SHIM_ERROR_JSON,
                                 SHIM_BUSY_MESSAGE, false);
                return;
        }
        /* /api/mycelia/: the shim's own collections API, answered by shardd, never proxied. */
        if (l->kind == SHIM_LISTENER_API && collections_handle(m, req))
                return;
        /* /api/blobs/: the mesh's blob store (shardd), so that a blob pushed here is everywhere. */
        if (l->kind == SHIM_LISTENER_API && blobs_handle(m, req))
                return;

        p = proxy_new(m, l->kind, req, &cls, token);
        if (!p) {
                log_oom();
                shim_reply_error(req, 500, SHIM_ERROR_JSON, "out of memory", true);
                return;
        }

        /* The hop rule: requests from the mesh are served here, never forwarded again. Only
         * routed endpoints pay for parsing the body, and only when there is a table. */
        if (l->kind == SHIM_LISTENER_API && cls.routing == SHIM_ROUTING_BY_MODEL && router_cache_loaded(m->router)) {
                proxy_extract_model(p, evhttp_request_get_input_buffer(req));
                if (p->model && proxy_routing_headers(p, req) < 0)
                        return;
                if (p->model && proxy_resume_wanted(m, req, uri, p->id))
                        p->resume = proxy_resume_new(m, uri, p->id, proxy_body_json(p));
                /* What needs the body later holds its own reference. */
                json_object_put(p->body_json);
                p->body_json = NULL;
        }
        if (l->kind == SHIM_LISTENER_MESH && cls.routing == SHIM_ROUTING_BY_MODEL)
                p->metrics_model = metrics_request_model(req);
        shim_audit_begin(&p->audit, l->kind, req, &cls, p->model);
        if (l->kind == SHIM_LISTENER_API && proxy_pin(p, req) < 0)
                return;
        /* Answered by several nodes at once: /api/ps, and long embedding requests. */
        if (l->kind == SHIM_LISTENER_API && !p->pin && router_cache_loaded(m->router) &&
            spread_handle(m, req, &cls, uri, p->model)) {
                shim_audit_forget(&p->audit);   /* the spread request writes its own */
                proxy_free(p);
                return;
        }
        /* The mesh's model list: this node's, with the models only peers serve. */
        if (l->kind == SHIM_LISTENER_API && method == EVHTTP_REQ_GET && !p->pin && router_cache_loaded(m->router))
                p->merge_tags = shim_uri_is(uri, "/api/tags") || shim_uri_is(uri, "/v1/models");

        proxy_watch_client(p);
        if (proxy_pick_first(p) < 0) {
                log_oom();
                proxy_fail_before_start(p);
                return;
        }
        if (proxy_create_blobs(p))
                return;
        proxy_start(p);
}
