/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* An /api/create served by this node's Ollama may name blobs ("files", "adapters") that were
 * pushed through another node: each one this Ollama lacks is brought in from the mesh's blob
 * store before the create goes on (docs/blobs.md, "The shim: /api/create"). */
#pragma once

#include "shim-blobs.h"
#include "shimd-manager.h"

typedef struct CreateBlobs CreateBlobs;

/* How it ended. 0: the create goes on to this node's Ollama, also when a blob could not be had
 * from the mesh (the Ollama then refuses the create in its own words). -EIO: a blob the mesh has
 * could not be put into this node's Ollama; message says why (the client gets 502). Called from
 * the loop, never from create_blobs_new(); it may free c. */
typedef void (*CreateBlobsDoneFn)(CreateBlobs *c, int r, const char *message, void *userdata);

/* Starts on blobs (at least one) for the request with id (for the log): one blob at a time,
 * HEAD /api/blobs/:digest on this node's Ollama, and on 404 ShardStore1.GetBlob and a POST of
 * its bytes to that Ollama. Freeing c cancels what is in flight. */
int create_blobs_new(Manager *m, uint64_t id, const ShimCreateBlobs *blobs, CreateBlobsDoneFn done, void *userdata,
                     CreateBlobs **ret);
CreateBlobs *create_blobs_free(CreateBlobs *c);
