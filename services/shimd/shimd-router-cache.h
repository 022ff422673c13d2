/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A local copy of org.mycelia.Router1's routing table (Nodes, Policy), kept in sync through
 * PropertiesChanged and NameOwnerChanged, so picking a node costs no D-Bus round trip; and the
 * batched ReportOutcome calls that tell routerd what happened to routed requests. */
#pragma once

#include "shim-metrics.h"
#include "shimd-manager.h"

#define ROUTER_REPORT_INTERVAL_USEC (100 * USEC_PER_MSEC)
/* Outcomes kept between two reports; more are dropped (and counted) rather than buffered. */
#define ROUTER_REPORT_MAX_OUTCOMES 4096

/* The table dropped node_id (removed) or marked it down; hostport is where it was reached. Told
 * after the new table is in place, so that a retry picks from it. */
typedef void (*RouterCacheNodeLostFn)(const char *node_id, const char *hostport, bool removed, void *userdata);

int router_cache_new(Manager *m, RouterCacheNodeLostFn node_lost, void *userdata, RouterCache **ret);
RouterCache *router_cache_free(RouterCache *c);

/* Subscribes to Router1's signals and reads its properties (at start and after each reconnect);
 * no-op without a bus. */
int router_cache_start(RouterCache *c);

/* Whether a routing table is loaded: read from routerd, which may have left the bus since (the
 * last table is kept until it is back). Shim1.RouterConnected says whether it is there. */
bool router_cache_loaded(RouterCache *c);

/* Where a picked request goes: copies, since the table may change before the request ends. */
typedef struct RouterTarget {
        char node_id[NODE_ID_LEN + 1];
        char name[65];
        char *address;          /* malloc()ed, the caller's */
        HttpBaseUrl url;
        usec_t wait_usec;       /* every candidate cools down: start after this long (its recovery) */
} RouterTarget;

/* Picks a node as pick asks (model, exclude, holder, anchor, eps); its policy, when not a valid
 * one, is the table's (Router1.Policy); its random and the latency estimates are filled in here.
 * -ENOENT: no live node serves the model. When every candidate cools down and the first recovers
 * within [router] cooling_wait, ret->wait_usec says how long to wait for it. */
int router_cache_pick(RouterCache *c, const RoutePick *pick, RouterTarget *ret, const char **ret_reason);

/* The node X-Mycelia-Node names (id or name), for pinning: 0 with *ret filled (its address
 * copied; ret may be NULL to only check) and *ret_local set when it is this node; -ENOENT: no such node; -EHOSTDOWN: it is not
 * up; -ESRCH: model is given and the node does not serve it. */
int router_cache_node(RouterCache *c, const char *id_or_name, const char *model, RouterTarget *ret, bool *ret_local);

/* The models live peers serve (this node's own excluded), repeats included: borrowed strings,
 * valid until the table changes. *ret is malloc()ed. */
int router_cache_peer_models(RouterCache *c, char ***ret, size_t *ret_n);

/* Every live node serving model (NULL: every live node), in table order, at most max: targets
 * (addresses copied, the caller's to free) and their free slots (capacity - in flight, at least
 * 1). Returns how many, or -ENOMEM. */
int router_cache_targets(RouterCache *c, const char *model, RouterTarget *ret, unsigned *ret_free, size_t max);

/* This node's Ollama changed its models: asks routerd to read them again now
 * (Router1.RefreshModels, asynchronous, its answer ignored). */
void router_cache_refresh_models(RouterCache *c);

/* The table's policy (Router1.Policy). */
RoutePolicy router_cache_policy(RouterCache *c);

/* A request to node_id started (+1) or ended (-1). */
void router_cache_in_flight(RouterCache *c, const char *node_id, int delta);

/* One routed request (or attempt) ended. error: NULL or "" on success. Successful outcomes of
 * the same node, model and status within one report interval are sent as one entry (mean ttfb
 * and duration, summed tokens); see docs/router-outcomes.md. */
void router_cache_report(RouterCache *c, const char *node_id, const char *model, usec_t ttfb_usec,
                         usec_t duration_usec, uint32_t tokens, uint32_t http_status, const char *error);

/* Sends the outcomes and in-flight counts gathered since the last report now, and waits until
 * they are written to the bus (shutdown: the loop will not run again). */
void router_cache_flush(RouterCache *c);

/* The bus connection is gone: drops the slots made on it and keeps routing from the last table
 * (RouterConnected false) until router_cache_start() on a new connection reads it again. */
void router_cache_bus_lost(RouterCache *c);

/* The table as last read (for GET /metrics), the outcomes dropped because a report was full (in
 * all, since the start), and the picks made, by policy and reason. */
const RouteTable *router_cache_table(RouterCache *c);
uint64_t router_cache_outcomes_dropped(RouterCache *c);
const MetricsPicks *router_cache_picks(RouterCache *c);
