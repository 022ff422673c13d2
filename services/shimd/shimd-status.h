/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* GET /api/mycelia/status: the whole mesh as this node sees it (nodes, their state, models, load
 * and cooldowns; the requests it routed lately; shardd's collections), as one JSON document,
 * gathered when asked: the router cache, and gossipd's and shardd's properties read then. The
 * topology page (/mycelia/, shimd-www.c) polls it. docs/topology-page.md. */
#pragma once

#include "shimd-manager.h"

/* Answers being gathered at once; more get 503. */
#define STATUS_REQUESTS_MAX 16
/* How long an answer waits for gossipd and shardd; who has not answered by then is left out. */
#define STATUS_BUS_TIMEOUT_USEC (1 * USEC_PER_SEC)

int status_new(ShimStatus **ret);
/* Cancels the answers being gathered (their connections are closed by evhttp_free()). */
ShimStatus *status_free(Manager *m, ShimStatus *s);

/* A request from this node's API goes to node (to, to_name), or again to another after a retry. */
void status_flow_target(Manager *m, uint64_t id, const char *to, const char *to_name, const char *model,
                        const char *uri);
void status_flow_end(Manager *m, uint64_t id, unsigned status, uint64_t tokens);

/* GET or HEAD /api/mycelia/status: answered (asynchronously), returns true; anything else: false.
 * The caller checked the bearer token already. */
bool status_handle(Manager *m, struct evhttp_request *req, const char *uri);
