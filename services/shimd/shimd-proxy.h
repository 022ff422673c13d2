/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The streaming relay: one ProxyRequest per client request, forwarded to the chosen node over
 * a pooled keep-alive connection, its response streamed back chunk by chunk as it arrives. */
#pragma once

#include <event2/http.h>

#include "shimd-manager.h"

/* evhttp's generic callback; userdata is the ShimListener the request arrived on. */
void proxy_handle_request(struct evhttp_request *req, void *userdata);

/* The routing table dropped node_id (removed) or marked it down: its idle pooled connections
 * (to hostport) are closed; its requests that have not started answering are retried on the
 * next candidate; when removed, streams in progress end with an error object too. */
void proxy_node_lost(Manager *m, const char *node_id, const char *hostport, bool removed);

/* Cancels every request in flight (shutdown): upstreams are closed, clients are let go. */
void proxy_abort_all(Manager *m);

/* The drain timeout passed: every request in flight ends now with message, a started stream
 * with one error object (NDJSON line, SSE frame; other bodies by closing the connection), one
 * that had not started with 503 and the error as JSON. Upstream requests are cancelled. */
void proxy_cancel_all(Manager *m, const char *message);
