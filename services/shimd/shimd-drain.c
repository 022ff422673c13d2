/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The graceful stop on SIGTERM: stop accepting, close idle connections (shimd-clients.c), let
 * the requests in flight finish up to drain_timeout, cancel the rest. docs/shim-drain.md. */
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <inttypes.h>

#include "log.h"
#include "shimd-clients.h"
#include "shimd-manager.h"
#include "shimd-proxy.h"
#include "shimd-router-cache.h"
#include "shimd-spread.h"

/* What a request still running when drain_timeout passes ends with. */
#define DRAIN_CANCEL_MESSAGE "server is shutting down: the request did not finish within the drain timeout"
/* After the drain timeout cancelled what was left, the error objects and 503s get this long to
 * reach their clients. With the default drain_timeout (8 s) that stays below the unit's
 * TimeoutStopSec=10s, after which systemd would SIGKILL us. */
#define DRAIN_CANCEL_GRACE_USEC (500 * USEC_PER_MSEC)

/* ---- the drain ---- */

static bool drain_done(const Manager *m) {
        return m->requests_active == 0 && m->clients_busy == 0;
}

static void drain_check_cb(evutil_socket_t fd, short what, void *userdata) {
        Manager *m = userdata;

        if (!drain_done(m))
                return;
        m->drained = true;
        (void) event_base_loopbreak(m->base);
}

static void drain_timer_cb(evutil_socket_t fd, short what, void *userdata) {
        Manager *m = userdata;
        struct timeval tv = { 0, DRAIN_CANCEL_GRACE_USEC };

        if (m->drain_expired) {
                /* The cancelled replies had their time; whatever is still being written is cut. */
                m->drain_grace_over = true;
                (void) event_base_loopbreak(m->base);
                return;
        }
        m->drain_expired = true;
        log_notice("Stopping: drain timeout passed with %u request(s) in flight; cancelling them.",
                   m->requests_active);
        proxy_cancel_all(m, DRAIN_CANCEL_MESSAGE);
        spread_cancel_all(m, DRAIN_CANCEL_MESSAGE);
        (void) evtimer_add(m->drain_timer, &tv);
        manager_drain_check(m);
}

int manager_drain_init(Manager *m) {
        m->drain_timer = evtimer_new(m->base, drain_timer_cb, m);
        m->drain_check = event_new(m->base, -1, 0, drain_check_cb, m);
        return m->drain_timer && m->drain_check ? 0 : -ENOMEM;
}

void manager_drain_free(Manager *m) {
        if (m->drain_timer)
                event_free(m->drain_timer);
        if (m->drain_check)
                event_free(m->drain_check);
        m->drain_timer = m->drain_check = NULL;
}

/* Stops taking connections on l. */
static void listener_stop(ShimListener *l) {
        if (!l->bound)
                return;
        if (l->inherited) {
                /* systemd (or the launcher) holds the same listening socket: connections that
                 * arrive from now on wait in its backlog for the next instance. Only stop
                 * accepting; never close it (evhttp_del_accept_socket() would close the fd; the
                 * kernel socket would survive in systemd's copy, but there is no need). Our copy
                 * of the fd closes with evhttp_free() at exit. */
                (void) evconnlistener_disable(evhttp_bound_socket_get_listener(l->bound));
                return;
        }
        /* Bound by ourselves: nobody would ever accept what queues on it, so close it now and
         * let new connections be refused at once rather than wait for our exit. */
        evhttp_del_accept_socket(l->http, l->bound);
        l->bound = NULL;
}

int manager_drain(Manager *m) {
        usec_t t0 = now_usec(), timeout = m->config->drain_timeout;
        struct timeval tv = { .tv_sec = (time_t) (timeout / USEC_PER_SEC),
                              .tv_usec = (suseconds_t) (timeout % USEC_PER_SEC) };
        unsigned n_idle = 0;

        m->draining = true;
        listener_stop(&m->api);
        listener_stop(&m->mesh);

        /* Idle keep-alive connections would otherwise bring one more request each. */
        n_idle = manager_clients_close_idle(m);

        if (drain_done(m))
                log_info("Stopping: nothing in flight; closed %u idle connection(s).", n_idle);
        else {
                log_info("Stopping: no new connections; letting %u request(s) in flight finish, for at most "
                         "%" PRIu64 " ms; closed %u idle connection(s).",
                         m->requests_active, timeout / USEC_PER_MSEC, n_idle);
                daemon_notify_status("Stopping: %u request(s) in flight", m->requests_active);
                (void) evtimer_add(m->drain_timer, &tv);
                if (event_base_dispatch(m->base) < 0)
                        return log_error_errno(EIO, "Event loop failed.");

                if (m->drained)
                        log_info("Stopping: requests in flight %s after %" PRIu64 " ms.",
                                 m->drain_expired ? "cancelled" : "finished", (now_usec() - t0) / USEC_PER_MSEC);
                else if (!m->drain_expired) {
                        /* A second SIGTERM/SIGINT: stop now. What can be written without waiting
                         * goes out in one non-blocking turn of the loop. */
                        log_notice("Stopping at once (signalled again): cancelling %u request(s) in flight.",
                                   m->requests_active);
                        proxy_cancel_all(m, DRAIN_CANCEL_MESSAGE);
                        spread_cancel_all(m, DRAIN_CANCEL_MESSAGE);
                        (void) event_base_loop(m->base, EVLOOP_NONBLOCK);
                }
        }

        /* Outcomes of the requests that just ended, and the in-flight counts now at zero. */
        router_cache_flush(m->router);
        return 0;
}
