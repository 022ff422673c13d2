/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Parallel sub-requests on libevent's HTTP client (shimd-fanout.h). Answers are read whole, so
 * this is for bounded answers (model lists, embeddings), never for streams: those go through the
 * relay (shimd-proxy.c). A part to a peer carries X-Mycelia-Hop and X-Mycelia-Auth as the relay's
 * do; the peer serves it from its own Ollama. */
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <stdio.h>

#include "log.h"
#include "mesh-auth.h"
#include "shimd-fanout.h"
#include "shimd-mesh.h"

typedef struct PartState {
        Fanout *f;
        size_t index;
        struct evhttp_connection *conn;
        struct evhttp_request *req;     /* while in flight */
        usec_t started;
        bool in_flight;                 /* counted in the router cache's in-flight */
} PartState;

struct Fanout {
        Manager *m;
        enum evhttp_cmd_type method;
        char *path;
        struct timeval timeout;
        FanoutDoneFn done;
        void *userdata;
        FanoutPart parts[FANOUT_PARTS_MAX];
        PartState state[FANOUT_PARTS_MAX];
        size_t n_parts, n_pending;
        bool count_in_flight;           /* parts are load on their nodes (inference, embeddings) */
        struct event *finish;           /* runs done from the loop, after the HTTP callbacks */
};

static const char *method_string(enum evhttp_cmd_type t) {
        return t == EVHTTP_REQ_POST ? "POST" : t == EVHTTP_REQ_HEAD ? "HEAD" : "GET";
}

static void fanout_finish_cb(evutil_socket_t fd, short what, void *userdata) {
        Fanout *f = userdata;

        f->done(f, f->userdata);
}

int fanout_new(Manager *m, enum evhttp_cmd_type method, const char *path, usec_t timeout, FanoutDoneFn done,
               void *userdata, Fanout **ret) {
        Fanout *f;

        f = calloc(1, sizeof(*f));
        if (!f)
                return -ENOMEM;
        f->m = m;
        f->method = method;
        f->path = strdup(path);
        f->timeout = usec_to_timeval(timeout);
        f->done = done;
        f->userdata = userdata;
        f->finish = event_new(m->base, -1, 0, fanout_finish_cb, f);
        if (!f->path || !f->finish) {
                fanout_free(f);
                return -ENOMEM;
        }
        *ret = f;
        return 0;
}

void fanout_count_in_flight(Fanout *f) {
        f->count_in_flight = true;
}

/* A part's request ended (answered, failed or cancelled): it is no longer load on its node. */
static void part_end_in_flight(Fanout *f, size_t i) {
        if (!f->state[i].in_flight)
                return;
        f->state[i].in_flight = false;
        router_cache_in_flight(f->m->router, f->parts[i].target.node_id, -1);
}

Fanout *fanout_free(Fanout *f) {
        if (!f)
                return NULL;
        for (size_t i = 0; i < f->n_parts; i++) {
                part_end_in_flight(f, i);
                /* Freeing the connection cancels a request still in flight. */
                if (f->state[i].conn)
                        evhttp_connection_free(f->state[i].conn);
                free(f->parts[i].target.address);
                if (f->parts[i].body)
                        evbuffer_free(f->parts[i].body);
                if (f->parts[i].answer)
                        evbuffer_free(f->parts[i].answer);
        }
        if (f->finish)
                event_free(f->finish);
        free(f->path);
        free(f);
        return NULL;
}

int fanout_add(Fanout *f, RouterTarget *t, struct evbuffer *body, void *userdata, FanoutPart **ret) {
        FanoutPart *p;

        if (f->n_parts >= FANOUT_PARTS_MAX)
                return -E2BIG;
        p = &f->parts[f->n_parts];
        *p = (FanoutPart) { .target = *t, .body = body, .userdata = userdata };
        t->address = NULL;
        f->state[f->n_parts] = (PartState) { .f = f, .index = f->n_parts };
        f->n_parts++;
        if (ret)
                *ret = p;
        return 0;
}

size_t fanout_n_parts(Fanout *f) {
        return f->n_parts;
}

FanoutPart *fanout_part(Fanout *f, size_t i) {
        return i < f->n_parts ? &f->parts[i] : NULL;
}

static void part_done(PartState *s, int status, struct evbuffer *answer) {
        Fanout *f = s->f;
        FanoutPart *p = &f->parts[s->index];

        p->status = status;
        p->duration = now_usec() - s->started;
        if (answer) {
                if (!p->answer)
                        p->answer = evbuffer_new();
                if (p->answer) {
                        (void) evbuffer_drain(p->answer, evbuffer_get_length(p->answer));
                        (void) evbuffer_add_buffer(p->answer, answer);
                }
        }
        p->done = true;
        s->req = NULL;
        part_end_in_flight(f, s->index);
        if (--f->n_pending == 0)
                event_active(f->finish, EV_TIMEOUT, 1);
}

static void part_response_cb(struct evhttp_request *req, void *userdata) {
        PartState *s = userdata;

        /* NULL, or no response code: refused, reset, timed out, too large. */
        if (!req || evhttp_request_get_response_code(req) == 0) {
                part_done(s, 0, NULL);
                return;
        }
        part_done(s, evhttp_request_get_response_code(req), evhttp_request_get_input_buffer(req));
}

static int part_send(Fanout *f, size_t i) {
        FanoutPart *p = &f->parts[i];
        PartState *s = &f->state[i];
        struct evkeyvalq *h;
        bool peer = !isempty(p->target.node_id) && !streq(p->target.node_id, f->m->node_id);
        _cleanup_free_ char *uri = NULL;
        int r;

        if (asprintf(&uri, "%s%s", p->target.url.prefix, f->path) < 0)
                return -ENOMEM;
        if (s->conn) {
                evhttp_connection_free(s->conn);
                s->conn = NULL;
        }
        if (peer && f->m->creds.tls) {
                /* A peer's mesh listener speaks TLS (docs/mesh-tls.md); the connection owns bev. */
                struct bufferevent *bev = mesh_tls_bev_connecting(f->m->creds.tls, f->m->base);

                if (!bev)
                        return -ENOMEM;
                s->conn = evhttp_connection_base_bufferevent_new(f->m->base, NULL, bev, p->target.url.host,
                                                                 p->target.url.port);
                if (!s->conn)
                        bufferevent_free(bev);
        } else
                s->conn = evhttp_connection_base_new(f->m->base, NULL, p->target.url.host, p->target.url.port);
        if (!s->conn)
                return -ENOMEM;
        evhttp_connection_set_timeout_tv(s->conn, &f->timeout);
        evhttp_connection_set_max_body_size(s->conn, FANOUT_ANSWER_MAX);
        evhttp_connection_set_retries(s->conn, 0);
        s->req = evhttp_request_new(part_response_cb, s);
        if (!s->req)
                return -ENOMEM;
        h = evhttp_request_get_output_headers(s->req);
        (void) evhttp_add_header(h, "Host", p->target.url.hostport);
        if (p->body) {
                (void) evhttp_add_header(h, "Content-Type", "application/json");
                /* Copied, so that the part can be sent again. */
                if (evbuffer_add(evhttp_request_get_output_buffer(s->req), evbuffer_pullup(p->body, -1),
                                 evbuffer_get_length(p->body)) < 0) {
                        evhttp_request_free(s->req);
                        s->req = NULL;
                        return -ENOMEM;
                }
        }
        if (peer) {
                char auth[MESH_AUTH_VALUE_MAX];

                if (!f->m->have_mesh_key) {
                        evhttp_request_free(s->req);
                        s->req = NULL;
                        return -ENOKEY;
                }
                r = mesh_request_sign(f->m, method_string(f->method), uri, p->target.node_id,
                                      evhttp_request_get_output_buffer(s->req), auth);
                if (r < 0) {
                        evhttp_request_free(s->req);
                        s->req = NULL;
                        return r;
                }
                (void) evhttp_add_header(h, MESH_HOP_HEADER, "1");
                (void) evhttp_add_header(h, MESH_AUTH_HEADER, auth);
        }
        s->started = now_usec();
        p->done = false;
        p->status = 0;
        f->n_pending++;
        /* On failure libevent frees the request. */
        if (evhttp_make_request(s->conn, s->req, f->method, uri) < 0) {
                s->req = NULL;
                f->n_pending--;
                return -EIO;
        }
        /* Between two table updates, least-loaded and the bound of gravity see these parts at once
         * (and routerd, which gossips them, at its next report). */
        if (f->count_in_flight && !isempty(p->target.node_id)) {
                router_cache_in_flight(f->m->router, p->target.node_id, +1);
                s->in_flight = true;
        }
        return 0;
}

int fanout_start(Fanout *f) {
        if (f->n_parts == 0) {
                event_active(f->finish, EV_TIMEOUT, 1);
                return 0;
        }
        for (size_t i = 0; i < f->n_parts; i++) {
                int r = part_send(f, i);

                if (r < 0) {
                        /* Counted as a part that got no answer: the caller may send it elsewhere. */
                        log_debug("Fan-out part %zu to %s not sent: %s", i, f->parts[i].target.name, strerror(-r));
                        f->parts[i].done = true;
                        f->parts[i].status = 0;
                }
        }
        if (f->n_pending == 0)
                event_active(f->finish, EV_TIMEOUT, 1);
        return 0;
}

int fanout_resend(Fanout *f, size_t i, RouterTarget *t) {
        FanoutPart *p;
        int r;

        if (i >= f->n_parts)
                return -EINVAL;
        p = &f->parts[i];
        free(p->target.address);
        p->target = *t;
        t->address = NULL;
        r = part_send(f, i);
        if (r < 0) {
                p->done = true;
                p->status = 0;
        }
        return r;
}
