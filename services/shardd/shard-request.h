/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What ShardStore1's Put and Search carry, from JSON to what the store and the index take, and
 * the answers back to JSON; with no I/O. The shim passes its clients' bodies through, so every
 * error message here is one a client reads (docs/shardd.md, "The bus API"). */
#pragma once

#include <json-c/json.h>

#include "macro.h"
#include "shard-filter.h"
#include "shard-search.h"
#include "shard-store.h"

/* Documents one Put may carry, and the bytes of its JSON. */
#define SHARD_PUT_DOCS_MAX 4096
#define SHARD_REQUEST_SIZE_MAX (64U << 20)

typedef struct ShardPutDoc {
        char *id;               /* given, or NULL: the caller makes one */
        float *embedding;       /* dimension floats */
        char *text;             /* NULL: none */
        char *metadata;         /* a JSON object, compact; NULL: none */
} ShardPutDoc;

typedef struct ShardPutRequest {
        ShardPutDoc *docs;
        size_t n_docs;
} ShardPutRequest;

/* Parses {"documents": [{"id"?, "text"?, "embedding": [dimension finite numbers], "metadata"?:
 * {...}}, ...]}: 1..SHARD_PUT_DOCS_MAX documents, ids unique within the request. -EINVAL or
 * -E2BIG with *ret_error (free() it) saying which document and what is wrong; -ENOMEM. */
int shard_put_request_parse(const char *json, unsigned dimension, ShardPutRequest *ret, char **ret_error);
void shard_put_request_done(ShardPutRequest *r);

#define SHARD_QUERY_K_DEFAULT 10

typedef struct ShardQueryRequest {
        float *embedding;       /* dimension floats */
        unsigned k;             /* 1..SHARD_SEARCH_K_MAX, default SHARD_QUERY_K_DEFAULT */
        ShardFilter *filter;    /* "where", or NULL */
} ShardQueryRequest;

/* Parses {"embedding": [...], "k"?: N, "where"?: {...}}. Errors as above. */
int shard_query_request_parse(const char *json, unsigned dimension, ShardQueryRequest *ret, char **ret_error);
void shard_query_request_done(ShardQueryRequest *r);

/* One result of a query: a hit and the text the store keeps for it (NULL: none). */
typedef struct ShardResult {
        const ShardHit *hit;
        const char *text;
} ShardResult;

/* {"results": [{"id", "text", "metadata", "score"}, ...], "partial": false} or, with missing
 * shards, "partial": true and "missing_shards": [...]. *ret is free()d by the caller. */
int shard_query_answer_format(const ShardResult *results, size_t n, const unsigned *missing, size_t n_missing,
                              char **ret);

/* {"id", "text", "metadata", "embedding"} of a stored document (text null and metadata {} when it
 * has none). */
int shard_document_format(const ShardDoc *d, char **ret);
