/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The mesh's model list: this node's Ollama's /api/tags or /v1/models answer with the models
 * only other live nodes serve added, each model once. Pure (docs/mesh-as-one.md). */
#pragma once

#include "shim-request.h"

/* The largest local model list read to merge; a bigger one is passed on unmerged. */
#define SHIM_TAGS_BODY_MAX (8U << 20)

/* local: the JSON body Ollama answered (api SHIM_API_OLLAMA: {"models":[...]}, SHIM_API_OPENAI:
 * {"object":"list","data":[...]}). remote: model names from gossip, in any order, repeats
 * allowed. *ret is the merged JSON (malloc()ed): local entries unchanged and first, then one
 * entry per remote model not among them ("llama3.2" and "llama3.2:latest" are one), sorted by
 * name, with what gossip does not carry left empty (size 0, digest ""). -EBADMSG: local is not
 * such a list (the caller then passes it on as it is). */
int shim_tags_merge(ShimApi api, const char *local, size_t local_size, char *const *remote, size_t n_remote,
                    char **ret, size_t *ret_size);
