/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The routing table and the policies that pick a node from it. Pure: no I/O, no clock.
 * mycelia-routerd owns the table; mycelia-shimd keeps a copy synced from Router1.Nodes and
 * runs the same pick locally, so a request costs no D-Bus round trip. */
#pragma once

#include "macro.h"
#include "node-id.h"

#define ROUTE_MAX_NODES 1024
#define ROUTE_MAX_MODELS 1024

/* docs/routing-policies.md says what each does and why. */
typedef enum RoutePolicy {
        ROUTE_POLICY_ROUND_ROBIN,
        ROUTE_POLICY_LEAST_LOADED,
        ROUTE_POLICY_GRAVITY,           /* context gravity, bounded load; least-loaded without context */
        ROUTE_POLICY_LATENCY,           /* EWMA time to first token, power of two choices */
        ROUTE_POLICY_LOCAL_FIRST,       /* this node unless it is at capacity */
        _ROUTE_POLICY_MAX,
        _ROUTE_POLICY_INVALID = -EINVAL,
} RoutePolicy;

typedef struct RouteNode {
        char id[NODE_ID_LEN + 1];
        char *name;
        char *address;      /* URL requests for this node go to */
        bool up;
        bool cooling;       /* not up because routerd cools it down (Router1.Nodes "cooling"):
                             * a last resort when no node serving the model is up */
        usec_t cooling_until;   /* when it is tried again (CLOCK_REALTIME, Router1.Cooling); 0: now */
        bool local;         /* this node's own Ollama */
        unsigned in_flight;
        unsigned capacity;  /* 0: unknown */
        usec_t ttfb_ewma_usec;
        char **models;
        size_t n_models;
} RouteNode;

typedef struct RouteTable {
        RouteNode *nodes;
        size_t n_nodes;
        uint64_t generation;
        unsigned round_robin_cursor;
        uint64_t picks;         /* picks made, the random source of route_table_pick() */
} RouteTable;

const char *route_policy_to_string(RoutePolicy p);
RoutePolicy route_policy_from_string(const char *s);

/* "llama3.2" and "llama3.2:latest" name the same model, as in Ollama. */
bool model_name_equal(const char *a, const char *b);
bool route_node_serves(const RouteNode *n, const char *model);

void route_node_done(RouteNode *n);
/* Sets models to a copy of the given list (at most ROUTE_MAX_MODELS). */
int route_node_set_models(RouteNode *n, char *const *models, size_t n_models);

void route_table_init(RouteTable *t);
void route_table_clear(RouteTable *t);
/* Appends a node with copies of id, name and address; returns it. */
int route_table_add(RouteTable *t, const char *id, const char *name, const char *address, RouteNode **ret);
RouteNode *route_table_find(const RouteTable *t, const char *id);

/* The default slack of bounded load: a node takes a request while its in-flight count stays
 * within (1 + eps) times the candidates' mean (docs/routing-policies.md). */
#define ROUTE_GRAVITY_EPS_DEFAULT 0.25

/* What a pick is asked. */
typedef struct RoutePick {
        const char *model;
        RoutePolicy policy;
        char *const *exclude;           /* ids not to pick, NULL-terminated; may be NULL */
        const char *only;               /* X-Mycelia-Node: this node (id or name) or none; NULL: any */
        /* Gravity: the node that holds the request's longest known context prefix (NULL: none
         * known), and the hash its context starts with (0: none), by which a request with no
         * known holder is placed (rendezvous), the same on every node. */
        const char *holder;
        uint64_t anchor;
        double eps;                     /* bounded-load slack; <= 0 means the default */
        uint64_t random;                /* for the power of two choices */
        /* Latency: the expected time a request for the model takes on n, without queueing (0:
         * not known, then n's time to first byte counts); NULL: time to first byte only. */
        usec_t (*service_time)(const RouteNode *n, const char *model, void *userdata);
        void *service_time_userdata;
} RoutePick;

/* Picks a live node serving the model under the policy. Returns -ENOENT when there is none.
 * When every candidate is cooling down, the one that recovers first (the caller may wait for
 * it: cooling_until). ret_reason is a static string saying why this node. */
int route_table_pick_for(RouteTable *t, const RoutePick *pick, RouteNode **ret_node, const char **ret_reason);

/* The node whose id or name is id_or_name, or NULL. */
RouteNode *route_table_find_by_id_or_name(RouteTable *t, const char *id_or_name);

/* The same, for Router1.Route(): affinity_key, when not empty, is the anchor (hashed). */
int route_table_pick(RouteTable *t, RoutePolicy policy, const char *model, const char *affinity_key,
                     char *const *exclude, RouteNode **ret_node, const char **ret_reason);

/* The rendezvous score of node_id for anchor (highest wins): XXH3 of the id seeded with it. */
uint64_t route_rendezvous_score(const char *node_id, uint64_t anchor);
