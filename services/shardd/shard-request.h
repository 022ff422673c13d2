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

/* Documents one Put may carry, and the bytes of its JSON or of an answer: below dbus-daemon's
 * 32 MiB message limit (a larger message costs the sender its bus connection), with room for
 * the message's header. */
#define SHARD_PUT_DOCS_MAX 4096
#define SHARD_REQUEST_SIZE_MAX ((32U << 20) - (64U << 10))

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
/* The same from a parsed object (a peer's /shard/search carries the client's query inside). */
int shard_query_request_from_object(json_object *o, unsigned dimension, ShardQueryRequest *ret, char **ret_error);
void shard_query_request_done(ShardQueryRequest *r);

/* One result of a query, owned: from this node's index and store, or from a peer's answer. */
typedef struct ShardAnswerHit {
        char *id;
        char *text;             /* NULL: none */
        json_object *metadata;  /* a reference; NULL: none */
        float score;
} ShardAnswerHit;

typedef struct ShardAnswer {
        ShardAnswerHit *hits;
        size_t n_hits, allocated;
} ShardAnswer;

void shard_answer_done(ShardAnswer *a);
/* Appends a hit (copies id and text, takes a new reference on metadata). -ENOMEM, -E2BIG past
 * SHARD_SEARCH_K_MAX * SHARD_COUNT_MAX hits. */
int shard_answer_add(ShardAnswer *a, const char *id, const char *text, size_t text_size, json_object *metadata,
                     float score);
/* Appends the hits of a peer's answer ({"results": [...]}, as formatted below) and, when
 * not_ready is not NULL, marks in it (n_shards flags) the shards the peer listed in "not_ready"
 * (its copy is not complete: their hits are not in results). -EBADMSG for an answer not of that
 * shape (a peer's bytes: checked like a client's). */
int shard_answer_parse(ShardAnswer *a, const void *json, size_t size, bool *not_ready, unsigned n_shards);
/* Keeps the best k: by score, ties in id order; an id present twice (two holders answered for one
 * shard) once. */
void shard_answer_top(ShardAnswer *a, size_t k);
/* {"results": [{"id", "text", "metadata", "score"}, ...], "partial": false} or, with shards no
 * holder answered for, "partial": true and "missing_shards": [...]. *ret is free()d by the caller. */
int shard_answer_format(const ShardAnswer *a, const unsigned *missing, size_t n_missing, char **ret);
/* The same as a peer's answer: "missing" listed as "not_ready" instead, no "partial". */
int shard_answer_format_peer(const ShardAnswer *a, const unsigned *not_ready, size_t n_not_ready, char **ret);

/* {"id", "text", "metadata", "embedding"} of a stored document (text null and metadata {} when it
 * has none). */
int shard_document_format(const ShardDoc *d, char **ret);
