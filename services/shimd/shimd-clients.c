/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The client connections of the shim, from accept to close: busy or waiting for a request. What
 * the drain (shimd-drain.c) waits for and closes (docs/shim-drain.md), what the connection cap
 * counts, and the deadline that keeps slow-header clients from holding connections
 * (docs/shim-limits.md, "Connections"). */
#include <assert.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/listener.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "shimd-clients.h"

/* libevent 2.1 lists a server's connections only internally and has no accept hook but the
 * bufferevent callback (evhttp_set_bevcb()), which runs before the evhttp_connection exists. So
 * the bufferevent made there is kept (with a reference of ours) until the same turn of the loop
 * is over; its callbacks' argument is then the evhttp_connection, or NULL when libevent already
 * freed it (bufferevent_free() clears them). From then on we learn of the connection's end from
 * its close callback, which is ours whenever no request of the proxy holds it (the proxy's own
 * close callback forwards to manager_client_gone()). The table is indexed by fd, so finding a
 * connection costs nothing per request. */

static int client_fd(struct evhttp_connection *evcon) {
        struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);

        return bev ? bufferevent_getfd(bev) : -1;
}

static ShimClient *client_find(Manager *m, struct evhttp_connection *evcon) {
        int fd = client_fd(evcon);

        if (fd >= 0 && (size_t) fd < m->n_clients && m->clients[fd].evcon == evcon)
                return &m->clients[fd];
        return NULL;
}

static int client_table_grow(Manager *m, int fd) {
        size_t n = MAX(MAX((size_t) fd + 1, m->n_clients * 2), (size_t) 64);
        ShimClient *t;

        t = realloc(m->clients, n * sizeof(ShimClient));
        if (!t)
                return -ENOMEM;
        memset(t + m->n_clients, 0, (n - m->n_clients) * sizeof(ShimClient));
        m->clients = t;
        m->n_clients = n;
        return 0;
}

/* --- the connection cap --- */

static struct evconnlistener *listener_evl(ShimListener *l) {
        return l->bound ? evhttp_bound_socket_get_listener(l->bound) : NULL;
}

/* All connections taken: new ones wait in the kernel's listen backlog until one closes. */
static void listener_pause(ShimListener *l) {
        Manager *m = l->manager;
        struct evconnlistener *evl = listener_evl(l);
        usec_t now;

        if (l->accept_paused || !evl)
                return;
        (void) evconnlistener_disable(evl);
        l->accept_paused = true;
        m->counters.accept_paused++;
        now = now_usec();
        if (now - m->cap_logged_at >= 60 * USEC_PER_SEC) {
                m->cap_logged_at = now;
                log_notice("%u connections open on %s, the most allowed ([shim] max_connections); new ones wait "
                           "in the listen backlog until one closes.", l->n_connections, l->address);
        }
}

static void listener_connection_gone(ShimListener *l) {
        struct evconnlistener *evl;

        assert(l->n_connections > 0);
        l->n_connections--;
        l->manager->clients_open--;
        if (!l->accept_paused || l->n_connections >= l->max_connections)
                return;
        l->accept_paused = false;
        /* Not while draining (listener_stop() disabled it for good), nor once evhttp_free()
         * took the listener. */
        evl = listener_evl(l);
        if (evl && !l->manager->draining)
                (void) evconnlistener_enable(evl);
}

static void client_forget(Manager *m, ShimClient *c) {
        ShimListener *l = c->listener;

        if (c->busy)
                m->clients_busy--;
        *c = (ShimClient) {};
        if (l)
                listener_connection_gone(l);
        manager_drain_check(m);
}

/* A connection picked up after its accept, or one whose request came first: its entry. A stale
 * entry on the same fd (a close we were not told of) is forgotten first. NULL: out of memory. */
static ShimClient *client_entry(Manager *m, struct evhttp_connection *evcon) {
        int fd = client_fd(evcon);
        ShimClient *c;

        if (fd < 0 || ((size_t) fd >= m->n_clients && client_table_grow(m, fd) < 0))
                return NULL;
        c = &m->clients[fd];
        if (c->evcon == evcon)
                return c;
        if (c->evcon)
                client_forget(m, c);
        *c = (ShimClient) { .evcon = evcon, .since = now_usec() };
        return c;
}

struct bufferevent *manager_client_bev_new(struct event_base *base, void *userdata) {
        ShimListener *l = userdata;
        Manager *m = l->manager;
        struct bufferevent *bev;

        /* Peers speak TLS to the mesh listener (docs/mesh-tls.md); else what libevent would
         * make itself. */
        if (l->kind == SHIM_LISTENER_MESH && m->creds.tls)
                bev = mesh_tls_bev_accepting(m->creds.tls, base);
        else
                bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
        if (!bev)
                return NULL;    /* libevent tries its own; that connection is not counted */
        if (m->n_accepted == m->n_accepted_allocated) {
                size_t n = MAX(m->n_accepted_allocated * 2, (size_t) 64);
                ShimAccepted *a = reallocarray(m->accepted, n, sizeof(ShimAccepted));

                if (!a)
                        return bev;     /* served, not counted */
                m->accepted = a;
                m->n_accepted_allocated = n;
        }
        bufferevent_incref(bev);
        m->accepted[m->n_accepted++] = (ShimAccepted) { .bev = bev, .listener = l, .at = now_usec() };
        l->n_connections++;
        m->clients_open++;
        if (l->n_connections >= l->max_connections)
                listener_pause(l);
        event_active(m->accepted_event, EV_TIMEOUT, 0);
        return bev;
}

/* After the accepts of this turn of the loop: their connections exist now. */
static void clients_accepted_cb(evutil_socket_t fd, short what, void *userdata) {
        Manager *m = userdata;

        for (size_t i = 0; i < m->n_accepted; i++) {
                ShimAccepted *a = &m->accepted[i];
                struct evhttp_connection *evcon = NULL;
                void *arg = NULL;
                ShimClient *c;

                bufferevent_getcb(a->bev, NULL, NULL, NULL, &arg);
                evcon = arg;
                c = evcon ? client_entry(m, evcon) : NULL;
                if (c && !c->listener) {
                        c->listener = a->listener;
                        c->since = a->at;
                        if (!c->busy)
                                evhttp_connection_set_closecb(evcon, manager_client_closed_cb, m);
                } else
                        /* Already gone (or not trackable). */
                        listener_connection_gone(a->listener);
                bufferevent_decref(a->bev);
        }
        m->n_accepted = 0;
}

/* Closes a connection that is not answering a request. */
static void client_close(Manager *m, ShimClient *c) {
        struct evhttp_connection *evcon = c->evcon;

        client_forget(m, c);
        evhttp_connection_set_closecb(evcon, NULL, NULL);
        evhttp_connection_free(evcon);
}

/* libevent's idle timeout restarts with every byte read, so a client sending its head a byte at
 * a time would keep its connection for ever: every connection must have its whole request (head
 * and body) in within idle_timeout of its accept or of its last reply. */
static void clients_timer_cb(evutil_socket_t fd, short what, void *userdata) {
        Manager *m = userdata;
        usec_t now = now_usec(), limit = m->config->idle_timeout;

        for (size_t i = 0; i < m->n_clients; i++) {
                ShimClient *c = &m->clients[i];

                if (!c->evcon || c->busy || now - c->since <= limit)
                        continue;
                m->counters.clients_timed_out++;
                log_debug("Closing a client connection on %s: no whole request within %" PRIu64 " ms.",
                          c->listener ? c->listener->address : "?", limit / USEC_PER_MSEC);
                client_close(m, c);
        }
}

int manager_clients_init(Manager *m) {
        struct timeval second = { .tv_sec = 1 };

        m->accepted_event = event_new(m->base, -1, 0, clients_accepted_cb, m);
        m->clients_timer = event_new(m->base, -1, EV_PERSIST, clients_timer_cb, m);
        if (!m->accepted_event || !m->clients_timer)
                return -ENOMEM;
        if (event_add(m->clients_timer, &second) < 0)
                return -ENOMEM;
        return 0;
}

/* Makes libevent close the connection after this reply, as if the client had asked: it then
 * says "Connection: close" in the reply head (when that is still to be sent) and does not read
 * another request. */
void manager_client_close_after(struct evhttp_request *req) {
        struct evkeyvalq *in = evhttp_request_get_input_headers(req);

        while (evhttp_remove_header(in, "Connection") == 0)
                ;
        (void) evhttp_remove_header(in, "Proxy-Connection");
        (void) evhttp_add_header(in, "Connection", "close");
}

/* The reply is written out (libevent's evhttp_send_done(), before it decides whether to keep
 * the connection). */
static void client_complete_cb(struct evhttp_request *req, void *userdata) {
        Manager *m = userdata;
        struct evhttp_connection *evcon = evhttp_request_get_connection(req);
        ShimClient *c = evcon ? client_find(m, evcon) : NULL;

        if (c && c->busy) {
                c->busy = false;
                c->since = now_usec();
                m->clients_busy--;
        }
        if (m->draining)
                manager_client_close_after(req);
        manager_drain_check(m);
}

void manager_client_begin(Manager *m, struct evhttp_request *req) {
        struct evhttp_connection *evcon = evhttp_request_get_connection(req);
        ShimClient *c;

        if (!evcon)
                return;
        evhttp_request_set_on_complete_cb(req, client_complete_cb, m);
        /* The proxy replaces it while it answers; the replies written at once keep it. */
        evhttp_connection_set_closecb(evcon, manager_client_closed_cb, m);
        /* A request that reaches us while we drain (on a connection accepted before) is
         * answered, and its connection closed after the reply. */
        if (m->draining)
                manager_client_close_after(req);

        /* Out of memory: the connection is not tracked, which only means a drain would not
         * close it early nor wait for its last bytes. */
        c = client_entry(m, evcon);
        if (!c || c->busy)
                return;
        c->busy = true;
        c->served = true;
        m->clients_busy++;
}

void manager_client_closed_cb(struct evhttp_connection *evcon, void *userdata) {
        manager_client_gone(userdata, evcon);
}

void manager_client_gone(Manager *m, struct evhttp_connection *evcon) {
        ShimClient *c = client_find(m, evcon);

        if (c)
                client_forget(m, c);
}

unsigned manager_clients_close_idle(Manager *m) {
        unsigned n = 0;

        for (size_t i = 0; i < m->n_clients; i++) {
                ShimClient *c = &m->clients[i];

                /* One that never had a request may be sending its first: it is answered (and
                 * closed after), as before the drain. */
                if (!c->evcon || c->busy || !c->served)
                        continue;
                client_close(m, c);
                n++;
        }
        return n;
}

void manager_clients_free(Manager *m) {
        for (size_t i = 0; i < m->n_accepted; i++)
                bufferevent_decref(m->accepted[i].bev);
        free(m->accepted);
        m->accepted = NULL;
        m->n_accepted = m->n_accepted_allocated = 0;
        if (m->accepted_event)
                event_free(m->accepted_event);
        if (m->clients_timer)
                event_free(m->clients_timer);
        m->accepted_event = m->clients_timer = NULL;
        free(m->clients);
        m->clients = NULL;
        m->n_clients = 0;
}

void manager_client_watch(Manager *m, struct evhttp_connection *evcon, evhttp_connection_closecb closecb,
                          void *userdata) {
        struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
        bufferevent_data_cb readcb, writecb;
        bufferevent_event_cb eventcb;
        void *arg;

        evhttp_connection_set_closecb(evcon, closecb, userdata);
        /* Same as libevent's own evhttp_write_buffer(): no read callback (data waits in the
         * buffer), but EV_READ on, so EOF reaches evhttp's event callback. */
        bufferevent_getcb(bev, &readcb, &writecb, &eventcb, &arg);
        bufferevent_setcb(bev, NULL, writecb, eventcb, arg);
        bufferevent_setwatermark(bev, EV_READ, 0, CLIENT_PIPELINE_HOLD);
        bufferevent_set_timeouts(bev, NULL, &m->idle_tv);
        bufferevent_enable(bev, EV_READ);
}

void manager_client_unwatch(Manager *m, struct evhttp_connection *evcon) {
        struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);

        /* The connection is the client table's again. */
        evhttp_connection_set_closecb(evcon, manager_client_closed_cb, m);
        bufferevent_setwatermark(bev, EV_READ, 0, 0);
        bufferevent_set_timeouts(bev, &m->idle_tv, &m->idle_tv);
}
