/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Turns the body of an Ollama GET /api/tags response into the list of model names a node
 * serves. Pure: no I/O; everything a remote Ollama sends is bounded here. */
#pragma once

#include "macro.h"

/* Largest /api/tags body we read; a real Ollama spends ~400 bytes per model. */
#define TAGS_MAX_RESPONSE_SIZE (8U * 1024U * 1024U)
/* Longest model name kept ("host/namespace/model:tag"; Ollama's own parts are shorter). */
#define TAGS_MAX_NAME_LEN 512U
/* How deep the JSON may nest (the real answer nests 4 levels). */
#define TAGS_MAX_DEPTH 32U
/* Entries of "models" looked at before the rest is ignored (bounds the duplicate check). */
#define TAGS_MAX_ENTRIES (4U * ROUTE_MAX_MODELS)

typedef struct TagsList {
        char **models;          /* n_models names, no duplicates (model_name_equal) */
        size_t n_models;
        size_t n_skipped;       /* entries without a usable name, or duplicates */
        bool truncated;         /* more than ROUTE_MAX_MODELS names: the rest were dropped */
} TagsList;

void tags_list_done(TagsList *l);

/* Parses {"models":[{"name":"llama3.2:latest", ...}, ...]}. An entry's name is "name", or
 * "model" when "name" is missing; names must be 1..TAGS_MAX_NAME_LEN printable ASCII bytes
 * without spaces, else the entry is skipped. The whole body must be one valid JSON value.
 * It is scanned, not built into a tree, so memory stays at the names kept whatever the
 * body holds. Returns -EFBIG when size exceeds TAGS_MAX_RESPONSE_SIZE, -EBADMSG when the
 * body is not such a JSON document, -ENOMEM. ret is untouched on failure. */
int tags_parse(const char *body, size_t size, TagsList *ret);
