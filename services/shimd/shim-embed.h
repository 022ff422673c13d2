/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Embeddings fanned out over the mesh, with no I/O: how many inputs a request has, contiguous
 * chunks in proportion to each node's free capacity, the body of each chunk, and the answers
 * merged back in order into one answer shaped as Ollama's (docs/mesh-as-one.md). */
#pragma once

#include <json-c/json.h>

#include "shim-request.h"

/* Inputs above which a request is split, by default ([router] embed_split). */
#define SHIM_EMBED_SPLIT_DEFAULT 64

typedef struct ShimEmbedChunk {
        size_t first;           /* index of its first input in the request */
        size_t n;               /* inputs it carries; 0: the node gets nothing */
} ShimEmbedChunk;

/* The number of inputs of an /api/embed or /v1/embeddings body: the length of its "input"
 * array; -ENOENT when input is a single string or missing (nothing to split). */
int shim_embed_count(json_object *body, size_t *ret_n);

/* Splits n inputs over n_nodes nodes in proportion to weights (free slots; a weight of 0 counts
 * as 1), contiguous and in node order: chunks[i] for node i. Largest remainders get the rest. */
void shim_embed_plan(size_t n, const unsigned *weights, size_t n_nodes, ShimEmbedChunk *chunks);

/* body with "input" cut to the chunk, serialized (*ret malloc()ed). */
int shim_embed_chunk_body(json_object *body, const ShimEmbedChunk *chunk, char **ret, size_t *ret_size);

/* answers[i] answered chunks[i] (parsed JSON; chunks with n 0 have NULL answers). One answer of
 * api's shape: /api/embed's embeddings in request order, total_duration, load_duration and
 * prompt_eval_count summed; /v1/embeddings' data in order with index renumbered, usage summed.
 * -EBADMSG when an answer is not of that shape or has the wrong number of embeddings. */
int shim_embed_merge(ShimApi api, json_object *const *answers, const ShimEmbedChunk *chunks, size_t n,
                     char **ret, size_t *ret_size);
