/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* How myceliactl names the nodes it lists by id (shard holders, shard members): by their gossip
 * name where that is unambiguous, else by the first 12 hex digits of the id. Pure. */
#pragma once

#include "gossip-member.h"
#include "macro.h"

/* How many characters of a node id the tables show, as status and members do. */
#define CTL_NODE_ID_SHOWN 12

/* The gossip name of the node id: NULL when no member has that id, its name is empty, or another
 * member goes by the same name (a name that could be either node names neither). Borrowed. */
const char *ctl_nodes_name(const GossipMember *members, size_t n_members, const char *id);

/* "kb*,kc" for a list of node ids: each by ctl_nodes_name(), else its id's first
 * CTL_NODE_ID_SHOWN characters, a '*' after local_id (may be NULL), in the order given. A
 * malloc()ed string ("" for no ids), NULL on ENOMEM. */
char *ctl_nodes_join(const char *const *ids, size_t n_ids, const char *local_id, const GossipMember *members,
                     size_t n_members);
