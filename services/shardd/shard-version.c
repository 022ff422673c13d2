/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Versions and the hybrid logical clock (shard-version.h). Pure: the daemon passes the wall
 * clock in; test-shard-store runs it backwards. */
#include <xxhash.h>

#include "shard-version.h"

int shard_version_cmp(const ShardVersion *a, const ShardVersion *b) {
        if (a->hlc != b->hlc)
                return a->hlc < b->hlc ? -1 : 1;
        if (a->node != b->node)
                return a->node < b->node ? -1 : 1;
        return 0;
}

uint64_t shard_version_node(const char *node_id) {
        return XXH3_64bits(node_id, strlen(node_id));
}

void shard_clock_init(ShardClock *c, const char *node_id) {
        *c = (ShardClock) { .node = shard_version_node(node_id) };
}

ShardVersion shard_clock_tick(ShardClock *c, uint64_t now_ms) {
        uint64_t physical = MIN(now_ms, SHARD_HLC_MS_MAX) << SHARD_HLC_COUNTER_BITS;

        /* A full counter carries into the milliseconds: the clock runs a little ahead of the wall
         * clock until the wall clock catches up, and stays monotonic. */
        c->last = physical > c->last ? physical : c->last + 1;
        return (ShardVersion) { .hlc = c->last, .node = c->node };
}

int shard_clock_observe(ShardClock *c, const ShardVersion *v, uint64_t now_ms) {
        if (shard_hlc_ms(v->hlc) > now_ms + SHARD_CLOCK_AHEAD_MAX_MS)
                return -ERANGE;
        c->last = MAX(c->last, v->hlc);
        return 0;
}
