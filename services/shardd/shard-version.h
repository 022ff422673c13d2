/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The version a write carries: a hybrid logical clock reading of the coordinating node plus that
 * node's tie-break, and the clock that makes them. Pure: time is an argument (docs/shard-store.md). */
#pragma once

#include "macro.h"

/* An HLC reading: milliseconds since the epoch in the high 48 bits, a counter in the low 16. */
#define SHARD_HLC_COUNTER_BITS 16
#define SHARD_HLC_MS_MAX ((UINT64_C(1) << (64 - SHARD_HLC_COUNTER_BITS)) - 1)
/* A version further ahead of our wall clock than this is not merged into our clock: one node with
 * a clock set years ahead must not drag every later write of the mesh with it. */
#define SHARD_CLOCK_AHEAD_MAX_MS (5 * 60 * 1000)

/* Ordered by hlc, then by node: two coordinators that read the same HLC still order their writes
 * the same way on every replica (last writer wins). Equal versions are the same write. */
typedef struct ShardVersion {
        uint64_t hlc;
        uint64_t node;          /* shard_version_node() of the coordinating node's id */
} ShardVersion;

static inline uint64_t shard_hlc_ms(uint64_t hlc) {
        return hlc >> SHARD_HLC_COUNTER_BITS;
}

/* <0, 0, >0 as a is older than, the same as, newer than b. */
int shard_version_cmp(const ShardVersion *a, const ShardVersion *b);
static inline bool shard_version_newer(const ShardVersion *a, const ShardVersion *b) {
        return shard_version_cmp(a, b) > 0;
}
/* The tie-break of a node: XXH3 of its id. */
uint64_t shard_version_node(const char *node_id);

typedef struct ShardClock {
        uint64_t last;          /* the highest HLC reading made or merged */
        uint64_t node;
} ShardClock;

void shard_clock_init(ShardClock *c, const char *node_id);
/* A version newer than every one this clock made or merged, also when now_ms (CLOCK_REALTIME)
 * went backwards: the counter then advances instead. */
ShardVersion shard_clock_tick(ShardClock *c, uint64_t now_ms);
/* Merges a version seen from another node (or read back from the store at start), so the next
 * tick is newer. -ERANGE, and nothing merged, when it is more than SHARD_CLOCK_AHEAD_MAX_MS ahead
 * of now_ms. */
int shard_clock_observe(ShardClock *c, const ShardVersion *v, uint64_t now_ms);
