/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Where documents live: the shard of a document, the holders of a shard (top-R members by
 * rendezvous hash) and the moves a membership change asks for. Pure: no I/O, no clock. */
#pragma once

#include "macro.h"

#define SHARD_COUNT_DEFAULT 64
#define SHARD_COUNT_MAX 4096
#define SHARD_REPLICAS_DEFAULT 2
#define SHARD_REPLICAS_MAX 8
#define SHARD_MEMBERS_MAX 1024

/* The shard of a document: XXH3-64 of id seeded with XXH3-64 of collection, modulo n_shards.
 * -EINVAL when n_shards is not within 1..SHARD_COUNT_MAX. */
int shard_of(const char *collection, const char *id, unsigned n_shards);

/* What rendezvous scores of a shard are seeded with: XXH3-64 of the collection's name, seeded
 * with the shard number. */
uint64_t shard_seed(const char *collection, unsigned shard);

/* The holders of a shard among members (node ids): the min(r, distinct members) with the highest
 * route_rendezvous_score(id, shard_seed()), best first; equal scores rank the smaller id (strcmp)
 * first; an id listed twice counts once. ret_holders points into members. Returns how many, or
 * -EINVAL for r outside 1..SHARD_REPLICAS_MAX, more than SHARD_MEMBERS_MAX members or an empty id. */
int shard_holders(const char *collection, unsigned shard, char *const *members, size_t n_members,
                  unsigned r, const char *ret_holders[static SHARD_REPLICAS_MAX]);

/* One shard whose set of holders changed. The ids point into the member lists given to
 * shard_plan(), in rank order. */
typedef struct ShardMove {
        unsigned shard;
        /* Old holders that are still members: senders[0] streams the shard, the others are its
         * fallbacks in order. None: no member that held it is left (R nodes gone at once); the
         * daemon must look for a copy elsewhere or report the shard lost. */
        const char *senders[SHARD_REPLICAS_MAX];
        size_t n_senders;
        /* New holders that were not old holders: they need a copy. */
        const char *receivers[SHARD_REPLICAS_MAX];
        size_t n_receivers;
        /* Old holders that are no longer holders: they may drop their copy once every receiver
         * acknowledged it. Includes old holders that left the members (a node leaving gracefully
         * finds itself here; a crashed one does nothing). */
        const char *droppers[SHARD_REPLICAS_MAX];
        size_t n_droppers;
} ShardMove;

/* The moves of one collection when membership goes from old_members to new_members: one per shard
 * whose set of holders differs, by shard number; shards whose holders are the same (in whatever
 * order) do not appear. *ret_moves is freed with free(); NULL when there are none. -EINVAL as
 * shard_holders() and for n_shards outside 1..SHARD_COUNT_MAX, -ENOMEM. */
int shard_plan(const char *collection, unsigned n_shards, unsigned r,
               char *const *old_members, size_t n_old, char *const *new_members, size_t n_new,
               ShardMove **ret_moves, size_t *ret_n_moves);
