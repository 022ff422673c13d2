/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The collections API on the API listener (/api/mycelia/, docs/collections-api.md): each request
 * is answered by asynchronous org.mycelia.ShardStore1 calls on the Manager's bus, texts embedded
 * first through this shim's own /api/embed. */
#pragma once

#include <event2/http.h>

#include "shimd-manager.h"

/* Takes req when its path is under /api/mycelia/ and answers it, now or once shardd (and the
 * embedding) answered; returns false for every other path. */
bool collections_handle(Manager *m, struct evhttp_request *req);

/* The end: every collections request is freed, its calls cancelled, its client let go. */
void collections_abort_all(Manager *m);
