/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Ollama's /api/blobs/:digest on the API listener, answered by the mesh's blob store
 * (org.mycelia.ShardStore1 PutBlob and HasBlob, docs/blobs.md) rather than this node's Ollama
 * alone: a blob pushed through one node is there for every node. */
#pragma once

#include <event2/http.h>

#include "shimd-manager.h"

/* Takes req when its path is /api/blobs/... and answers it, now or once shardd answered; returns
 * false for every other path. */
bool blobs_handle(Manager *m, struct evhttp_request *req);
