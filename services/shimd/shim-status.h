/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* GET /api/mycelia/status, the pure part: the requests this node routed lately (the "flows" the
 * topology page draws from this node to the one serving), one node's merged view (gossip's state
 * and the routing table's), and their JSON. No I/O, time passed in. docs/topology-page.md. */
#pragma once

#include <json-c/json.h>

#include "macro.h"
#include "node-id.h"

/* The last requests routed from this node, in flight or ended: a view for the page, not a log.
 * When more are in flight, the oldest entries are reused (Shim1.RequestsActive says how many). */
#define SHIM_FLOWS_MAX 64
/* How long an ended request stays in the answer, so that a poll each second sees a short one. */
#define SHIM_FLOWS_KEEP_USEC (5 * USEC_PER_SEC)

typedef struct ShimFlow {
        uint64_t id;            /* the shim's request id; 0: a free entry */
        char to[NODE_ID_LEN + 1];
        char to_name[65];
        char model[129];        /* cut at 128 bytes */
        const char *endpoint;   /* static: metrics_endpoint_to_string() */
        usec_t started;
        usec_t ended;           /* 0: in flight */
        unsigned status;
        uint64_t tokens;
        unsigned attempts;      /* nodes tried: 2 and more after a retry or failover */
} ShimFlow;

typedef struct ShimFlows {
        ShimFlow entries[SHIM_FLOWS_MAX];
        size_t next;            /* the entry the next new request takes */
} ShimFlows;

/* Request id goes to node (to, to_name) now: a new entry, or the same one again after a retry on
 * another node. model may be NULL. */
void shim_flows_target(ShimFlows *f, uint64_t id, const char *to, const char *to_name, const char *model,
                       const char *endpoint, usec_t now);
/* Request id ended (no-op when it was never routed or its entry was reused). */
void shim_flows_end(ShimFlows *f, uint64_t id, unsigned status, uint64_t tokens, usec_t now);
/* The flows in flight and those ended within SHIM_FLOWS_KEEP_USEC, oldest first, as a JSON array:
 * times as ages in milliseconds. NULL: out of memory. */
json_object *shim_flows_json(const ShimFlows *f, const char *from, usec_t now);

/* One node as this node sees it: gossip's member and the routing table's node, by id. */
typedef struct ShimStatusNode {
        const char *id;
        const char *name;
        const char *gossip_state;       /* alive, suspect, dead, left; NULL: gossip does not know it */
        const char *route_state;        /* up, cooling, down; NULL: not in the routing table */
        bool local;
        const char *api;                /* its metadata: the API and mesh listeners (NULL: none) */
        const char *mesh;
        bool shard;                     /* it runs shardd (ShardStore1.Nodes) */
        char *const *models;
        size_t n_models;
        unsigned in_flight;
        unsigned capacity;              /* 0: unknown */
        usec_t ttft_usec;               /* EWMA time to first byte, 0: none yet */
        usec_t cooling_left_usec;       /* while it cools down: until it is tried again */
} ShimStatusNode;

/* The one word the page colours a node by: "dead" and "left" (gossip declared it), "up",
 * "cooling", "suspect", "down", else "unknown". Gossip's verdict comes first: routerd drops a
 * dead member from its table, so only gossip still shows it. */
const char *shim_status_health(const char *gossip_state, const char *route_state);

/* The node as a JSON object. NULL: out of memory. */
json_object *shim_status_node_json(const ShimStatusNode *n);
