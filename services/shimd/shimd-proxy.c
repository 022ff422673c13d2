/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Request relay: picks the upstream, forwards the request (body by reference, so a retry can
 * send it again), streams the response back chunk by chunk with backpressure, resumes a stream
 * whose node failed on another (shimd-resume.c), and ends every request exactly once: complete,
 * 502 before the first byte, error object mid-stream, or cancelled because the client went away.
 * What a request asks comes from its intake (shimd-proxy-intake.c). docs/shim-proxy.md tells the
 * object lifetimes. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event_struct.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <netinet/in.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "mesh-auth.h"
#include "shim-affinity.h"
#include "shim-http.h"
#include "shim-retry.h"
#include "shim-tags.h"
#include "shim-stream.h"
#include "shimd-audit.h"
#include "shimd-clients.h"
#include "shimd-create.h"
#include "shimd-errors.h"
#include "evbuffer-util.h"
#include "shimd-mesh.h"
#include "shimd-metrics.h"
#include "shimd-status.h"
#include "shimd-proxy.h"
#include "shimd-proxy-request.h"
#include "shimd-resume.h"
#include "shimd-router-cache.h"
#include "shimd-upstream.h"

/* A client whose output buffer holds this much is behind: its bytes are gathered, and handed
 * on this much at a time. */
#define PENDING_FLUSH_SIZE (16 * 1024)
/* Not evhttp_request_errors: the routing table dropped the node, or marked it down, while the
 * attempt ran. */
#define PROXY_ERROR_NODE_LOST 1000
#define PROXY_ERROR_NODE_DOWN 1001
/* The upstream ended its stream with an error object (a peer's shim whose Ollama failed), or a
 * continuation answered with another status than 200. */
#define PROXY_ERROR_STREAM_FAILED 1002
#define PROXY_ERROR_CONTINUATION_STATUS 1003


/* ---- helpers ---- */

static const char *upstream_error_string(int e) {
        switch (e) {
        case EVREQ_HTTP_TIMEOUT: return "timed out";
        case EVREQ_HTTP_EOF: return "closed the connection";
        case EVREQ_HTTP_INVALID_HEADER: return "sent an invalid response";
        case EVREQ_HTTP_BUFFER_ERROR: return "connection failed";
        case EVREQ_HTTP_DATA_TOO_LONG: return "sent a response too large";
        case PROXY_ERROR_NODE_LOST: return "left the mesh";
        case PROXY_ERROR_NODE_DOWN: return "is suspected down";
        case PROXY_ERROR_STREAM_FAILED: return "ended the stream with an error";
        case PROXY_ERROR_CONTINUATION_STATUS: return "refused the continuation";
        default: return "failed";
        }
}

/* Why the current attempt failed, for routerd. */
static const char *proxy_failure(const ProxyRequest *p) {
        if (p->up_error < 0 && !p->up_connected)
                return "could not connect";
        return upstream_error_string(p->up_error);
}

ShimErrorForm proxy_error_form(const ProxyRequest *p) {
        return p->cls.api == SHIM_API_OPENAI ? SHIM_ERROR_OPENAI : SHIM_ERROR_JSON;
}

static struct bufferevent *proxy_client_bev(ProxyRequest *p) {
        return evhttp_connection_get_bufferevent(p->client_evcon);
}

static void proxy_client_close_cb(struct evhttp_connection *evcon, void *userdata);
static void proxy_client_drained_cb(struct evhttp_connection *evcon, void *userdata);

/* Writes what evhttp just queued on bev at once instead of waiting for the socket to be
 * reported writable. A bufferevent only writes from its EV_WRITE event: enabling it, a loop
 * iteration, and disabling it again cost two epoll_ctl() and an epoll_wait() per write, for a
 * socket that is almost always writable. When everything went out, EV_WRITE is disabled again
 * (in the same iteration, so the event loop's change list makes no system call at all) and
 * true is returned: the caller then does what the write callback would have done. On a short
 * write or an error nothing changes: the bufferevent writes the rest, or reports the error,
 * as usual. Not on TLS connections. docs/shim-performance.md. */
static bool bev_write_through(struct bufferevent *bev) {
        struct evbuffer *out = bufferevent_get_output(bev);
        evutil_socket_t fd = bufferevent_getfd(bev);

        ssize_t n;

        /* A TLS connection (from a peer, docs/mesh-tls.md) is written by OpenSSL only. */
        if (fd < 0 || evbuffer_get_length(out) == 0 || bufferevent_openssl_get_ssl(bev))
                return false;
        /* A socket bufferevent keeps its output's start frozen so that only it drains it; it
         * thaws it around its own writes just so. */
        (void) evbuffer_unfreeze(out, 1);
        n = evbuffer_write(out, fd);
        (void) evbuffer_freeze(out, 1);
        if (n <= 0 || evbuffer_get_length(out) > 0)
                return false;
        bufferevent_disable(bev, EV_WRITE);
        return true;
}

/* Runs bev's write callback, as the bufferevent would once its output drained. */
static void bev_run_write_cb(struct bufferevent *bev) {
        bufferevent_data_cb writecb;
        void *arg;

        bufferevent_getcb(bev, NULL, &writecb, NULL, &arg);
        if (writecb)
                writecb(bev, arg);
}

void proxy_watch_client(ProxyRequest *p) {
        manager_client_watch(p->m, p->client_evcon, proxy_client_close_cb, p);
}

static void proxy_unwatch_client(ProxyRequest *p) {
        if (p->client_evcon)
                manager_client_unwatch(p->m, p->client_evcon);
}

void proxy_free(ProxyRequest *p) {
        Manager *m = p->m;

        /* Every way a request ends comes here; 0: it never started answering (the client left). */
        shim_audit_end(&p->audit, &(ShimAuditEnd) {
                .listener = p->listener, .client = p->peer, .method = shim_method_name(p->method), .target = p->uri,
                .token = p->token, .model = p->model, .served_by = p->served_by, .status = p->status ?: 499,
                .stream = &p->stream, .t_start = p->t_start });
        metrics_request_end(m, &(MetricsRequestEnd) {
                .mesh = p->listener == SHIM_LISTENER_MESH, .uri = p->uri, .model = p->model ?: p->metrics_model,
                .status = p->status ?: 499, .served_by = p->served_by, .tokens = p->stream.tokens,
                .t_start = p->t_start, .t_first_byte = p->t_first_byte });
        status_flow_end(m, p->id, p->status ?: 499, p->stream.tokens);
        LIST_REMOVE(p, link);
        m->requests_active--;
        manager_drain_check(m);
        (void) event_del(&p->flush_event);
        (void) event_del(&p->wait_event);
        if (p->pending)
                evbuffer_free(p->pending);
        affinity_chain_done(&p->chain);
        create_blobs_free(p->create_blobs);
        json_object_put(p->body_json);
        p->resume = proxy_resume_free(p->resume);
        if (p->resume_out)
                evbuffer_free(p->resume_out);
        if (p->collect)
                evbuffer_free(p->collect);
        free(p->pin);
        free(p->uri);
        free(p->model);
        free(p->metrics_model);
        free(p->address);
        free(p);
}

/* Ends the current attempt's hold on its upstream connection: back to the pool after a
 * complete response, else dropped. */
/* Ends the current attempt's hold on its upstream connection: back to the pool after a
 * complete response that allows it, else closed. */
static void proxy_attempt_release(ProxyRequest *p, bool reusable) {
        UpstreamConn *c = p->up;

        if (c) {
                p->up = NULL;
                c->p = NULL;
                /* Bytes after the end of the response (a body sent for HEAD, say) would be read
                 * as the start of the next response: such a connection is not reused. */
                if (reusable && evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
                        log_debug("Request %" PRIu64 ": upstream %s sent bytes after the response, not reusing "
                                  "the connection.", p->id, p->url.hostport);
                        reusable = false;
                }
                /* An answer that came before the whole request went out. */
                if (reusable && evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
                        reusable = false;
                if (reusable)
                        upstream_pool_put(p->m->pool, c);
                else
                        upstream_conn_free(c);
        }
        p->paused = false;
        if (p->up_in_flight) {
                router_cache_in_flight(p->m->router, p->node_id, -1);
                p->up_in_flight = false;
        }
}

static void proxy_report(ProxyRequest *p, int status, const char *error) {
        usec_t now = now_usec();

        if (isempty(p->node_id))
                return;
        router_cache_report(p->m->router, p->node_id, strempty(p->model),
                            p->t_first_byte ? p->t_first_byte - p->t_attempt : 0, now - p->t_attempt,
                            (uint32_t) MIN(p->stream.tokens, (uint64_t) UINT32_MAX), (uint32_t) status, error);
}

static void proxy_log(ProxyRequest *p, int level, int status, const char *error) {
        char fields[160];

        if (level > log_get_max_level())
                return;
        snprintf(fields, sizeof(fields), "REQUEST_ID=%" PRIu64 "\nPEER=%s", p->id, p->peer);
        log_fields(level, fields, "%s %s -> %s%s%s %d, %" PRIu64 " bytes, %" PRIu64 " chunks, %" PRIu64 " ms%s%s",
                   shim_method_name(p->method), p->uri, strempty(p->address),
                   isempty(p->node_id) ? "" : " node ", p->node_id, status, p->stream.bytes, p->stream.chunks,
                   (now_usec() - p->t_start) / USEC_PER_MSEC, error ? ": " : "", strempty(error));
}

/* ---- choosing the upstream ---- */

/* Takes t->address; t->url is its parsed form (parsed once per table or at start). */
static int proxy_set_target(ProxyRequest *p, RouterTarget *t) {
        if (!t->address)
                return -ENOMEM;
        free(p->address);
        p->address = TAKE_PTR(t->address);
        p->url = t->url;
        snprintf(p->node_id, sizeof(p->node_id), "%s", t->node_id);
        snprintf(p->served_by, sizeof(p->served_by), "%s", t->name);
        p->wait_usec = t->wait_usec;
        shim_retry_target(&p->retry, t->node_id);
        /* The page draws what this node's clients asked, to the node that serves it. */
        if (p->listener == SHIM_LISTENER_API && !isempty(p->node_id))
                status_flow_target(p->m, p->id, p->node_id, p->served_by, p->model, p->uri);
        return 0;
}

/* What the router cache is asked for this request; exclude: the nodes tried so far. */
static RoutePick proxy_route_pick(ProxyRequest *p, char *const *exclude) {
        return (RoutePick) {
                .model = p->model,
                .policy = p->policy,
                .exclude = exclude,
                .only = p->pin,
                .holder = p->chain.anchor != 0 ? affinity_index_holder(p->m->affinity, &p->chain, NULL) : NULL,
                .anchor = p->chain.anchor,
                .eps = p->m->gravity_eps,
        };
}

/* First choice: a routed request goes where the routing table says; everything else, and a
 * model no live node serves, goes to this node's own Ollama (which gives the exact answer). */
int proxy_pick_first(ProxyRequest *p) {
        RouterTarget t = {};
        const char *reason = NULL;

        if (p->model) {
                RoutePick pick = proxy_route_pick(p, NULL);

                if (router_cache_pick(p->m->router, &pick, &t, &reason) >= 0) {
                        log_debug("Request %" PRIu64 ": to node %s (%s)", p->id, t.name, reason);
                        return proxy_set_target(p, &t);
                }
        }
        /* Pinned to another node: model management and everything else goes there. */
        if (p->pin && !p->model) {
                bool local = false;

                if (router_cache_node(p->m->router, p->pin, NULL, &t, &local) >= 0) {
                        if (!local)
                                return proxy_set_target(p, &t);
                        free(t.address);
                }
        }
        /* Served for a peer: counted as this node's load (in flight, outcomes) like a request
         * routed here, so routerd's figures for this node, and what it gossips, include it. */
        t = (RouterTarget) { .address = strdup(p->m->config->upstream_url), .url = p->m->upstream };
        if (p->listener == SHIM_LISTENER_MESH)
                snprintf(t.node_id, sizeof(t.node_id), "%s", p->m->node_id);
        snprintf(t.name, sizeof(t.name), "%s", p->m->node_name);
        return proxy_set_target(p, &t);
}

/* Requests that may run twice: safe methods, and inference (no state changes in Ollama). */
static bool proxy_is_repeatable(const ProxyRequest *p) {
        return p->method == EVHTTP_REQ_GET || p->method == EVHTTP_REQ_HEAD || p->method == EVHTTP_REQ_OPTIONS ||
               p->cls.routing == SHIM_ROUTING_BY_MODEL;
}

/* After a failure before the first response byte: 0 with a new target (or the same one on a
 * fresh connection), -ENOENT when there is nothing left to try. */
static int proxy_pick_retry(ProxyRequest *p) {
        RouterTarget t = {};
        const char *reason = NULL;
        ShimRetryAction action;
        RoutePick pick;

        action = shim_retry_next(&p->retry,
                                 &(ShimRetryRequest) {
                                         .repeatable = proxy_is_repeatable(p),
                                         .routed = p->model && !isempty(p->node_id),
                                 },
                                 &(ShimAttemptFailure) {
                                         .connected = p->up_connected,
                                         .timed_out = p->up_error == EVREQ_HTTP_TIMEOUT,
                                         .reused = p->up_reused,
                                         .node_lost = p->node_lost,
                                 });
        if (action == SHIM_RETRY_FRESH_CONNECTION) {
                p->force_fresh = true;
                p->m->counters.retries_fresh++;
                metrics_node_event(p->m, p->node_id, METRICS_NODE_RETRY);
                return 0;
        }
        if (action != SHIM_RETRY_OTHER_NODE)
                return -ENOENT;
        pick = proxy_route_pick(p, shim_retry_exclude(&p->retry));
        if (router_cache_pick(p->m->router, &pick, &t, &reason) < 0)
                return -ENOENT;
        p->m->counters.failovers_failure++;
        metrics_node_event(p->m, p->node_id, METRICS_NODE_FAILOVER_FAILURE);
        log_debug("Request %" PRIu64 ": retrying on node %s (%s)", p->id, t.node_id, reason);
        return proxy_set_target(p, &t);
}

/* ---- the upstream request ---- */

static void proxy_upstream_read_cb(struct bufferevent *bev, void *userdata);
static void proxy_upstream_write_cb(struct bufferevent *bev, void *userdata);
static void proxy_upstream_event_cb(struct bufferevent *bev, short what, void *userdata);

/* The value of the Connection header, if any: it names more hop-by-hop headers. */
static const char *headers_connection(struct evkeyvalq *headers) {
        struct evkeyval *h;

        TAILQ_FOREACH(h, headers, next)
                if (shim_header_classify(h->key) == SHIM_HEADER_CONNECTION)
                        return h->value;
        return NULL;
}

static char *append(char *d, const char *s) {
        return mempcpy(d, s, strlen(s));
}

/* Whether the current attempt goes to a peer's mesh API (not to this node's Ollama). */
bool proxy_target_is_peer(const ProxyRequest *p) {
        return !isempty(p->node_id) && !streq(p->node_id, p->m->node_id);
}

/* X-Mycelia-Auth for the current attempt to a peer: over the method, the request target as
 * sent, the peer's node id and the body. */
static int proxy_sign(ProxyRequest *p, struct evbuffer *body, char value[MESH_AUTH_VALUE_MAX]) {
        _cleanup_free_ char *target = NULL;

        if (asprintf(&target, "%s%s", p->url.prefix, p->uri) < 0)
                return -ENOMEM;
        return mesh_request_sign(p->m, shim_method_name(p->method), target, p->node_id, body, value);
}

/* Queues the request on out: the head, built in one buffer with memcpy, then the client's
 * body by reference (nothing copied; it stays intact for a retry). */
static int proxy_queue_request(ProxyRequest *p, struct evbuffer *out) {
        struct evkeyvalq *in = evhttp_request_get_input_headers(p->client);
        struct evbuffer *body = proxy_resume_body(p->resume) ?: evhttp_request_get_input_buffer(p->client);
        const char *connection = headers_connection(in), *method = shim_method_name(p->method);
        size_t body_len = evbuffer_get_length(body), need;
        _cleanup_free_ char *heap = NULL;
        char stack[4096], *buf = stack, *d, auth[MESH_AUTH_VALUE_MAX] = "";
        bool peer = proxy_target_is_peer(p);
        struct evkeyval *h;

        if (peer) {
                int r;

                /* No key, no forwarding: the router cache keeps peers down then, so this is a
                 * race with a table update at most. */
                if (!p->m->have_mesh_key)
                        return -ENOKEY;
                r = proxy_sign(p, body, auth);
                if (r < 0)
                        return r;
        }

        need = strlen(method) + strlen(p->url.prefix) + strlen(p->uri) + strlen(p->url.hostport) +
               sizeof(" HTTP/1.1\r\nHost: \r\nContent-Length: \r\n\r\n") + 2 + 24 +
               sizeof(MESH_HOP_HEADER ": 1\r\n" MESH_AUTH_HEADER ": \r\n") + strlen(auth) +
               sizeof(API_TOKEN_HEADER ": \r\n") + strlen(p->token) +
               sizeof(AUDIT_ENTRY_HEADER ": \r\n") + strlen(p->m->node_name);
        TAILQ_FOREACH(h, in, next)
                need += strlen(h->key) + strlen(h->value) + 4;
        if (need > sizeof(stack)) {
                heap = malloc(need);
                if (!heap)
                        return -ENOMEM;
                buf = heap;
        }

        d = append(buf, method);
        *d++ = ' ';
        d = append(d, p->url.prefix);
        d = append(d, p->uri);
        d = append(d, " HTTP/1.1\r\n");
        TAILQ_FOREACH(h, in, next) {
                /* Host names the upstream (Ollama on loopback answers 403 otherwise); the body
                 * length is ours to state; 100-continue was settled with the client. */
                switch (shim_header_classify(h->key)) {
                case SHIM_HEADER_OTHER:
                case SHIM_HEADER_CONTENT_TYPE:
                        if (connection && shim_header_is_hop_by_hop(h->key, connection))
                                continue;
                        /* Ours are set below for peers only: a client's (it cannot claim to be
                         * a hop) and a peer's (checked on the mesh listener) go no further. */
                        if (mesh_header_is_ours(h->key))
                                continue;
                        d = append(d, h->key);
                        d = append(d, ": ");
                        d = append(d, h->value);
                        d = append(d, "\r\n");
                        break;
                default:
                        break;
                }
        }
        d = append(d, "Host: ");
        d = append(d, p->url.hostport);
        d = append(d, "\r\n");
        if (peer) {
                /* The hop marker: the peer serves it from its own Ollama (it came in on its mesh
                 * listener anyway; the header says so to logs and to anything in between). */
                d = append(d, MESH_HOP_HEADER ": 1\r\n" MESH_AUTH_HEADER ": ");
                d = append(d, auth);
                d = append(d, "\r\n");
                /* Where it came in and whose it is, for the serving node's audit trail; never the
                 * token's secret. */
                d = append(d, AUDIT_ENTRY_HEADER ": ");
                d = append(d, p->m->node_name);
                d = append(d, "\r\n");
                if (p->token[0]) {
                        d = append(d, API_TOKEN_HEADER ": ");
                        d = append(d, p->token);
                        d = append(d, "\r\n");
                }
        }
        if (body_len > 0 || p->method == EVHTTP_REQ_POST || p->method == EVHTTP_REQ_PUT ||
            p->method == EVHTTP_REQ_PATCH)
                d += sprintf(d, "Content-Length: %zu\r\n", body_len);
        d = append(d, "\r\n");

        if (evbuffer_add(out, buf, (size_t) (d - buf)) < 0)
                return -ENOMEM;
        if (body_len > 0 && evbuffer_add_buffer_reference(out, body) < 0)
                return -ENOMEM;
        return 0;
}

/* The request went out: from now on the upstream timeout applies to reads (until then the
 * connect timeout, which libevent applies to the connect and the writes). */
static void proxy_upstream_sent(ProxyRequest *p) {
        p->up_connected = true;
        bufferevent_set_timeouts(p->up->bev, &p->m->upstream_tv, NULL);
}

/* Starts the current target; 0 when in flight, negative when it failed synchronously. */
static int proxy_attempt(ProxyRequest *p) {
        Manager *m = p->m;
        UpstreamConn *c = NULL;
        struct bufferevent *bev;
        int r;

        p->up_error = -1;
        p->up_connected = false;
        p->up_head_done = false;
        p->up_keep_alive = false;
        p->t_attempt = now_usec();
        /* A continuation's first byte is not the answer's. */
        if (!p->started)
                p->t_first_byte = 0;
        p->resume_stall_armed = false;
        if (p->resume)
                proxy_resume_attempt(p->resume);

        if (!p->force_fresh)
                c = upstream_pool_take(m->pool, p->url.hostport);
        p->force_fresh = false;
        p->up_reused = c != NULL;
        if (!c) {
                r = upstream_conn_new(m->pool, &p->url, proxy_target_is_peer(p) ? m->creds.tls : NULL, &c);
                if (r == -ENOMEM)
                        return log_oom();
                if (r < 0) {
                        proxy_report(p, 502, proxy_failure(p));
                        return r;
                }
        }
        c->p = p;
        p->up = c;
        bev = c->bev;
        bufferevent_setcb(bev, proxy_upstream_read_cb, proxy_upstream_write_cb, proxy_upstream_event_cb, c);
        /* The connect timeout until the request is out (a pooled connection the upstream closed
         * meanwhile fails here too), then the upstream timeout. */
        bufferevent_set_timeouts(bev, NULL, &m->connect_tv);
        bufferevent_enable(bev, EV_READ | EV_WRITE);

        if (!isempty(p->node_id)) {
                router_cache_in_flight(m->router, p->node_id, +1);
                p->up_in_flight = true;
        }
        r = proxy_queue_request(p, bufferevent_get_output(bev));
        if (r < 0) {
                proxy_attempt_release(p, false);
                if (r == -ENOMEM)
                        return log_oom();
                log_debug_errno(r, "Request %" PRIu64 ": cannot forward to node %s: %m", p->id, p->node_id);
                proxy_report(p, 502, "no mesh key to forward with");
                return r;
        }
        /* On a kept-alive connection send it at once (a new one writes once connected). */
        if (p->up_reused) {
                p->up_connected = true;
                if (bev_write_through(bev))
                        proxy_upstream_sent(p);
        }
        return 0;
}

static void proxy_fail_mid_stream(ProxyRequest *p);
static void proxy_finish(ProxyRequest *p);

void proxy_start(ProxyRequest *p) {
        /* Every node serving the model cools down and the first recovers soon: wait for it rather
         * than fail now (docs/routing-policies.md). The client going away frees p, and the timer. */
        if (p->wait_usec > 0) {
                struct timeval tv = { .tv_sec = p->wait_usec / USEC_PER_SEC, .tv_usec = p->wait_usec % USEC_PER_SEC };

                log_debug("Request %" PRIu64 ": every node serving %s cools down; waiting %" PRIu64 " ms for %s.",
                          p->id, strempty(p->model), p->wait_usec / USEC_PER_MSEC, p->served_by);
                p->wait_usec = 0;
                p->m->counters.cooling_waits++;
                evtimer_add(&p->wait_event, &tv);
                return;
        }
        for (;;) {
                if (proxy_attempt(p) >= 0)
                        return;
                p->m->counters.upstream_errors++;
                if (proxy_pick_retry(p) < 0) {
                        /* A continuation found no node that takes it: the stream ends. */
                        if (p->started)
                                proxy_fail_mid_stream(p);
                        else
                                proxy_fail_before_start(p);
                        return;
                }
        }
}

static void proxy_wait_cb(evutil_socket_t fd, short what, void *userdata) {
        proxy_start(userdata);
}

static bool proxy_resume(ProxyRequest *p);

/* The current attempt failed (p->up_error says how). */
static void proxy_upstream_failed(ProxyRequest *p) {
        if (!p->started)
                proxy_report(p, 502, proxy_failure(p));
        proxy_attempt_release(p, false);

        p->m->counters.upstream_errors++;
        if (p->started) {
                if (!proxy_resume(p))
                        proxy_fail_mid_stream(p);
                return;
        }
        if (proxy_pick_retry(p) < 0) {
                proxy_fail_before_start(p);
                return;
        }
        proxy_start(p);
}

/* Copies the status and end-to-end headers of the upstream's response to the client's and
 * starts the reply. head is the response head in the read buffer: names, values and the reason
 * are NUL-terminated in place (the head is drained right after). */
static void proxy_start_reply(ProxyRequest *p, char *head, const ShimHttpResponse *r) {
        struct evkeyvalq *out = evhttp_request_get_output_headers(p->client);
        const char *connection = NULL, *content_type = NULL;

        for (unsigned i = 0; i < r->n_headers; i++) {
                head[r->headers[i].name + r->headers[i].name_len] = '\0';
                head[r->headers[i].value + r->headers[i].value_len] = '\0';
        }
        head[r->reason + r->reason_len] = '\0';
        if (r->connection >= 0)
                connection = head + r->headers[r->connection].value;

        p->status = r->status;
        p->content_length = false;
        for (unsigned i = 0; i < r->n_headers; i++) {
                const char *name = head + r->headers[i].name, *value = head + r->headers[i].value;

                switch (shim_header_classify(name)) {
                case SHIM_HEADER_HOP_BY_HOP:
                case SHIM_HEADER_CONNECTION:
                        continue;
                case SHIM_HEADER_CONTENT_LENGTH:
                        /* With the upstream's Content-Length, libevent sends the body as is (no
                         * chunking). */
                        p->content_length = true;
                        break;
                case SHIM_HEADER_CONTENT_TYPE:
                        if (!content_type)
                                content_type = value;
                        break;
                default:
                        break;
                }
                if (connection && shim_header_is_hop_by_hop(name, connection))
                        continue;
                /* A peer's shim names itself; this node says who answered, once. */
                if (mesh_header_is_ours(name))
                        continue;
                evhttp_add_header(out, name, value);
        }
        if (p->served_by[0])
                evhttp_add_header(out, SHIM_SERVED_BY_HEADER, p->served_by);
        /* The model list is read whole and merged first; the reply starts in proxy_finish(). */
        if (p->merge_tags && p->status == 200 && (p->collect = evbuffer_new())) {
                (void) evhttp_remove_header(out, "Content-Length");
                shim_stream_init(&p->stream, SHIM_STREAM_RAW);
                return;
        }
        /* The node took the request: its prompt cache now holds this context. */
        if (p->status >= 200 && p->status < 300 && p->chain.anchor != 0 && !isempty(p->node_id))
                (void) affinity_index_learn(p->m->affinity, &p->chain, p->node_id);
        /* An HTTP/1.0 client gets no chunked encoding: without a length, the end of the body is
         * the end of the connection. libevent 2.1 would answer its keep-alive with
         * "Content-Length: 0" and keep the connection: forget that it asked. */
        if (!p->content_length && p->client->major == 1 && p->client->minor == 0)
                evhttp_remove_header(evhttp_request_get_input_headers(p->client), "Connection");
        /* Stopping: this connection carries no further request (docs/shim-drain.md). */
        if (p->m->draining)
                manager_client_close_after(p->client);
        shim_stream_init(&p->stream, shim_stream_kind_from_content_type(content_type));
        p->started = true;
        evhttp_send_reply_start(p->client, p->status, r->reason_len > 0 ? head + r->reason : NULL);
}

static void proxy_flush_pending(ProxyRequest *p) {
        if (p->pending && evbuffer_get_length(p->pending) > 0)
                evhttp_send_reply_chunk_with_cb(p->client, p->pending, proxy_client_drained_cb, p);
}

/* The client's output buffer drained completely: send what was gathered meanwhile, and read
 * from the upstream again. */
static void proxy_client_drained_cb(struct evhttp_connection *evcon, void *userdata) {
        ProxyRequest *p = userdata;

        proxy_flush_pending(p);
        if (!p->paused || !p->up)
                return;
        p->paused = false;
        bufferevent_enable(p->up->bev, EV_READ);
}

static void proxy_stream_account(ProxyRequest *p, struct evbuffer *buf) {
        struct iovec small[16], *vec, *heap = NULL;
        int n;

        /* JSON too: the token counts of an answer that was not streamed (shim-stream.c). */
        if (p->stream.kind == SHIM_STREAM_RAW) {
                p->stream.bytes += evbuffer_get_length(buf);
                return;
        }
        n = evbuffer_iovecs(buf, small, ELEMENTSOF(small), &vec, &heap);
        if (n < 0) {
                p->stream.bytes += evbuffer_get_length(buf);
                return;
        }
        for (int i = 0; i < n; i++)
                shim_stream_feed(&p->stream, vec[i].iov_base, vec[i].iov_len);
        free(heap);
}

/* Copies in's bytes to the end of p->pending, filling its last chain, and empties in. */
static int proxy_gather(ProxyRequest *p, struct evbuffer *in) {
        struct evbuffer_iovec vec[8];
        int n;

        if (!p->pending) {
                p->pending = evbuffer_new();
                if (!p->pending)
                        return -ENOMEM;
        }
        while ((n = evbuffer_peek(in, -1, NULL, vec, ELEMENTSOF(vec))) > 0) {
                size_t len = 0;

                n = MIN(n, (int) ELEMENTSOF(vec));
                for (int i = 0; i < n; i++) {
                        if (evbuffer_add(p->pending, vec[i].iov_base, vec[i].iov_len) < 0)
                                return -ENOMEM;
                        len += vec[i].iov_len;
                }
                (void) evbuffer_drain(in, len);
        }
        return 0;
}

/* Runs once per loop iteration that queued chunks for the client (event_active() from the
 * chunk callback): writes them at once, and when all went out, does what the drain callback
 * would have done. */
static void proxy_flush_cb(evutil_socket_t fd, short what, void *userdata) {
        ProxyRequest *p = userdata;

        if (p->client_evcon && bev_write_through(proxy_client_bev(p)))
                proxy_client_drained_cb(p->client_evcon, p);
}

/* A resumable stream that has started is cut and resumed after [router] resume_stall of silence
 * rather than the upstream timeout; one that can no longer be resumed gets the upstream timeout
 * back. */
static void proxy_resume_stall_check(ProxyRequest *p) {
        bool possible = p->resume && proxy_resume_possible(p->resume, NULL);

        if (!p->up || possible == p->resume_stall_armed || p->m->config->resume_stall >= p->m->config->upstream_timeout)
                return;
        if (possible) {
                struct timeval tv = usec_to_timeval(p->m->config->resume_stall);

                bufferevent_set_timeouts(p->up->bev, &tv, NULL);
        } else
                bufferevent_set_timeouts(p->up->bev, &p->m->upstream_tv, NULL);
        p->resume_stall_armed = possible;
}

/* Relays decoded body bytes (all of in) to the client. */
static void proxy_relay(ProxyRequest *p, struct evbuffer *in) {
        struct evbuffer *client_out;
        size_t n = evbuffer_get_length(in);

        if (n == 0)
                return;
        /* A resumable stream: whole lines only, rewritten in a continuation; an error object
         * from the upstream is held back and the stream resumed (proxy_upstream_read_cb). */
        if (p->resume && p->started && (p->stream.kind == SHIM_STREAM_NDJSON || p->stream.kind == SHIM_STREAM_SSE)) {
                if (!p->resume_out && !(p->resume_out = evbuffer_new())) {
                        log_oom();
                        p->resume = proxy_resume_free(p->resume);
                } else {
                        if (proxy_resume_filter(p->resume, in, p->resume_out))
                                p->resume_cut = true;
                        (void) evbuffer_drain(in, evbuffer_get_length(in));
                        in = p->resume_out;
                        n = evbuffer_get_length(in);
                        proxy_resume_stall_check(p);
                        if (n == 0)
                                return;
                }
        }
        if (p->collect) {
                /* Bounded: a list too long to merge is passed on as it is (proxy_finish()). */
                p->stream.bytes += n;
                if (evbuffer_get_length(p->collect) + n <= SHIM_TAGS_BODY_MAX)
                        (void) evbuffer_add_buffer(p->collect, in);
                else
                        p->merge_tags = false;
                (void) evbuffer_drain(in, evbuffer_get_length(in));
                return;
        }

        proxy_stream_account(p, in);
        p->m->counters.bytes_to_clients += n;

        client_out = bufferevent_get_output(proxy_client_bev(p));
        if (evbuffer_get_length(client_out) < PENDING_FLUSH_SIZE && !(p->pending && evbuffer_get_length(p->pending) > 0)) {
                /* The client keeps up: move the chains (no copy) to its output buffer. The
                 * callback runs when that buffer has drained to the socket; when it all went
                 * out at once, we do what the callback would have done. */
                evhttp_send_reply_chunk_with_cb(p->client, in, proxy_client_drained_cb, p);
                /* Written once per loop iteration, after all that one read brought. */
                event_active(&p->flush_event, EV_TIMEOUT, 1);
        } else if (proxy_gather(p, in) < 0 || evbuffer_get_length(p->pending) >= PENDING_FLUSH_SIZE)
                /* Behind: gather the bytes compactly (one small chain per moved token would
                 * cost ~10x its size) until the output drains, handing them on 16 KiB at a
                 * time. The output holds bytes sent with the drain callback, so it will run. */
                proxy_flush_pending(p);
        /* Both ways empty in; only a failed gather (out of memory) leaves bytes, which are dropped:
         * the scratch buffer is shared. */
        (void) evbuffer_drain(in, evbuffer_get_length(in));

        /* Backpressure: a client that reads slower than the upstream writes must not make us
         * buffer the whole response. Stop reading the upstream until the client caught up;
         * TCP then pushes back on the upstream (Ollama blocks in its write). */
        if (!p->paused && p->up &&
            evbuffer_get_length(client_out) + (p->pending ? evbuffer_get_length(p->pending) : 0) >
                    p->m->config->max_stream_buffer) {
                p->paused = true;
                bufferevent_disable(p->up->bev, EV_READ);
        }
}

/* Ends the client's reply, writing its last bytes at once (see bev_write_through()). */
static void proxy_reply_end(ProxyRequest *p) {
        struct bufferevent *bev = proxy_client_bev(p);

        if (!p->client->chunked) {
                /* With its output empty, evhttp_send_reply_end() completes the request at
                 * once (and may free the connection): write first. */
                (void) bev_write_through(bev);
                evhttp_send_reply_end(p->client);
                return;
        }
        /* Chunked: the end only queues the last chunk and waits for the output to drain. */
        evhttp_send_reply_end(p->client);
        if (bev_write_through(bev))
                bev_run_write_cb(bev);
}

/* The whole local model list is here: with the peers' models added, it goes out in one reply. */
static void proxy_finish_merged_tags(ProxyRequest *p) {
        _cleanup_free_ char *merged = NULL, *local = NULL;
        _cleanup_free_ char **remote = NULL;
        size_t n_remote = 0, len = evbuffer_get_length(p->collect), merged_len = 0;
        struct evbuffer *body;
        int r = -EBADMSG;

        local = malloc(len + 1);
        if (local && p->merge_tags) {
                (void) evbuffer_copyout(p->collect, local, len);
                local[len] = '\0';
                r = router_cache_peer_models(p->m->router, &remote, &n_remote);
                if (r >= 0)
                        r = shim_tags_merge(p->cls.api, local, len, remote, n_remote, &merged, &merged_len);
        }
        if (r >= 0) {
                evbuffer_drain(p->collect, len);
                (void) evbuffer_add(p->collect, merged, merged_len);
        } else if (p->merge_tags)
                log_debug("Request %" PRIu64 ": model list not merged: %s", p->id, strerror(-r));
        body = p->collect;
        p->collect = NULL;
        proxy_unwatch_client(p);
        evhttp_send_reply(p->client, p->status, "OK", body);
        evbuffer_free(body);
        proxy_free(p);
}

/* A pull, push, create, delete or copy that this node's Ollama carried out. */
static bool proxy_changed_local_models(const ProxyRequest *p) {
        static const char *const paths[] = { "/api/pull", "/api/create", "/api/delete", "/api/copy", "/api/push" };

        if (p->status < 200 || p->status >= 300 || (!isempty(p->node_id) && !streq(p->node_id, p->m->node_id)))
                return false;
        for (size_t i = 0; i < ELEMENTSOF(paths); i++)
                if (shim_uri_is(p->uri, paths[i]))
                        return true;
        return false;
}

static void proxy_finish(ProxyRequest *p) {
        /* Gossip carries the new list at once rather than after [router] tags_interval. */
        if (proxy_changed_local_models(p))
                router_cache_refresh_models(p->m->router);
        if (p->collect) {
                proxy_report(p, p->status, NULL);
                proxy_log(p, LOG_DEBUG, p->status, NULL);
                proxy_finish_merged_tags(p);
                return;
        }
        proxy_report(p, p->status, NULL);
        proxy_log(p, LOG_DEBUG, p->status, NULL);
        proxy_unwatch_client(p);
        proxy_flush_pending(p);
        proxy_reply_end(p);
        proxy_free(p);
}

/* A 5xx before anything reached the client (an Ollama that is busy answers 503, one whose model
 * failed to load 500): another node may do better, so a routed request goes there. Without one,
 * the answer goes to the client as it is: Ollama's own error says most. Returns true when the
 * request moved (this attempt is over). */
static bool proxy_retry_on_status(ProxyRequest *p, int status) {
        RouterTarget t = {};
        const char *reason = NULL;
        ShimRetryAction action;
        RoutePick pick;

        if (!p->model || isempty(p->node_id))
                return false;
        action = shim_retry_next(&p->retry,
                                 &(ShimRetryRequest) { .repeatable = proxy_is_repeatable(p), .routed = true },
                                 &(ShimAttemptFailure) { .connected = true, .status = true });
        if (action != SHIM_RETRY_OTHER_NODE)
                return false;
        pick = proxy_route_pick(p, shim_retry_exclude(&p->retry));
        if (router_cache_pick(p->m->router, &pick, &t, &reason) < 0)
                return false;
        p->m->counters.failovers_status++;
        metrics_node_event(p->m, p->node_id, METRICS_NODE_FAILOVER_STATUS);
        log_debug("Request %" PRIu64 ": node %s answered %d, retrying on node %s (%s)", p->id, p->node_id, status,
                  t.node_id, reason);
        proxy_report(p, status, "answered with an error status");
        proxy_attempt_release(p, false);
        if (proxy_set_target(p, &t) < 0) {
                log_oom();
                proxy_fail_before_start(p);
                return true;
        }
        proxy_start(p);
        return true;
}

/* Reads the response head (skipping 1xx); returns true once the final head was handled,
 * false when more bytes are needed or the attempt failed (p may then be gone). */
static bool proxy_read_head(ProxyRequest *p, struct evbuffer *in) {
        while (!p->up_head_done) {
                ShimHttpResponse r;
                size_t len = evbuffer_get_length(in), n = MIN(len, (size_t) SHIM_HTTP_HEAD_MAX);
                char *head;
                ssize_t k;

                if (len == 0)
                        return false;
                head = (char *) evbuffer_pullup(in, (ssize_t) n);
                if (!head) {
                        p->up_error = EVREQ_HTTP_BUFFER_ERROR;
                        proxy_upstream_failed(p);
                        return false;
                }
                k = shim_http_response_parse(head, n, &r);
                if (k == -EAGAIN)
                        return false;
                if (k < 0) {
                        p->up_error = k == -E2BIG ? EVREQ_HTTP_DATA_TOO_LONG : EVREQ_HTTP_INVALID_HEADER;
                        proxy_upstream_failed(p);
                        return false;
                }
                if (r.status >= 500 && !p->started && proxy_retry_on_status(p, r.status))
                        return false;
                /* A continuation: the client has its head; only a 200 continues the stream. */
                if (p->started && r.status >= 200) {
                        if (r.status != 200) {
                                p->up_error = PROXY_ERROR_CONTINUATION_STATUS;
                                proxy_upstream_failed(p);
                                return false;
                        }
                        p->up_head_done = true;
                        p->up_keep_alive = r.keep_alive;
                        shim_http_body_init(&p->body, shim_http_response_body_kind(&r, false), r.content_length);
                        (void) evbuffer_drain(in, (size_t) k);
                        continue;
                }
                /* 1xx are interim: the real status follows. */
                if (r.status >= 200) {
                        p->up_head_done = true;
                        p->up_keep_alive = r.keep_alive;
                        if (!p->t_first_byte)
                                p->t_first_byte = now_usec();
                        shim_http_body_init(&p->body, shim_http_response_body_kind(&r, p->method == EVHTTP_REQ_HEAD),
                                            r.content_length);
                        proxy_start_reply(p, head, &r);
                }
                (void) evbuffer_drain(in, (size_t) k);
        }
        return true;
}

static void proxy_upstream_complete(ProxyRequest *p, bool reusable) {
        /* What a resumable stream held back (a last line without its newline) goes out as it is. */
        if (p->resume && p->resume_out) {
                proxy_resume_flush(p->resume, p->resume_out);
                p->resume = proxy_resume_free(p->resume);
                proxy_relay(p, p->resume_out);
        }
        proxy_attempt_release(p, reusable);
        proxy_finish(p);
}

static void proxy_upstream_read_cb(struct bufferevent *bev, void *userdata) {
        UpstreamConn *c = userdata;
        ProxyRequest *p = c->p;
        struct evbuffer *in = bufferevent_get_input(bev), *scratch = upstream_pool_scratch(c->pool);

        if (!proxy_read_head(p, in))
                return;

        while (!p->body.done && evbuffer_get_length(in) > 0) {
                struct evbuffer_iovec v;
                size_t payload;
                ssize_t n;

                if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
                        break;
                n = shim_http_body_feed(&p->body, v.iov_base, v.iov_len, &payload);
                if (n < 0) {
                        proxy_relay(p, scratch);
                        p->up_error = EVREQ_HTTP_INVALID_HEADER;
                        proxy_upstream_failed(p);
                        return;
                }
                if (n == 0)
                        break;
                if (payload > 0)
                        (void) evbuffer_remove_buffer(in, scratch, payload);
                else
                        (void) evbuffer_drain(in, (size_t) n);
        }
        proxy_relay(p, scratch);
        if (p->resume_cut) {
                p->resume_cut = false;
                p->up_error = PROXY_ERROR_STREAM_FAILED;
                proxy_upstream_failed(p);
                return;
        }
        if (p->body.done)
                proxy_upstream_complete(p, p->up_keep_alive);
}

static void proxy_upstream_write_cb(struct bufferevent *bev, void *userdata) {
        UpstreamConn *c = userdata;

        proxy_upstream_sent(c->p);
}

static void proxy_upstream_event_cb(struct bufferevent *bev, short what, void *userdata) {
        UpstreamConn *c = userdata;
        ProxyRequest *p = c->p;

        if (what & BEV_EVENT_CONNECTED) {
                p->up_connected = true;
                return;
        }
        /* A body delimited by the end of the connection is complete now. */
        if ((what & BEV_EVENT_EOF) && p->up_head_done && p->body.kind == SHIM_HTTP_BODY_EOF) {
                proxy_upstream_complete(p, false);
                return;
        }
        if (what & BEV_EVENT_TIMEOUT)
                p->up_error = EVREQ_HTTP_TIMEOUT;
        else if ((what & BEV_EVENT_EOF) || p->up_connected)
                p->up_error = EVREQ_HTTP_EOF;
        else
                p->up_error = -1;       /* the connect failed */
        proxy_upstream_failed(p);
}

/* ---- ending badly ---- */

/* Ends p before anything reached the client: status with message in the endpoint's error form. */
void proxy_fail(ProxyRequest *p, int status, const char *message) {
        p->m->counters.requests_failed++;
        p->status = status;
        proxy_log(p, status >= 500 ? LOG_WARNING : LOG_DEBUG, status, message);
        proxy_unwatch_client(p);
        shim_reply_error(p->client, status, proxy_error_form(p), message, false);
        proxy_free(p);
}

void proxy_fail_before_start(ProxyRequest *p) {
        char message[512];

        if (p->up_error < 0 && !p->up_connected)
                snprintf(message, sizeof(message), "could not connect to upstream %s%s%s", strempty(p->address),
                         isempty(p->node_id) ? "" : " of node ", p->node_id);
        else
                snprintf(message, sizeof(message), "upstream %s%s%s %s before responding", strempty(p->address),
                         isempty(p->node_id) ? "" : " of node ", p->node_id, upstream_error_string(p->up_error));
        proxy_fail(p, 502, message);
}

/* Ends a response that already started with message, and frees p. */
static void proxy_end_with_error(ProxyRequest *p, const char *message) {
        _cleanup_free_ char *body = NULL;
        ShimErrorForm form;
        struct evbuffer *buf;

        proxy_unwatch_client(p);

        /* NDJSON and SSE end with one error object and a clean end, status unchanged. Any
         * other body (or one with a Content-Length) cannot carry it: the connection is
         * closed, so the client sees a truncated response rather than a wrong one. */
        if (shim_stream_error_form(p->stream.kind, &form) >= 0 && !p->content_length &&
            shim_error_format(form, p->status, message, &body) >= 0 && (buf = evbuffer_new())) {
                proxy_flush_pending(p);
                (void) evbuffer_add_printf(buf, "%s%s", shim_stream_error_prefix(&p->stream), body);
                p->m->counters.bytes_to_clients += evbuffer_get_length(buf);
                evhttp_send_reply_chunk(p->client, buf);
                evbuffer_free(buf);
                evhttp_send_reply_end(p->client);
        } else
                evhttp_connection_free(p->client_evcon);
        proxy_free(p);
}

static void proxy_fail_mid_stream(ProxyRequest *p) {
        char message[512];

        snprintf(message, sizeof(message), "upstream %s%s%s %s during the response", strempty(p->address),
                 isempty(p->node_id) ? "" : " of node ", p->node_id, upstream_error_string(p->up_error));
        p->m->counters.requests_failed++;
        proxy_report(p, p->status, message);
        proxy_log(p, LOG_WARNING, p->status, message);
        proxy_end_with_error(p, message);
}

/* The serving node failed after the stream started (p->up_error says how; the attempt is
 * released): the same answer continues on the next candidate, in the same client stream
 * (docs/stream-resume.md). false: it cannot, and the caller ends the stream. */
static bool proxy_resume(ProxyRequest *p) {
        char message[256];
        const char *why = NULL, *reason = NULL;
        RouterTarget t = {};
        RoutePick pick;
        int r;

        if (!p->resume || !p->client || p->content_length)
                return false;
        if (!proxy_resume_possible(p->resume, &why)) {
                log_debug("Request %" PRIu64 ": node %s failed mid-stream, not resumed: %s.", p->id, p->node_id, why);
                return false;
        }
        pick = proxy_route_pick(p, shim_retry_exclude(&p->retry));
        if (router_cache_pick(p->m->router, &pick, &t, &reason) < 0) {
                log_debug("Request %" PRIu64 ": node %s failed mid-stream, not resumed: no other node serves %s.",
                          p->id, p->node_id, strempty(p->model));
                return false;
        }
        if (!proxy_resume_begin(p->resume, &r)) {
                free(t.address);
                if (r == -ENOSPC)
                        log_debug("Request %" PRIu64 ": node %s failed mid-stream, not resumed: num_predict reached.",
                                  p->id, p->node_id);
                else
                        log_debug_errno(r, "Request %" PRIu64 ": node %s failed mid-stream, not resumed: cannot make "
                                        "the continuation: %m", p->id, p->node_id);
                return false;
        }
        snprintf(message, sizeof(message), "%s mid-stream", upstream_error_string(p->up_error));
        proxy_report(p, 502, message);
        p->m->counters.resumes++;
        log_notice("Request %" PRIu64 ": node %s %s after %" PRIu64 " tokens; resuming the stream on node %s (%s).",
                   p->id, p->node_id, message, proxy_resume_tokens(p->resume), t.node_id, reason);
        if (proxy_set_target(p, &t) < 0) {
                log_oom();
                return false;
        }
        proxy_start(p);
        return true;
}

/* The client's connection is going away (closed, reset, timed out, or we shut down). */
static void proxy_client_close_cb(struct evhttp_connection *evcon, void *userdata) {
        ProxyRequest *p = userdata;

        manager_client_gone(p->m, evcon);
        p->m->counters.client_cancelled++;
        proxy_log(p, LOG_DEBUG, p->started ? p->status : 499, "client went away");

        /* A request whose connection failed (EOF, timeout) was detached from it and is ours to
         * free; otherwise libevent frees it with the connection. */
        if (!evhttp_request_get_connection(p->client))
                evhttp_request_free(p->client);
        p->client = NULL;
        p->client_evcon = NULL;

        /* 499: nginx's "client closed request", for routerd's statistics. */
        proxy_report(p, p->started ? p->status : 499, "client disconnected");
        /* Closing the upstream connection is what makes Ollama stop generating. */
        proxy_attempt_release(p, false);
        proxy_free(p);
}

/* ---- a new request ---- */

ProxyRequest *proxy_new(Manager *m, ShimListenerKind listener, struct evhttp_request *req, const ShimRequestClass *cls,
                        const char *token) {
        char *host = NULL;
        uint16_t port = 0;
        ProxyRequest *p;

        p = calloc(1, sizeof(*p));
        if (!p || !(p->uri = strdup(evhttp_request_get_uri(req)))) {
                free(p);
                return NULL;
        }
        p->m = m;
        p->id = ++m->next_request_id;
        p->policy = _ROUTE_POLICY_INVALID;
        affinity_chain_init(&p->chain);
        shim_retry_init(&p->retry, m->config->route_retries);
        p->listener = listener;
        p->cls = *cls;
        p->method = evhttp_request_get_command(req);
        p->client = req;
        p->client_evcon = evhttp_request_get_connection(req);
        p->t_start = now_usec();
        p->up_error = -1;
        (void) event_assign(&p->flush_event, m->base, -1, 0, proxy_flush_cb, p);
        (void) evtimer_assign(&p->wait_event, m->base, proxy_wait_cb, p);
        shim_stream_init(&p->stream, SHIM_STREAM_RAW);
        evhttp_connection_get_peer(p->client_evcon, &host, &port);
        snprintf(p->peer, sizeof(p->peer), "%s:%u", strempty(host), port);
        snprintf(p->token, sizeof(p->token), "%s", token);
        LIST_INSERT_HEAD(&m->requests, p, link);
        m->requests_active++;
        return p;
}

void proxy_node_lost(Manager *m, const char *node_id, const char *hostport, bool removed) {
        ProxyRequest *p, *next;

        if (!isempty(hostport))
                upstream_pool_drop(m->pool, hostport);
        for (p = LIST_FIRST(&m->requests); p; p = next) {
                next = LIST_NEXT(p, link);
                if (!p->up || !streq(p->node_id, node_id))
                        continue;
                /* A suspect may be refuted in a moment: a stream it is serving goes on; one that
                 * has not started moves to the next candidate. */
                if (p->started && !removed)
                        continue;
                log_debug("Request %" PRIu64 ": node %s %s; %s.", p->id, node_id,
                          removed ? "left the routing table" : "is down",
                          p->started ? "ending the stream" : "trying the next candidate");
                p->node_lost = true;
                p->up_error = removed ? PROXY_ERROR_NODE_LOST : PROXY_ERROR_NODE_DOWN;
                proxy_upstream_failed(p);
        }
}

void proxy_abort_all(Manager *m) {
        ProxyRequest *p;

        /* As if each client went away: the upstream is cancelled, the request freed; then the
         * client connection (and libevent's request on it) goes. */
        while ((p = LIST_FIRST(&m->requests))) {
                struct evhttp_connection *evcon = p->client_evcon;

                evhttp_connection_set_closecb(evcon, NULL, NULL);
                proxy_client_close_cb(evcon, p);
                evhttp_connection_free(evcon);
        }
}

void proxy_cancel_all(Manager *m, const char *message) {
        ProxyRequest *p;

        while ((p = LIST_FIRST(&m->requests))) {
                int status = p->started ? p->status : 503;

                m->counters.requests_failed++;
                /* Our stop, not the node's failure: a started answer counts as what it was so
                 * far; one that had not started is reported like a client that went away (499
                 * without an error, which routerd does not count against the node). */
                proxy_report(p, p->started ? p->status : 499, NULL);
                proxy_log(p, LOG_NOTICE, status, message);
                /* Closing the upstream connection is what makes Ollama stop generating. */
                proxy_attempt_release(p, false);
                if (p->started) {
                        proxy_end_with_error(p, message);
                        continue;
                }
                proxy_unwatch_client(p);
                shim_reply_error(p->client, 503, proxy_error_form(p), message, true);
                proxy_free(p);
        }
}
