/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Outgoing requests to peers' shardd (see shardd-client.h). Each has its own connection: few run at
 * once (the writes of one batch, one transfer per peer), and a fresh connection never meets a
 * half-closed keep-alive one after a peer restarts. */
#include <event2/bufferevent.h>
#include <stdlib.h>
#include <string.h>

#include "http-url.h"
#include "log.h"
#include "mesh-http.h"
#include "shardd-client.h"
#include "shardd-manager.h"

struct ShardCall {
        Manager *m;
        LIST_ENTRY(ShardCall) link;
        struct evhttp_connection *conn;
        struct evhttp_request *req;
        ShardCallFn fn;
        void *userdata;
        struct event *free_event;       /* frees the call after libevent's callback returned */
        bool done;
};

static void call_free(ShardCall *c) {
        Manager *m = c->m;

        LIST_REMOVE(c, link);
        if (c->free_event)
                event_free(c->free_event);
        /* Freeing the connection cancels a request still in flight. */
        if (c->conn)
                evhttp_connection_free(c->conn);
        free(c);
        /* Stopping, and that was the last one in flight (manager_stop_calls()). */
        if (m->stopping && LIST_EMPTY(&m->calls))
                (void) event_base_loopbreak(m->base);
}

static void call_free_cb(evutil_socket_t fd, short what, void *userdata) {
        call_free(userdata);
}

static void call_response_cb(struct evhttp_request *req, void *userdata) {
        ShardCall *c = userdata;
        int status = req ? evhttp_request_get_response_code(req) : 0;

        c->req = NULL;
        if (!c->done) {
                c->done = true;
                c->fn(c, status, status > 0 ? evhttp_request_get_input_buffer(req) : NULL, c->userdata);
        }
        /* Not from inside libevent's callback on this connection: after it returns (an event of
         * the call's own, so that freeing the call first cancels it). */
        if (!c->free_event)
                c->free_event = evtimer_new(c->m->base, call_free_cb, c);
        if (!c->free_event || evtimer_add(c->free_event, &(struct timeval) {}) < 0)
                log_warning("Cannot schedule freeing a finished call; its connection stays open.");
}

static const char *method_name(enum evhttp_cmd_type t) {
        switch (t) {
        case EVHTTP_REQ_GET: return "GET";
        case EVHTTP_REQ_HEAD: return "HEAD";
        case EVHTTP_REQ_PUT: return "PUT";
        default: return "POST";
        }
}

int shard_call_send(Manager *m, const char *node_id, const char *url, const ShardCallRequest *rq, ShardCallFn fn,
                    void *userdata, ShardCall **ret) {
        char auth[MESH_AUTH_VALUE_MAX];
        struct bufferevent *bev;
        struct evkeyvalq *h;
        struct evbuffer *out;
        HttpBaseUrl base;
        ShardCall *c;
        int r;

        if (!m->have_mesh_key || !m->creds.tls)
                return -ENOKEY;
        if (m->stopping)
                return -ESHUTDOWN;
        r = http_base_url_parse(url, &base);
        if (r < 0)
                return r;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        *c = (ShardCall) { .m = m, .fn = fn, .userdata = userdata };
        LIST_INSERT_HEAD(&m->calls, c, link);
        /* TLS to the peer's transfer listener (docs/mesh-tls.md); the connection owns bev. */
        bev = mesh_tls_bev_connecting(m->creds.tls, m->base);
        if (bev) {
                c->conn = evhttp_connection_base_bufferevent_new(m->base, NULL, bev, base.host, base.port);
                if (!c->conn)
                        bufferevent_free(bev);
        }
        c->req = evhttp_request_new(call_response_cb, c);
        if (!c->conn || !c->req) {
                r = -ENOMEM;
                goto fail;
        }
        evhttp_connection_set_timeout_tv(c->conn, &(struct timeval) { .tv_sec = rq->timeout / USEC_PER_SEC,
                                                                      .tv_usec = rq->timeout % USEC_PER_SEC });
        evhttp_connection_set_max_body_size(c->conn, (ev_ssize_t) MIN(rq->answer_max ?: SHARD_CALL_ANSWER_MAX,
                                                                     (uint64_t) INT64_MAX));
        evhttp_connection_set_retries(c->conn, 0);
        h = evhttp_request_get_output_headers(c->req);
        out = evhttp_request_get_output_buffer(c->req);
        (void) evhttp_add_header(h, "Host", base.hostport);
        if (rq->body && rq->body_size > 0) {
                (void) evhttp_add_header(h, "Content-Type", "application/octet-stream");
                r = rq->body_by_reference ? evbuffer_add_reference(out, rq->body, rq->body_size, NULL, NULL)
                                          : evbuffer_add(out, rq->body, rq->body_size);
                if (r < 0) {
                        r = -ENOMEM;
                        goto fail;
                }
        }
        r = mesh_http_sign(&m->creds.http, method_name(rq->method), rq->target, node_id, out, auth);
        if (r < 0)
                goto fail;
        (void) evhttp_add_header(h, MESH_AUTH_HEADER, auth);
        /* On failure libevent frees the request. */
        if (evhttp_make_request(c->conn, c->req, rq->method, rq->target) < 0) {
                c->req = NULL;
                call_free(c);
                return -EIO;
        }
        if (ret)
                *ret = c;
        return 0;
fail:
        if (c->req)
                evhttp_request_free(c->req);
        call_free(c);
        return r;
}

int shard_call(Manager *m, const char *node_id, const char *url, enum evhttp_cmd_type method, const char *target,
               const void *body, size_t body_size, usec_t timeout, ShardCallFn fn, void *userdata, ShardCall **ret) {
        return shard_call_send(m, node_id, url,
                               &(ShardCallRequest) { .method = method, .target = target, .body = body,
                                                     .body_size = body_size, .timeout = timeout },
                               fn, userdata, ret);
}

void shard_call_cancel(ShardCall *c) {
        if (!c || c->done)
                return;
        c->done = true;
        if (!c->req)
                return;
        /* The connection goes with its request; the response callback (with NULL) is not run
         * for a freed connection. */
        c->req = NULL;
        call_free(c);
}

void shard_calls_cancel_all(Manager *m) {
        while (!LIST_EMPTY(&m->calls)) {
                ShardCall *c = LIST_FIRST(&m->calls);

                c->done = true;
                c->req = NULL;
                call_free(c);
        }
}
