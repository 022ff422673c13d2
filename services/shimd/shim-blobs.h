/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Blob digests as Ollama writes them, and which blobs an /api/create body names (docs/blobs.md,
 * "The shim: /api/create"). Pure. */
#pragma once

#include <json-c/json.h>

#include "macro.h"

/* A create body larger than this is relayed without looking for the blobs it names. */
#define SHIM_CREATE_BODY_MAX (8U << 20)
/* The most distinct blobs one create may name through the mesh (each may cost a transfer of up
 * to [shard] blob_max_size into this node's Ollama). */
#define SHIM_CREATE_BLOBS_MAX 64
/* "sha256:" and 64 hex digits. */
#define SHIM_DIGEST_LEN (7 + 64)

/* Ollama's digest forms: "sha256:" or "sha256-", then 64 hex digits of either case. */
bool shim_digest_valid(const char *s);

typedef struct ShimCreateBlobs {
        char digest[SHIM_CREATE_BLOBS_MAX][SHIM_DIGEST_LEN + 1];
        size_t n;
} ShimCreateBlobs;

/* The distinct digests that the "files" and "adapters" maps of a create body name, each as
 * "sha256:<64 lowercase hex>" (the name Ollama stores a blob under), files first, in the order
 * named. Keys match ignoring case, and every key that matches is read, as Go's encoding/json
 * (Ollama's decoder) merges them into one map. A map that is not an object, and a value that is
 * not a digest, are passed over: Ollama refuses the create itself, in its own words. 0, also with
 * none (a body that is not an object names none); -E2BIG above SHIM_CREATE_BLOBS_MAX. */
int shim_create_blobs(json_object *body, ShimCreateBlobs *ret);
