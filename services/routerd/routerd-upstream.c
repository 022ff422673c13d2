/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One evhttp connection per fetch, freed outside evhttp's callbacks; a deadline timer of our
 * own bounds the whole fetch, since evhttp's timeout only bounds each read. */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <strings.h>

#include "build-config.h"
#include "http-url.h"
#include "log.h"
#include "routerd-upstream.h"

#define UPSTREAM_MAX_HEADERS_SIZE (64U * 1024U)

struct UpstreamPoller {
        struct event_base *base;
        UpstreamHealth health;
        usec_t timeout;

        char *host;             /* for connecting: no brackets around IPv6 */
        uint16_t port;
        char *host_port;        /* for the Host header */
        char *path;             /* PREFIX/api/tags */

        struct event *timer;    /* next fetch due, or the running fetch's deadline */
        struct event *release;  /* frees dead_conn outside evhttp's callbacks */
        struct evhttp_connection *conn;      /* the running fetch */
        struct evhttp_connection *dead_conn; /* a finished fetch's, to be freed */
        enum evhttp_request_error last_request_error;
        bool have_request_error;

        UpstreamPollerFn cb;
        void *userdata;
};

static void upstream_poller_schedule(UpstreamPoller *p);

static void timeval_from_usec(struct timeval *tv, usec_t u) {
        tv->tv_sec = (time_t) (u / USEC_PER_SEC);
        tv->tv_usec = (suseconds_t) (u % USEC_PER_SEC);
}

static void upstream_poller_release_conn(UpstreamPoller *p) {
        if (p->dead_conn) {
                evhttp_connection_free(p->dead_conn);
                p->dead_conn = NULL;
        }
}

static void upstream_poller_release_cb(evutil_socket_t fd, short what, void *userdata) {
        upstream_poller_release_conn(userdata);
}

/* Ends the running fetch: the connection goes to be freed on the next loop iteration
 * (we may be inside one of its callbacks), the health machine learns the result, and the
 * owner is told. */
static void upstream_poller_finish(UpstreamPoller *p, int error, const char *reason, const TagsList *tags) {
        usec_t now = now_usec();
        bool changed;

        (void) evtimer_del(p->timer);
        if (p->conn) {
                upstream_poller_release_conn(p);
                p->dead_conn = TAKE_PTR(p->conn);
                event_active(p->release, EV_TIMEOUT, 0);
        }

        if (error == 0)
                changed = upstream_health_fetch_succeeded(&p->health, now);
        else
                changed = upstream_health_fetch_failed(&p->health, now);

        p->cb(p, error, reason, tags, changed, p->userdata);
        upstream_poller_schedule(p);
}

static const char *request_error_to_string(enum evhttp_request_error e) {
        switch (e) {
        case EVREQ_HTTP_TIMEOUT: return "timed out";
        case EVREQ_HTTP_EOF: return "connection closed before the response ended";
        case EVREQ_HTTP_INVALID_HEADER: return "invalid response header";
        case EVREQ_HTTP_BUFFER_ERROR: return "connection failed";
        case EVREQ_HTTP_REQUEST_CANCEL: return "cancelled";
        case EVREQ_HTTP_DATA_TOO_LONG: return "response too large";
        default: return "failed";
        }
}

static void upstream_request_error_cb(enum evhttp_request_error e, void *userdata) {
        UpstreamPoller *p = userdata;

        p->last_request_error = e;
        p->have_request_error = true;
}

static void upstream_request_done_cb(struct evhttp_request *req, void *userdata) {
        _cleanup_(tags_list_done) TagsList tags = {};
        UpstreamPoller *p = userdata;
        struct evbuffer *body;
        char reason[128];
        size_t size;
        int code, r;

        if (!p->conn)
                return; /* already given up on (deadline) */

        if (!req || evhttp_request_get_response_code(req) == 0) {
                int e = p->have_request_error && p->last_request_error == EVREQ_HTTP_TIMEOUT ? -ETIMEDOUT
                        : p->have_request_error && p->last_request_error == EVREQ_HTTP_DATA_TOO_LONG ? -EFBIG
                        : -ECONNREFUSED;

                snprintf(reason, sizeof(reason), "GET %s: %s", p->path,
                         p->have_request_error ? request_error_to_string(p->last_request_error)
                                               : "connection failed");
                upstream_poller_finish(p, e, reason, NULL);
                return;
        }

        code = evhttp_request_get_response_code(req);
        if (code != 200) {
                snprintf(reason, sizeof(reason), "GET %s: HTTP status %d", p->path, code);
                upstream_poller_finish(p, -EPROTO, reason, NULL);
                return;
        }

        body = evhttp_request_get_input_buffer(req);
        size = evbuffer_get_length(body);
        if (size > TAGS_MAX_RESPONSE_SIZE) {
                snprintf(reason, sizeof(reason), "GET %s: response larger than %u bytes", p->path,
                         TAGS_MAX_RESPONSE_SIZE);
                upstream_poller_finish(p, -EFBIG, reason, NULL);
                return;
        }

        r = tags_parse(size > 0 ? (const char *) evbuffer_pullup(body, -1) : "", size, &tags);
        if (r == -ENOMEM) {
                /* Our problem, not the upstream's: keep what we knew and try again later. */
                upstream_poller_finish(p, r, "out of memory", NULL);
                return;
        }
        if (r < 0) {
                snprintf(reason, sizeof(reason), "GET %s: response is not a model list", p->path);
                upstream_poller_finish(p, r, reason, NULL);
                return;
        }
        upstream_poller_finish(p, 0, NULL, &tags);
}

static void upstream_poller_start_fetch(UpstreamPoller *p) {
        struct evhttp_request *req;
        struct evkeyvalq *headers;
        struct timeval tv;

        upstream_poller_release_conn(p);
        upstream_health_fetch_started(&p->health, now_usec());
        p->have_request_error = false;

        p->conn = evhttp_connection_base_new(p->base, NULL, p->host, p->port);
        if (!p->conn) {
                upstream_poller_finish(p, -ENOMEM, "failed to create a connection", NULL);
                return;
        }
        timeval_from_usec(&tv, p->timeout);
        evhttp_connection_set_timeout_tv(p->conn, &tv);
        evhttp_connection_set_retries(p->conn, 0);
        evhttp_connection_set_max_body_size(p->conn, TAGS_MAX_RESPONSE_SIZE);
        evhttp_connection_set_max_headers_size(p->conn, UPSTREAM_MAX_HEADERS_SIZE);

        req = evhttp_request_new(upstream_request_done_cb, p);
        if (!req) {
                upstream_poller_finish(p, -ENOMEM, "failed to create a request", NULL);
                return;
        }
        evhttp_request_set_error_cb(req, upstream_request_error_cb);
        headers = evhttp_request_get_output_headers(req);
        /* Ollama bound to loopback checks Host; name the upstream as configured. */
        if (evhttp_add_header(headers, "Host", p->host_port) < 0 ||
            evhttp_add_header(headers, "Accept", "application/json") < 0 ||
            evhttp_add_header(headers, "User-Agent", "mycelia-routerd/" PACKAGE_VERSION) < 0 ||
            evhttp_add_header(headers, "Connection", "close") < 0) {
                evhttp_request_free(req);
                upstream_poller_finish(p, -ENOMEM, "failed to build a request", NULL);
                return;
        }
        if (evhttp_make_request(p->conn, req, EVHTTP_REQ_GET, p->path) < 0) {
                /* libevent 2.1 leaves the request with us when the connect fails at once. */
                evhttp_request_free(req);
                upstream_poller_finish(p, -ECONNREFUSED, "failed to start the request", NULL);
                return;
        }

        /* evhttp's timeout restarts with every read; this one bounds the whole fetch. (A connect
         * that failed at once may already have finished the fetch and scheduled the next.) */
        if (p->health.fetching)
                (void) evtimer_add(p->timer, &tv);
}

static void upstream_poller_timer_cb(evutil_socket_t fd, short what, void *userdata) {
        UpstreamPoller *p = userdata;
        char reason[128];

        if (p->health.fetching) {
                /* Deadline: drop the connection; freeing it runs no request callback. */
                snprintf(reason, sizeof(reason), "GET %s: timed out", p->path);
                upstream_poller_finish(p, -ETIMEDOUT, reason, NULL);
                return;
        }
        if (upstream_health_fetch_due(&p->health, now_usec()))
                upstream_poller_start_fetch(p);
        else
                upstream_poller_schedule(p);
}

/* Arms the timer for the next due fetch. A due fetch also starts from the timer, never
 * from the caller's stack, so callbacks never re-enter a fetch. */
static void upstream_poller_schedule(UpstreamPoller *p) {
        usec_t when, now;
        struct timeval tv;

        if (p->health.fetching)
                return;
        when = upstream_health_next_wakeup(&p->health);
        if (when == USEC_INFINITY) {
                (void) evtimer_del(p->timer);
                return;
        }
        now = now_usec();
        timeval_from_usec(&tv, when > now ? when - now : 0);
        (void) evtimer_add(p->timer, &tv);
}

static int upstream_url_parse(UpstreamPoller *p, const char *url) {
        HttpBaseUrl u;

        /* Every malformed URL is the same configuration error to our caller. */
        if (http_base_url_parse(url, &u) < 0)
                return -EINVAL;
        p->port = u.port;
        p->host = strdup(u.host);
        p->host_port = strdup(u.hostport);
        if (asprintf(&p->path, "%s/api/tags", u.prefix) < 0)
                p->path = NULL;
        if (!p->host || !p->host_port || !p->path)
                return -ENOMEM;
        return 0;
}

int upstream_poller_new(struct event_base *base, const char *url, usec_t timeout, usec_t tags_interval,
                        usec_t probe_interval, UpstreamPollerFn cb, void *userdata, UpstreamPoller **ret) {
        _cleanup_(upstream_poller_freep) UpstreamPoller *p = NULL;
        int r;

        if (timeout == 0 || tags_interval == 0 || probe_interval == 0)
                return -EINVAL;

        p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        p->base = base;
        p->timeout = timeout;
        p->cb = cb;
        p->userdata = userdata;
        upstream_health_init(&p->health, tags_interval, probe_interval, now_usec());

        r = upstream_url_parse(p, url);
        if (r < 0)
                return r;

        p->timer = evtimer_new(base, upstream_poller_timer_cb, p);
        p->release = event_new(base, -1, 0, upstream_poller_release_cb, p);
        if (!p->timer || !p->release)
                return -ENOMEM;

        *ret = TAKE_PTR(p);
        return 0;
}

UpstreamPoller *upstream_poller_free(UpstreamPoller *p) {
        if (!p)
                return NULL;
        /* Freeing a connection drops its request without running its callback. */
        if (p->conn)
                evhttp_connection_free(p->conn);
        upstream_poller_release_conn(p);
        if (p->timer)
                event_free(p->timer);
        if (p->release)
                event_free(p->release);
        free(p->host);
        free(p->host_port);
        free(p->path);
        free(p);
        return NULL;
}

int upstream_poller_start(UpstreamPoller *p) {
        upstream_poller_schedule(p);
        return 0;
}

void upstream_poller_report_failure(UpstreamPoller *p) {
        if (upstream_health_report_failure(&p->health, now_usec()))
                upstream_poller_schedule(p);
}

void upstream_poller_refresh(UpstreamPoller *p) {
        if (upstream_health_refresh(&p->health, now_usec()))
                upstream_poller_schedule(p);
}

const UpstreamHealth *upstream_poller_get_health(const UpstreamPoller *p) {
        return &p->health;
}

const char *upstream_poller_get_host_port(const UpstreamPoller *p) {
        return p->host_port;
}

const char *upstream_poller_get_path(const UpstreamPoller *p) {
        return p->path;
}
