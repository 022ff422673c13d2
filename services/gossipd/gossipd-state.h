/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What mycelia-gossipd keeps across restarts in STATE_DIR/gossip/members: the last incarnation
 * it used and the gossip addresses of the members alive when it last wrote, to rejoin fast. */
#pragma once

#include "swim.h"

#define GOSSIP_STATE_MEMBERS_MAX 256U
/* The file is never larger than this (a line per member, each well under 128 bytes). */
#define GOSSIP_STATE_FILE_MAX (64U << 10)

typedef struct GossipStateMember {
        char id[NODE_ID_LEN + 1];
        SwimAddr addr;
} GossipStateMember;

typedef struct GossipState {
        uint32_t incarnation;
        GossipStateMember members[GOSSIP_STATE_MEMBERS_MAX];
        size_t n_members;
} GossipState;

/* STATE_DIR/gossip/members, malloc()ed. */
int gossip_state_path(const char *state_dir, char **ret);

/* Reads the file. -ENOENT when there is none; lines it does not understand are skipped, so a
 * damaged file costs at most the members it lists. */
int gossip_state_load(const char *path, GossipState *ret);

/* The file's text for s, malloc()ed (the caller compares it with what it wrote last). */
int gossip_state_format(const GossipState *s, char **ret);
/* Writes text atomically (temporary file, fsync, rename), creating the gossip/ folder. */
int gossip_state_write(const char *path, const char *text);
