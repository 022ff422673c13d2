/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A collection's config: what a ShardCollection holds, when it is valid, and the JSON the store
 * keeps it as (docs/shard-store.md, "On disk"). Pure: no LMDB, no I/O. */
#pragma once

#include "shard-placement.h"
#include "shard-search.h"

/* Hard limits of a config; beyond them it is refused with -EINVAL. */
#define SHARD_DIMENSION_MAX 8192
#define SHARD_COLLECTION_NAME_MAX 128           /* [A-Za-z0-9._-], not starting with '.' */
#define SHARD_MODEL_NAME_MAX 256

/* A collection's metric is shard-search.h's ShardMetric, under these names in its config:
 * "cosine", "ip". NULL, -EINVAL for others. */
const char *shard_collection_metric_to_string(ShardMetric m);
int shard_collection_metric_from_string(const char *s, ShardMetric *ret);

typedef struct ShardCollection {
        char *name;
        uint32_t id;            /* the store's own number for it, its key prefix; set by create,
                                 * never reused, not the same on other nodes */
        unsigned dimension;     /* 1..SHARD_DIMENSION_MAX */
        ShardMetric metric;
        char *model;            /* the embedding model; NULL: none */
        unsigned n_shards;      /* 1..SHARD_COUNT_MAX */
        unsigned replicas;      /* 1..SHARD_REPLICAS_MAX */
        uint64_t created_ms;    /* CLOCK_REALTIME, as the creating node saw it */
} ShardCollection;

ShardCollection *shard_collection_free(ShardCollection *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(ShardCollection *, shard_collection_free);
bool shard_collection_name_valid(const char *name);
/* Name, dimension, metric, model, shard and replica counts all within their limits (the id is
 * not looked at). */
bool shard_collection_valid(const ShardCollection *c);

/* c without its name (the store's key) as compact JSON: id, dimension, metric, model (when set),
 * n_shards, replicas, created. A malloc()ed, NUL-terminated *ret of *ret_size bytes. -ENOMEM. */
int shard_collection_to_json(const ShardCollection *c, char **ret, size_t *ret_size);
/* The config named name (name_size bytes, not NUL-terminated) from the JSON of
 * shard_collection_to_json(), json_size bytes. -EBADMSG unless it is that JSON (a single object,
 * every field of its type) and the result is valid with a non-zero id; -ENOMEM. */
int shard_collection_from_json(const char *name, size_t name_size, const char *json, size_t json_size,
                               ShardCollection **ret);
