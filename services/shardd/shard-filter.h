/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Metadata filters with no I/O: a Chroma/Mongo-style "where" object compiled once into a
 * ShardFilter, then matched against each candidate row's metadata (docs/shard-search.md). */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>

#include "macro.h"

/* Nesting of filter objects ($and/$or inside each other, and operator objects) beyond this is
 * refused: evaluation recurses, and a client must not choose how deep. */
#define SHARD_FILTER_DEPTH_MAX 32
/* Conditions in one filter: each field operator, each $and/$or, each value of an $in/$nin. */
#define SHARD_FILTER_NODES_MAX 256

typedef struct ShardFilter ShardFilter;

/* Compiles where (a JSON object): {"field": value} is $eq; {"field": {"$op": value, ...}} with
 * $eq $ne $gt $gte $lt $lte (value a string, number or bool) and $in $nin (a non-empty array of
 * them); several keys in one object all must hold; {"$and": [...]} and {"$or": [...]} take a
 * non-empty array of filters. {} matches everything. -EINVAL when where is not such a filter
 * (unknown operator, wrong operand, deeper than SHARD_FILTER_DEPTH_MAX, more than
 * SHARD_FILTER_NODES_MAX conditions): then *ret_error, when ret_error is not NULL, is set to a
 * message for the client (free() it), e.g. "where: unknown operator \"$regex\" on \"age\"".
 * -ENOMEM. The filter copies what it needs: where may be released afterwards. */
int shard_filter_compile(json_object *where, ShardFilter **ret, char **ret_error);
ShardFilter *shard_filter_free(ShardFilter *f);
DEFINE_TRIVIAL_CLEANUP_FUNC(ShardFilter *, shard_filter_free);

/* Whether metadata (an object, or NULL for a row without metadata) passes f. Numbers compare
 * numerically (integers and doubles mixed), strings by strcmp, bools by equality only; an
 * ordering ($gt ...) between values of different kinds, or on bools, is false, and so is $eq.
 * A field the metadata lacks fails every operator except $ne and $nin, which it passes. */
bool shard_filter_match(const ShardFilter *f, json_object *metadata);
