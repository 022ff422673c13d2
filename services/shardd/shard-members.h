/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The nodes that run shardd, as gossip tells this node: id, the URL of their transfer listener,
 * alive or suspect. Placement runs over their ids. Pure: the gossip edge (shardd-gossip.c) feeds
 * it. */
#pragma once

#include "macro.h"
#include "node-id.h"

/* As many as placement takes (SHARD_MEMBERS_MAX). */
#define SHARD_PEERS_MAX 1024

typedef struct ShardPeer {
        char id[NODE_ID_LEN + 1];
        char *url;              /* "http://HOST:PORT" */
        bool alive;             /* false: suspect (keeps its shards; reads and writes try it last) */
} ShardPeer;

typedef struct ShardMembers {
        ShardPeer *peers;       /* sorted by id */
        size_t n_peers;
        char **ids;             /* the ids, NULL-terminated, in the same order: for placement */
        uint64_t generation;    /* bumped on every change */
} ShardMembers;

void shard_members_done(ShardMembers *m);

/* Adds or updates a member. Returns 1 when something changed, 0 when not, -E2BIG beyond
 * SHARD_PEERS_MAX, -EINVAL for an id that is not 32 hex digits, -ENOMEM. */
int shard_members_set(ShardMembers *m, const char *id, const char *url, bool alive);
/* Removes a member. 1 when it was there, 0 when not. */
int shard_members_remove(ShardMembers *m, const char *id);
const ShardPeer *shard_members_find(const ShardMembers *m, const char *id);
