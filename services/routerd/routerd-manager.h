/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Manager of mycelia-routerd: owns the event loop and its bus connection, the routing
 * table (this node and, later, its peers) and the pollers that keep node entries fresh. */
#pragma once

#include <event2/event.h>
#include <systemd/sd-bus.h>

#include "bus-event.h"
#include "bus-names.h"
#include "config.h"
#include "daemon.h"
#include "node-breaker.h"
#include "route-table.h"
#include "routerd-gossip.h"
#include "routerd-upstream.h"

/* PropertiesChanged for load updates (in-flight counts, TTFB) at most this often. */
#define ROUTER_LOAD_EMIT_INTERVAL_USEC (100 * USEC_PER_MSEC)
/* Entries accepted in one ReportOutcome call, per array. */
#define ROUTER_REPORT_MAX_ENTRIES 4096U

/* Per-node counters and circuit breaker from the shim's reports; not part of Nodes (the
 * breaker shows there only as the state "cooling", and in Cooling). */
typedef struct NodeStats {
        char id[NODE_ID_LEN + 1];
        uint64_t n_outcomes;
        uint64_t n_failures;
        uint64_t n_tokens;
        unsigned shim_in_flight;        /* from the last ReportOutcome */
        unsigned gossip_in_flight;      /* a peer's own count, from its gossip metadata */
        NodeBreaker breaker;            /* on the monotonic clock */
        usec_t cooling_until_realtime;  /* breaker.open_until on CLOCK_REALTIME, for Cooling */
} NodeStats;

/* One request's fate as ReportOutcome carries it. */
typedef struct RouteOutcome {
        const char *node_id;
        const char *model;
        usec_t ttfb_usec;
        usec_t duration_usec;
        unsigned tokens;
        unsigned http_status;
        const char *error;
} RouteOutcome;

typedef struct InFlightCount {
        const char *node_id;
        unsigned count;
} InFlightCount;

typedef struct Manager {
        struct event_base *base;
        DaemonLoop *loop;
        const MyceliaConfig *config;
        RoutePolicy policy;
        char local_id[NODE_ID_LEN + 1];
        char *local_name;

        RouteTable table;
        NodeStats *stats;
        size_t n_stats;
        UpstreamPoller *local_upstream;

        BusReconnect *bus_reconnect;    /* the connection, made again after a loss */
        BusEvent *bus_event;     /* borrowed from bus_reconnect; NULL while the bus is lost */
        sd_bus *bus;             /* borrowed from bus_event; NULL while the bus is lost */
        sd_bus_slot *vtable_slot;
        sd_bus_slot *name_slot;
        sd_bus_slot *shim_match_slot;
        RouterGossip gossip;
        bool ready;
        char last_status[256];   /* last STATUS= sent */

        unsigned batch;          /* > 0: changes are collected, emitted when it drops to 0 */
        bool batch_dirty;
        struct event *emit_timer;
        bool emit_pending;
        usec_t last_emit;
        uint64_t n_emits;

        struct event *breaker_timer;    /* the earliest open breaker's deadline */
        uint64_t jitter_state;          /* splitmix64 stream for the breakers' jitter */
        uint64_t n_cooling_emits;       /* PropertiesChanged for Cooling */

        int exit_code;
        uint64_t n_routed;
        uint64_t n_no_route;
        uint64_t n_reports;
        uint64_t n_unknown_node_reports;
        uint64_t n_breaker_opened;
} Manager;

/* Sets up the event loop, validates the configuration and builds the table with the local
 * node. No bus, no I/O yet. */
int manager_new(const MyceliaConfig *config, Manager **ret);
/* Frees the event loop last. */
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Connects to the bus, serves Router1, requests the name (READY follows when it is ours)
 * and starts polling the local upstream. */
int manager_start(Manager *m);
/* Runs the loop until SIGTERM/SIGINT (0) or losing the name to another process (EXIT_FAILURE). A
 * lost bus is not the end: the table keeps being served to nobody, the upstream is polled, and
 * the connection, name and subscriptions are made again when the bus is back. */
int manager_run(Manager *m);

/* Table updates, each bumping Generation and emitting PropertiesChanged when something
 * really changed. Gossip-fed peers will come in through the same calls. */
int manager_node_add(Manager *m, const char *id, const char *name, const char *address, bool local);
int manager_node_set_up(Manager *m, const char *id, bool up);
int manager_node_set_models(Manager *m, const char *id, char *const *models, size_t n_models);
/* Removes a peer (never the local node: -EPERM). */
int manager_node_remove(Manager *m, const char *id);
/* Adds or updates a peer from gossip: name, address, models, up, its own in-flight count and
 * capacity, in one Generation. */
int manager_node_set_remote(Manager *m, const char *id, const char *name, const char *address,
                            char *const *models, size_t n_models, bool up, unsigned in_flight,
                            unsigned capacity);

/* Changes between begin and end (nested) go out as one Generation bump and one signal. */
void manager_batch_begin(Manager *m);
void manager_batch_end(Manager *m);

/* What Nodes says of n: "down" (gossip or the health probe says so), "cooling" (its breaker is
 * open: routed around until the deadline in Cooling), else "up". */
const char *manager_node_state(Manager *m, const RouteNode *n);

/* Route(): -ENOENT when no live node serves the model. Cooling nodes are not candidates. */
int manager_route(Manager *m, const char *model, const char *affinity_key, char *const *exclude,
                  RouteNode **ret_node, const char **ret_reason);
/* ReportOutcome(): in_flight is the shim's whole picture, so nodes it does not list have 0. */
int manager_report(Manager *m, const RouteOutcome *outcomes, size_t n_outcomes,
                   const InFlightCount *in_flight, size_t n_in_flight);

/* The shim left the bus: the requests it counted are gone with it. */
void manager_clear_in_flight(Manager *m);

const NodeStats *manager_get_stats(Manager *m, const char *id);

/* Requests org.mycelia.Router1 (once per connection; READY follows the first time it is ours). */
int manager_request_name(Manager *m);

/* routerd-bus.c */
int manager_bus_register(Manager *m);
int manager_bus_emit_nodes_changed(Manager *m);
int manager_bus_emit_cooling_changed(Manager *m);
int manager_bus_watch_shim(Manager *m);
