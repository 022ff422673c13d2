/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What mycelia-gossipd keeps across restarts in STATE_DIR/gossip/members: the last incarnation
 * it used, this node's metadata (so that a restarted gossipd announces the node as it was, not
 * bare until routerd and shimd publish again) and the gossip addresses of the members alive when
 * it last wrote, to rejoin fast. */
#pragma once

#include "swim.h"

#define GOSSIP_STATE_MEMBERS_MAX 256U
/* The file is never larger than this (a line per member, each well under 128 bytes). */
#define GOSSIP_STATE_FILE_MAX (64U << 10)

typedef struct GossipStateMember {
        char id[NODE_ID_LEN + 1];
        SwimAddr addr;
} GossipStateMember;

/* Room for every key and value swim allows, each with its NUL. */
#define GOSSIP_STATE_META_SIZE (SWIM_META_SIZE_MAX + 2 * SWIM_META_KEYS_MAX)

typedef struct GossipState {
        uint32_t incarnation;
        /* n_meta pairs "key\0value\0", one after the other, in meta[] */
        char meta[GOSSIP_STATE_META_SIZE];
        size_t meta_size;
        size_t n_meta;
        GossipStateMember members[GOSSIP_STATE_MEMBERS_MAX];
        size_t n_members;
} GossipState;

/* Adds one metadata pair: -EINVAL for a key swim would refuse or a value with a newline,
 * -E2BIG past SWIM_META_KEYS_MAX pairs or GOSSIP_STATE_META_SIZE bytes. */
int gossip_state_add_meta(GossipState *s, const char *key, const char *value);
/* The i-th pair, for i < n_meta. */
void gossip_state_meta(const GossipState *s, size_t i, const char **ret_key, const char **ret_value);

/* STATE_DIR/gossip/members, malloc()ed. */
int gossip_state_path(const char *state_dir, char **ret);

/* Reads the file. -ENOENT when there is none; lines it does not understand are skipped, so a
 * damaged file costs at most the members it lists. */
int gossip_state_load(const char *path, GossipState *ret);

/* The file's text for s, malloc()ed (the caller compares it with what it wrote last). */
int gossip_state_format(const GossipState *s, char **ret);
/* Writes text atomically (temporary file, fsync, rename), creating the gossip/ folder. */
int gossip_state_write(const char *path, const char *text);
