/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A Gossip1 member as routerd reads it, for the unit tests of gossip-members.c and
 * routerd-gossip.c: an api address, and a mesh address and model list when given. */
#pragma once

#include "gossip-member.h"

static inline GossipMember member(const char *id, const char *state, const char *gossip, const char *mesh,
                           const char *models) {
        GossipMember g = { .id = id, .name = "peer", .state = state, .incarnation = 1 };

        if (gossip)
                g.addresses[g.n_addresses++] = gossip;
        g.meta_keys[g.n_meta] = "api";
        g.meta_values[g.n_meta++] = "0.0.0.0:11434";
        if (mesh) {
                g.meta_keys[g.n_meta] = "mesh";
                g.meta_values[g.n_meta++] = mesh;
        }
        if (models) {
                g.meta_keys[g.n_meta] = "models";
                g.meta_values[g.n_meta++] = models;
        }
        return g;
}
