/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The in-memory index of one shard of one collection, with no I/O: float32 rows, ids and
 * metadata, exact top-k search scored with CBLAS, and the scatter-gather merge (docs/shard-search.md). */
#pragma once

#include <json-c/json.h>
#include <stddef.h>

#include "macro.h"
#include "shard-filter.h"

/* Results one query may ask for. */
#define SHARD_SEARCH_K_MAX 1000
/* Queries one search may carry. */
#define SHARD_SEARCH_QUERIES_MAX 4096
/* Floats per vector. */
#define SHARD_INDEX_DIM_MAX 8192
/* Bytes of an id, without its NUL. */
#define SHARD_INDEX_ID_MAX 4096
/* Rows one index may hold at most, whatever its caller allows (rows are numbered in 32 bits). */
#define SHARD_INDEX_ROWS_MAX ((size_t) INT32_MAX)

typedef enum ShardMetric {
        SHARD_METRIC_INNER_PRODUCT,
        SHARD_METRIC_COSINE,    /* rows and queries normalized, then the inner product */
} ShardMetric;

typedef struct ShardIndex ShardIndex;

/* An empty index of vectors of dim floats (1..SHARD_INDEX_DIM_MAX), holding at most max_rows
 * rows (1..SHARD_INDEX_ROWS_MAX). -EINVAL, -ENOMEM. */
int shard_index_new(size_t dim, ShardMetric metric, size_t max_rows, ShardIndex **ret);
ShardIndex *shard_index_free(ShardIndex *x);
DEFINE_TRIVIAL_CLEANUP_FUNC(ShardIndex *, shard_index_free);

size_t shard_index_count(const ShardIndex *x);
size_t shard_index_dim(const ShardIndex *x);
ShardMetric shard_index_metric(const ShardIndex *x);

/* Adds a row, or replaces the vector and metadata of the row with that id. vec: dim floats,
 * copied (normalized first for cosine). metadata: an object or NULL; the index takes a reference
 * of its own. 0 when added, 1 when replaced. -EINVAL: id empty or longer than
 * SHARD_INDEX_ID_MAX, a NaN or infinite component, a zero vector under cosine; -ENOSPC: the
 * index holds max_rows rows already; -ENOMEM. */
int shard_index_add(ShardIndex *x, const char *id, const float *vec, json_object *metadata);
/* Removes the row with that id (the last row moves into its place). -ENOENT. */
int shard_index_remove(ShardIndex *x, const char *id);
/* The stored vector (normalized under cosine) and metadata of id, both borrowed until the next
 * change of x; either ret may be NULL. -ENOENT. */
int shard_index_get(const ShardIndex *x, const char *id, const float **ret_vec, json_object **ret_metadata);

typedef struct ShardHit {
        const char *id;         /* borrowed: from the index, until its next change */
        json_object *metadata;  /* borrowed likewise; NULL when the row has none */
        float score;            /* inner product (cosine similarity under cosine): higher is better */
} ShardHit;

/* Exact top k (1..SHARD_SEARCH_K_MAX) of nq queries (nq * dim floats, row-major): the hits of
 * query q in hits[q * k ...], n_hits[q] of them (fewer than k when fewer rows pass), best
 * first, equal scores in strcmp order of their ids. With filter, only rows whose metadata
 * passes it. -EINVAL: k or nq (1..SHARD_SEARCH_QUERIES_MAX) out of range, a NaN or infinite query component, a zero query
 * under cosine. -ENOMEM. hits and n_hits are written only on success. */
int shard_index_search(const ShardIndex *x, const float *queries, size_t nq, size_t k, const ShardFilter *filter,
                       ShardHit *hits, size_t *n_hits);

typedef struct ShardHitList {
        const ShardHit *hits;
        size_t n;
} ShardHitList;

/* The scatter-gather merge: the top k (1..SHARD_SEARCH_K_MAX) of the union of n_lists lists of
 * hits (in any order), into ret (room for k), best first with ties in id order as above;
 * *ret_n of them. An id in several lists counts once, with its best score; hits with a NaN
 * score are dropped. Pointers are copied: the lists' ids and metadata must outlive ret.
 * -EINVAL, -ENOMEM. */
int shard_hits_merge(const ShardHitList *lists, size_t n_lists, size_t k, ShardHit *ret, size_t *ret_n);
