/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The client connections the shim has answered, busy or idle between keep-alive requests: what
 * the drain (shimd-drain.c) waits for and closes. docs/shim-drain.md. */
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <string.h>

#include "shimd-clients.h"

/* libevent 2.1 lists a server's connections only internally; we learn of a connection at its
 * first request, and of its end from its close callback, which is ours whenever no request of
 * the proxy holds it (the proxy's own close callback forwards to manager_client_gone()). The
 * table is indexed by fd, so finding a connection costs nothing per request. */

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

static void client_forget(Manager *m, ShimClient *c) {
        if (c->busy)
                m->clients_busy--;
        *c = (ShimClient) {};
        manager_drain_check(m);
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
                m->clients_busy--;
        }
        if (m->draining)
                manager_client_close_after(req);
        manager_drain_check(m);
}

void manager_client_begin(Manager *m, struct evhttp_request *req) {
        struct evhttp_connection *evcon = evhttp_request_get_connection(req);
        ShimClient *c;
        int fd;

        if (!evcon)
                return;
        evhttp_request_set_on_complete_cb(req, client_complete_cb, m);
        /* The proxy replaces it while it answers; the replies written at once keep it. */
        evhttp_connection_set_closecb(evcon, manager_client_closed_cb, m);
        /* A request that reaches us while we drain (on a connection accepted before) is
         * answered, and its connection closed after the reply. */
        if (m->draining)
                manager_client_close_after(req);

        fd = client_fd(evcon);
        /* Out of memory: the connection is not tracked, which only means a drain would not
         * close it early nor wait for its last bytes. */
        if (fd < 0 || ((size_t) fd >= m->n_clients && client_table_grow(m, fd) < 0))
                return;
        c = &m->clients[fd];
        if (c->busy)
                m->clients_busy--;
        *c = (ShimClient) { .evcon = evcon, .busy = true };
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
                struct evhttp_connection *evcon = c->evcon;

                if (!evcon || c->busy)
                        continue;
                client_forget(m, c);
                evhttp_connection_set_closecb(evcon, NULL, NULL);
                evhttp_connection_free(evcon);
                n++;
        }
        return n;
}

void manager_clients_free(Manager *m) {
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
