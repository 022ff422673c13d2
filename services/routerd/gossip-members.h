/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* From a Gossip1 member to a routing table entry: its mesh URL, models, load and whether it is
 * up; the peers' loads heard through Gossip1.Loads; and the metadata values routerd publishes
 * about this node. Pure: strings in, strings out. */
#pragma once

#include "macro.h"
#include "gossip-member.h"
#include "route-table.h"

/* Metadata is 4096 bytes per node in all (swim.h); the model list gets at most this much. */
#define GOSSIP_MODELS_META_MAX 3072
/* Longest model name taken from metadata (as tags-parse.c takes from /api/tags). */
#define GOSSIP_MODEL_NAME_MAX 512
/* Load values above this are clamped: a peer cannot make in_flight or capacity absurd. */
#define GOSSIP_LOAD_MAX 1000000U
/* Peers' loads kept, at most (as many members as gossip holds). */
#define GOSSIP_LOADS_MAX 4096U
/* What the routing table should hold for a member. */
typedef struct GossipRoute {
        char *address;          /* "http://HOST:PORT", numeric host, IPv6 in brackets */
        char **models;
        size_t n_models;
        unsigned in_flight;
        unsigned capacity;
        bool up;                /* state "alive" */
} GossipRoute;

void gossip_route_done(GossipRoute *r);

/* Decides the entry for m. Returns 1 with *ret filled when it belongs in the table (alive, or
 * suspect with up = false), 0 when it does not (dead, left, unknown state, no usable "mesh"
 * metadata: nothing can be forwarded to it; *ret_reason says which), -ENOMEM. */
int gossip_member_route(const GossipMember *m, GossipRoute *ret, const char **ret_reason);


/* Splits "a,b,c": empty items skipped, names longer than GOSSIP_MODEL_NAME_MAX or with bytes
 * outside printable ASCII (spaces too) skipped, at most ROUTE_MAX_MODELS kept. */
int gossip_models_parse(const char *s, char ***ret, size_t *ret_n);
void gossip_models_free(char **models, size_t n);

/* Joins models with ',' for publishing, at most GOSSIP_MODELS_META_MAX bytes: names with a ','
 * are left out, and the list is cut at a name boundary (*ret_truncated says so). */
int gossip_models_format(char *const *models, size_t n, char **ret, bool *ret_truncated);

/* Unsigned decimal, clamped to GOSSIP_LOAD_MAX; 0 for anything else. */
unsigned gossip_load_parse(const char *s);

/* A peer's load as its own datagrams told this node's gossipd (Gossip1.Loads, LoadsChanged):
 * requests in flight there and how many it serves at once, clamped to GOSSIP_LOAD_MAX. */
typedef struct GossipLoad {
        char id[NODE_ID_LEN + 1];
        unsigned in_flight;
        unsigned capacity;
} GossipLoad;

/* The loads heard, sorted by id, at most GOSSIP_LOADS_MAX. */
typedef struct GossipLoads {
        GossipLoad *loads;
        size_t n, allocated;
} GossipLoads;

void gossip_loads_done(GossipLoads *l);
/* Sets id's load (clamped). Returns 1 when it is new or changed, 0 when it was so, -EINVAL for
 * an empty id or one longer than NODE_ID_LEN, -E2BIG when GOSSIP_LOADS_MAX others are held,
 * -ENOMEM. */
int gossip_loads_set(GossipLoads *l, const char *id, uint64_t in_flight, uint64_t capacity);
const GossipLoad *gossip_loads_find(const GossipLoads *l, const char *id);
/* 1 when it was there. */
int gossip_loads_remove(GossipLoads *l, const char *id);
/* What a route takes from a load heard directly: it replaces in_flight and capacity read from
 * metadata (which only nodes of earlier versions publish). Nothing without one. */
void gossip_route_set_load(GossipRoute *route, const GossipLoad *load);
