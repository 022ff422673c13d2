/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The digest of a shard: the sum of XXH3-128 of every entry's (id, version, deleted), so it does
 * not depend on the order writes arrived in and an entry's replacement updates it in O(1). Pure. */
#pragma once

#include "shard-version.h"

typedef struct ShardDigest {
        uint64_t hi, lo;        /* one 128-bit number, summed modulo 2^128 */
} ShardDigest;

/* 32 hex digits and a NUL. */
#define SHARD_DIGEST_STRING_MAX 33

/* The contribution of one entry; id is id_size bytes. */
ShardDigest shard_digest_entry(const char *id, size_t id_size, const ShardVersion *v, bool deleted);
void shard_digest_add(ShardDigest *d, const ShardDigest *entry);
void shard_digest_remove(ShardDigest *d, const ShardDigest *entry);
static inline bool shard_digest_equal(const ShardDigest *a, const ShardDigest *b) {
        return a->hi == b->hi && a->lo == b->lo;
}
/* Hex, high half first; returns buf. */
char *shard_digest_to_string(const ShardDigest *d, char buf[static SHARD_DIGEST_STRING_MAX]);
