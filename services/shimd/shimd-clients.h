/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The table of client connections (indexed by fd), what the proxy tells it about requests, and
 * what the drain asks of it. */
#pragma once

#include <event2/http.h>

#include "shimd-manager.h"

/* The accept hook (evhttp_set_bevcb(), userdata the ShimListener): counts the connection
 * against the listener's max_connections, pausing accepts at the cap. */
struct bufferevent *manager_client_bev_new(struct event_base *base, void *userdata);
/* The events of the table: the pick-up after accepts, the request deadline timer. */
int manager_clients_init(Manager *m);

/* A request arrived on req's connection: it is busy until the reply is written out. */
void manager_client_begin(Manager *m, struct evhttp_request *req);
/* The connection's close callback while it is ours (between requests, and after a reply was
 * handed to libevent): keeps the table right when libevent frees the connection. */
void manager_client_closed_cb(struct evhttp_connection *evcon, void *userdata);
/* evcon is being freed by a path that did not go through manager_client_closed_cb(). */
void manager_client_gone(Manager *m, struct evhttp_connection *evcon);
/* libevent closes req's connection after its reply, as if the client had asked. */
void manager_client_close_after(struct evhttp_request *req);
/* Bytes a client may send while its request is being answered (pipelining) before we stop
 * reading from it; reading continues once the answer is complete. */
#define CLIENT_PIPELINE_HOLD (64 * 1024)

typedef void (*evhttp_connection_closecb)(struct evhttp_connection *evcon, void *userdata);

/* While a request is answered: learn at once when the client goes away (libevent stops reading
 * after the request; a client that gave up during a model load would otherwise keep Ollama busy
 * until the first token): closecb runs then. Pipelined bytes are held back, and a client that
 * stops reading times out, but not one that merely waits. */
void manager_client_watch(Manager *m, struct evhttp_connection *evcon, evhttp_connection_closecb closecb,
                          void *userdata);
/* The answer is complete: the connection is the client table's again. */
void manager_client_unwatch(Manager *m, struct evhttp_connection *evcon);

/* Closes the connections that wait idle between keep-alive requests; returns how many. */
unsigned manager_clients_close_idle(Manager *m);
void manager_clients_free(Manager *m);
