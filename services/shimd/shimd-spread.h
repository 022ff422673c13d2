/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Requests this node answers by asking several nodes at once (docs/mesh-as-one.md): GET /api/ps
 * merges every live node's, and an embedding request with more than [router] embed_split inputs
 * is split over the nodes serving its model in proportion to their free slots. */
#pragma once

#include <event2/http.h>

#include "shim-request.h"
#include "shimd-manager.h"

/* How long /api/ps waits for a node; a slower one is left out (and logged). */
#define SPREAD_PS_TIMEOUT_USEC (2 * USEC_PER_SEC)

/* Takes req when it is such a request (path: its target, query allowed; model: from the body,
 * or NULL) and answers it, now or when the nodes have; returns true then. Returns false for
 * everything else, which the relay serves. */
bool spread_handle(Manager *m, struct evhttp_request *req, const ShimRequestClass *cls, const char *path,
                   const char *model);

/* Shutdown: every spread request still waiting ends with message (503). */
void spread_cancel_all(Manager *m, const char *message);
/* The end: every spread request is freed, its sub-requests closed, its client let go. */
void spread_abort_all(Manager *m);
