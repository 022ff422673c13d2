/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shardd's transfer listener: what peers' shardd ask this node (docs/shardd.md, "The transfer
 * protocol"), each request signed with the mesh key. */
#pragma once

#include <event2/bufferevent.h>
#include <event2/http.h>

/* The largest request body a peer may send (one batch of changes, one search). */
#define SHARD_PEER_BODY_MAX (64U << 20)

/* evhttp's callback for every request on the transfer listener; userdata: the Manager. */
void manager_peer_request(struct evhttp_request *req, void *userdata);
/* evhttp_set_bevcb(): a TLS bufferevent for each accepted peer connection (userdata the Manager,
 * whose tls is set). */
struct bufferevent *manager_peer_bev_new(struct event_base *base, void *userdata);

