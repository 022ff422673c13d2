/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Keeps a copy of Router1.Nodes and Router1.Policy (read at start, on PropertiesChanged, and
 * when NameOwnerChanged says routerd came back) and batches ReportOutcome calls on a 100 ms
 * timer. Picking a node is then a local function call: see docs/shim-routing-cache.md. */
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>

#include "bus-names.h"
#include "log.h"
#include "shim-latency.h"
#include "shim-metrics.h"
#include "shimd-router-cache.h"

/* One entry of the next report. Successful outcomes of the same (node, model, status) within
 * one report interval are folded into one entry: ttfb and duration are sums until sent (then
 * means over n_ttfb and n), tokens a sum. Failures stay one entry each. */
typedef struct Outcome {
        char node_id[NODE_ID_LEN + 1];
        char *model;
        uint64_t ttfb_usec;
        uint64_t duration_usec;
        uint64_t tokens;
        uint32_t http_status;
        char *error;
        uint32_t n;             /* outcomes folded into this entry */
        uint32_t n_ttfb;        /* of those, with a time to first byte */
} Outcome;

/* Successful entries searched for folding; beyond that, outcomes get entries of their own. */
#define ROUTER_REPORT_MAX_FOLDED 64

/* A node routerd cools down (Router1.Cooling), and until when (CLOCK_REALTIME; 0: half-open). */
typedef struct CoolingNode {
        char node_id[NODE_ID_LEN + 1];
        usec_t until;
} CoolingNode;

typedef struct InFlight {
        char node_id[NODE_ID_LEN + 1];
        unsigned count;
        bool dirty;             /* changed since the last report */
} InFlight;

struct RouterCache {
        Manager *m;
        RouterCacheNodeLostFn node_lost;
        void *node_lost_userdata;
        RouteTable table;
        HttpBaseUrl *urls;          /* the table's node addresses, parsed; port 0: unusable */
        RoutePolicy policy;
        uint64_t random;        /* state of the picks' random source */
        bool has_table;         /* a table was read from routerd (it may be gone since) */
        bool connected;         /* routerd is on the bus and its table is current */

        sd_bus_slot *match_properties;
        sd_bus_slot *match_owner;
        sd_bus_slot *get_all;

        Outcome *outcomes;
        size_t n_outcomes;
        size_t folded[ROUTER_REPORT_MAX_FOLDED]; /* indexes of foldable entries in outcomes */
        size_t n_folded;
        uint64_t outcomes_dropped;      /* in all: a counter of GET /metrics */
        uint64_t outcomes_dropped_logged;       /* of them, the ones already warned about */
        InFlight *in_flight;
        size_t n_in_flight;
        struct event *report_timer;

        CoolingNode *cooling;   /* Router1.Cooling, at most ROUTE_MAX_NODES */
        size_t n_cooling;
        ShimLatency latency;    /* this shim's own measurements, for the latency policy */
        MetricsPicks picks;     /* the decisions of router_cache_pick(), by policy and reason */
};

static void outcome_done(Outcome *o) {
        free(o->model);
        free(o->error);
}

/* connected: routerd answered and is on the bus. The table itself is kept when routerd goes
 * away (DESIGN.md: serve from what we last knew until the peer is back). */
static void router_cache_set_connected(RouterCache *c, bool connected) {
        if (c->connected != connected) {
                if (connected)
                        log_info("Routing table from %s loaded.", ROUTER1_BUS_NAME);
                else if (c->table.n_nodes > 0)
                        log_info("%s is gone; routing from its last table until it is back.", ROUTER1_BUS_NAME);
                else
                        log_info("%s is gone; requests go to the local Ollama.", ROUTER1_BUS_NAME);
        }
        c->connected = connected;
        if (connected)
                c->has_table = true;
        c->m->router_connected = connected;
}

static void router_cache_arm(RouterCache *c) {
        struct timeval tv = { 0, ROUTER_REPORT_INTERVAL_USEC };

        if (!c->connected || !c->m->bus || evtimer_pending(c->report_timer, NULL))
                return;
        (void) evtimer_add(c->report_timer, &tv);
}

static int router_cache_send(RouterCache *c) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        sd_bus *bus = c->m->bus;
        int r;

        r = sd_bus_message_new_method_call(bus, &msg, ROUTER1_BUS_NAME, ROUTER1_OBJECT_PATH, ROUTER1_INTERFACE, "ReportOutcome");
        if (r < 0)
                return r;
        /* Fire and forget: routerd need not answer, and must not be started for this. */
        (void) sd_bus_message_set_expect_reply(msg, false);
        (void) sd_bus_message_set_auto_start(msg, false);

        r = sd_bus_message_open_container(msg, 'a', "(ssttuus)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < c->n_outcomes; i++) {
                Outcome *o = &c->outcomes[i];

                uint32_t n = MAX(o->n, 1u);

                r = sd_bus_message_append(msg, "(ssttuus)", o->node_id, strempty(o->model),
                                          o->n_ttfb > 0 ? o->ttfb_usec / o->n_ttfb : 0, o->duration_usec / n,
                                          (uint32_t) MIN(o->tokens, (uint64_t) UINT32_MAX), o->http_status,
                                          strempty(o->error));
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(msg);
        if (r < 0)
                return r;

        r = sd_bus_message_open_container(msg, 'a', "(su)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < c->n_in_flight; i++) {
                InFlight *f = &c->in_flight[i];

                if (!f->dirty && f->count == 0)
                        continue;
                r = sd_bus_message_append(msg, "(su)", f->node_id, (uint32_t) f->count);
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(msg);
        if (r < 0)
                return r;

        r = sd_bus_send(bus, msg, NULL);
        if (r < 0)
                return r;
        /* Sent from a libevent timer, outside any bus callback. */
        bus_event_rearm(c->m->bus_event);
        return 0;
}

static void router_cache_report_cb(evutil_socket_t fd, short what, void *userdata) {
        RouterCache *c = userdata;
        size_t j = 0;
        int r;

        if (c->n_outcomes == 0 && c->n_in_flight == 0)
                return;
        r = router_cache_send(c);
        if (r < 0)
                log_warning_errno(r, "Failed to send ReportOutcome to %s: %m", ROUTER1_BUS_NAME);
        if (c->outcomes_dropped > c->outcomes_dropped_logged) {
                log_warning("Dropped %" PRIu64 " outcome reports: more than %u in 100 ms.",
                            c->outcomes_dropped - c->outcomes_dropped_logged, ROUTER_REPORT_MAX_OUTCOMES);
                c->outcomes_dropped_logged = c->outcomes_dropped;
        }

        for (size_t i = 0; i < c->n_outcomes; i++)
                outcome_done(&c->outcomes[i]);
        c->n_outcomes = 0;
        c->n_folded = 0;

        /* Nodes with nothing in flight were just reported as 0: forget them. */
        for (size_t i = 0; i < c->n_in_flight; i++) {
                c->in_flight[i].dirty = false;
                if (c->in_flight[i].count > 0)
                        c->in_flight[j++] = c->in_flight[i];
        }
        c->n_in_flight = j;
}

int router_cache_new(Manager *m, RouterCacheNodeLostFn node_lost, void *userdata, RouterCache **ret) {
        RouterCache *c;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->m = m;
        c->node_lost = node_lost;
        c->node_lost_userdata = userdata;
        route_table_init(&c->table);
        c->policy = route_policy_from_string(m->config->route_policy);
        if (c->policy < 0)
                c->policy = ROUTE_POLICY_ROUND_ROBIN;
        c->outcomes = calloc(ROUTER_REPORT_MAX_OUTCOMES, sizeof(Outcome));
        c->in_flight = calloc(ROUTE_MAX_NODES, sizeof(InFlight));
        c->cooling = calloc(ROUTE_MAX_NODES, sizeof(CoolingNode));
        shim_latency_init(&c->latency);
        c->report_timer = evtimer_new(m->base, router_cache_report_cb, c);
        if (!c->outcomes || !c->in_flight || !c->cooling || !c->report_timer) {
                router_cache_free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

RouterCache *router_cache_free(RouterCache *c) {
        if (!c)
                return NULL;
        sd_bus_slot_unref(c->match_properties);
        sd_bus_slot_unref(c->match_owner);
        sd_bus_slot_unref(c->get_all);
        for (size_t i = 0; i < c->n_outcomes; i++)
                outcome_done(&c->outcomes[i]);
        free(c->outcomes);
        free(c->in_flight);
        free(c->cooling);
        shim_latency_done(&c->latency);
        free(c->urls);
        if (c->report_timer)
                event_free(c->report_timer);
        route_table_clear(&c->table);
        free(c);
        return NULL;
}

static void strv_free(char **v) {
        for (char **p = v; p && *p; p++)
                free(*p);
        free(v);
}

/* Reads a(ssssuutas) into a new table. */
static int router_cache_parse_nodes(RouterCache *c, sd_bus_message *msg, RouteTable *ret) {
        RouteTable t;
        int r;

        route_table_init(&t);
        r = sd_bus_message_enter_container(msg, 'a', "(ssssuutas)");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(msg, 'r', "ssssuutas")) > 0) {
                const char *id, *name, *address, *state;
                uint32_t in_flight, capacity;
                uint64_t ttfb;
                char **models = NULL;
                size_t n_models = 0;
                RouteNode *n;

                r = sd_bus_message_read(msg, "ssssuut", &id, &name, &address, &state, &in_flight, &capacity, &ttfb);
                if (r < 0)
                        goto fail;
                r = sd_bus_message_read_strv(msg, &models);
                if (r < 0)
                        goto fail;
                r = sd_bus_message_exit_container(msg);
                if (r < 0) {
                        strv_free(models);
                        goto fail;
                }
                while (models && models[n_models])
                        n_models++;

                r = route_table_add(&t, id, name, address, &n);
                if (r >= 0) {
                        n->up = streq(state, "up");
                        n->cooling = streq(state, "cooling");
                        n->local = streq(id, c->m->node_id);
                        n->in_flight = in_flight;
                        n->capacity = capacity;
                        n->ttfb_ewma_usec = ttfb;
                        r = route_node_set_models(n, models, n_models);
                }
                strv_free(models);
                if (r == -ENOMEM)
                        goto fail;
                if (r < 0)
                        log_debug_errno(r, "Ignoring node '%s' from %s: %m", id, ROUTER1_BUS_NAME);
        }
        if (r < 0)
                goto fail;
        r = sd_bus_message_exit_container(msg);
        if (r < 0)
                goto fail;
        *ret = t;
        return 0;
fail:
        route_table_clear(&t);
        return r;
}

/* Sets each node's cooling deadline from the last Router1.Cooling. */
static void router_cache_apply_cooling(RouterCache *c, RouteTable *t) {
        for (size_t i = 0; i < t->n_nodes; i++) {
                t->nodes[i].cooling_until = 0;
                for (size_t k = 0; k < c->n_cooling; k++)
                        if (streq(c->cooling[k].node_id, t->nodes[i].id)) {
                                t->nodes[i].cooling_until = c->cooling[k].until;
                                break;
                        }
        }
}

/* Reads a(sst): (node id, "open" or "half-open", until). */
static int router_cache_parse_cooling(RouterCache *c, sd_bus_message *msg) {
        const char *id, *state;
        uint64_t until;
        int r;

        c->n_cooling = 0;
        r = sd_bus_message_enter_container(msg, 'a', "(sst)");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read(msg, "(sst)", &id, &state, &until)) > 0)
                if (c->n_cooling < ROUTE_MAX_NODES && strlen(id) == NODE_ID_LEN) {
                        CoolingNode *n = &c->cooling[c->n_cooling++];

                        snprintf(n->node_id, sizeof(n->node_id), "%s", id);
                        n->until = streq(state, "open") ? until : 0;
                }
        if (r < 0)
                return r;
        router_cache_apply_cooling(c, &c->table);
        return sd_bus_message_exit_container(msg);
}

/* A peer that was up in the old table and is gone from the new one, or down in it. */
typedef struct LostNode {
        char id[NODE_ID_LEN + 1];
        char hostport[sizeof(((HttpBaseUrl *) NULL)->hostport)];
        bool removed;
} LostNode;

/* Peers of the current table that t drops or marks down; *ret is malloc'ed (may be NULL). */
static int router_cache_lost_nodes(RouterCache *c, RouteTable *t, LostNode **ret, size_t *ret_n) {
        LostNode *lost = NULL;
        size_t n = 0;

        for (size_t i = 0; i < c->table.n_nodes; i++) {
                RouteNode *old = &c->table.nodes[i], *new;

                if (old->local)
                        continue;
                new = route_table_find(t, old->id);
                if (new && (new->up || !old->up) && streq(new->address, old->address))
                        continue;
                if (!lost) {
                        lost = calloc(c->table.n_nodes, sizeof(LostNode));
                        if (!lost)
                                return -ENOMEM;
                }
                snprintf(lost[n].id, sizeof(lost[n].id), "%s", old->id);
                snprintf(lost[n].hostport, sizeof(lost[n].hostport), "%s", c->urls[i].hostport);
                /* A new address is the same as leaving for what runs at the old one. */
                lost[n].removed = !new || !streq(new->address, old->address);
                n++;
        }
        *ret = lost;
        *ret_n = n;
        return 0;
}

static int router_cache_replace_table(RouterCache *c, RouteTable *t) {
        _cleanup_free_ LostNode *lost = NULL;
        HttpBaseUrl *urls = NULL;
        size_t n_lost = 0;
        int r;

        /* Each address is parsed once per table, not once per request. */
        if (t->n_nodes > 0) {
                urls = calloc(t->n_nodes, sizeof(HttpBaseUrl));
                if (!urls)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < t->n_nodes; i++) {
                if (http_base_url_parse(t->nodes[i].address, &urls[i]) < 0) {
                        log_debug("Node %s has an unusable address '%s', not routing to it.", t->nodes[i].id,
                                  strempty(t->nodes[i].address));
                        urls[i].port = 0;
                }
                /* Unusable entries are down here, so that picking skips them for the next. */
                if (urls[i].port == 0 || (!t->nodes[i].local && !c->m->have_mesh_key))
                        t->nodes[i].up = false;
        }
        r = router_cache_lost_nodes(c, t, &lost, &n_lost);
        if (r < 0) {
                free(urls);
                return r;
        }

        /* Keep the round-robin position: a table update must not send the next requests all to
         * the first node again. */
        t->round_robin_cursor = c->table.round_robin_cursor;
        router_cache_apply_cooling(c, t);
        t->generation = c->table.generation + 1;
        route_table_clear(&c->table);
        free(c->urls);
        c->table = *t;
        c->urls = urls;
        log_debug("Routing table: %zu nodes.", c->table.n_nodes);

        /* With the new table in place (retries pick from it): stop waiting on peers that are gone. */
        for (size_t i = 0; i < n_lost; i++) {
                if (lost[i].removed)
                        shim_latency_forget(&c->latency, lost[i].id);
                if (c->node_lost)
                        c->node_lost(lost[i].id, lost[i].hostport, lost[i].removed, c->node_lost_userdata);
        }
        return 0;
}

/* Reads one (sv) entry of Router1's properties; unknown names are skipped. */
static int router_cache_read_property(RouterCache *c, sd_bus_message *msg, const char *name) {
        int r;

        if (streq(name, "Nodes")) {
                RouteTable t;

                r = sd_bus_message_enter_container(msg, 'v', "a(ssssuutas)");
                if (r < 0)
                        return r;
                r = router_cache_parse_nodes(c, msg, &t);
                if (r < 0)
                        return r;
                r = router_cache_replace_table(c, &t);
                if (r < 0) {
                        route_table_clear(&t);
                        return r;
                }
                return sd_bus_message_exit_container(msg);
        }
        if (streq(name, "Cooling")) {
                r = sd_bus_message_enter_container(msg, 'v', "a(sst)");
                if (r < 0)
                        return r;
                r = router_cache_parse_cooling(c, msg);
                if (r < 0)
                        return r;
                return sd_bus_message_exit_container(msg);
        }
        if (streq(name, "Policy")) {
                const char *policy;
                RoutePolicy p;

                r = sd_bus_message_read(msg, "v", "s", &policy);
                if (r < 0)
                        return r;
                p = route_policy_from_string(policy);
                if (p < 0)
                        log_warning("Unknown routing policy '%s' from %s, keeping %s.", policy, ROUTER1_BUS_NAME,
                                    route_policy_to_string(c->policy));
                else
                        c->policy = p;
                return 0;
        }
        return sd_bus_message_skip(msg, "v");
}

static int router_cache_read_properties(RouterCache *c, sd_bus_message *msg, bool *ret_nodes_seen) {
        bool nodes_seen = false;
        int r;

        r = sd_bus_message_enter_container(msg, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(msg, 'e', "sv")) > 0) {
                const char *name;

                r = sd_bus_message_read(msg, "s", &name);
                if (r < 0)
                        return r;
                if (streq(name, "Nodes"))
                        nodes_seen = true;
                r = router_cache_read_property(c, msg, name);
                if (r < 0)
                        return r;
                r = sd_bus_message_exit_container(msg);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        if (ret_nodes_seen)
                *ret_nodes_seen = nodes_seen;
        return sd_bus_message_exit_container(msg);
}

static int router_cache_get_all_cb(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        RouterCache *c = userdata;
        bool nodes_seen = false;
        int r;

        c->get_all = sd_bus_slot_unref(c->get_all);
        if (sd_bus_message_is_method_error(reply, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(reply);

                log_debug("Cannot read %s properties: %s", ROUTER1_BUS_NAME, e ? e->message : "unknown error");
                router_cache_set_connected(c, false);
                return 0;
        }
        r = router_cache_read_properties(c, reply, &nodes_seen);
        if (r < 0 || !nodes_seen) {
                log_warning_errno(r, "Failed to read the routing table from %s: %m", ROUTER1_BUS_NAME);
                router_cache_set_connected(c, false);
                return 0;
        }
        router_cache_set_connected(c, true);

        /* routerd (re)started: tell it what is in flight now. */
        for (size_t i = 0; i < c->n_in_flight; i++)
                c->in_flight[i].dirty = true;
        if (c->n_in_flight > 0)
                router_cache_arm(c);
        return 0;
}

static int router_cache_get_all(RouterCache *c) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        sd_bus *bus = c->m->bus;
        int r;

        c->get_all = sd_bus_slot_unref(c->get_all);
        r = sd_bus_message_new_method_call(bus, &msg, ROUTER1_BUS_NAME, ROUTER1_OBJECT_PATH, "org.freedesktop.DBus.Properties",
                                           "GetAll");
        if (r < 0)
                return r;
        /* routerd is started by systemd, not by us asking it something. */
        (void) sd_bus_message_set_auto_start(msg, false);
        r = sd_bus_message_append(msg, "s", ROUTER1_INTERFACE);
        if (r < 0)
                return r;
        return sd_bus_call_async(bus, &c->get_all, msg, router_cache_get_all_cb, c, 0);
}

static int router_cache_properties_changed_cb(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error) {
        RouterCache *c = userdata;
        const char *iface;
        char **invalidated = NULL;
        bool nodes_seen = false, nodes_invalidated = false;
        int r;

        r = sd_bus_message_read(msg, "s", &iface);
        if (r < 0 || !streq(iface, ROUTER1_INTERFACE))
                return 0;
        r = router_cache_read_properties(c, msg, &nodes_seen);
        if (r >= 0)
                r = sd_bus_message_read_strv(msg, &invalidated);
        if (r < 0) {
                log_warning_errno(r, "Bad PropertiesChanged from %s, re-reading: %m", ROUTER1_BUS_NAME);
                nodes_invalidated = true;
        }
        for (char **p = invalidated; p && *p; p++)
                if (streq(*p, "Nodes"))
                        nodes_invalidated = true;
        strv_free(invalidated);

        if (nodes_invalidated)
                (void) router_cache_get_all(c);
        else if (nodes_seen)
                router_cache_set_connected(c, true);
        return 0;
}

static int router_cache_name_owner_changed_cb(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error) {
        RouterCache *c = userdata;
        const char *name, *old_owner, *new_owner;
        int r;

        r = sd_bus_message_read(msg, "sss", &name, &old_owner, &new_owner);
        if (r < 0 || !streq(name, ROUTER1_BUS_NAME))
                return 0;
        if (isempty(new_owner)) {
                /* Keep routing from the last table; outcomes are not kept for a routerd that
                 * is not there (the next one starts its averages afresh), in-flight counts are
                 * (sent again when it is back). */
                router_cache_set_connected(c, false);
                c->get_all = sd_bus_slot_unref(c->get_all);
                for (size_t i = 0; i < c->n_outcomes; i++)
                        outcome_done(&c->outcomes[i]);
                c->n_outcomes = 0;
                c->n_folded = 0;
                return 0;
        }
        log_debug("%s is on the bus (%s), reading its routing table.", ROUTER1_BUS_NAME, new_owner);
        r = router_cache_get_all(c);
        if (r < 0)
                log_warning_errno(r, "Failed to ask %s for its routing table: %m", ROUTER1_BUS_NAME);
        return 0;
}

int router_cache_start(RouterCache *c) {
        sd_bus *bus = c->m->bus;
        int r;

        if (!bus)
                return 0;
        r = sd_bus_match_signal_async(bus, &c->match_properties, ROUTER1_BUS_NAME, ROUTER1_OBJECT_PATH,
                                      "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                      router_cache_properties_changed_cb, NULL, c);
        if (r < 0)
                return r;
        r = bus_match_name_owner(bus, &c->match_owner, ROUTER1_BUS_NAME, router_cache_name_owner_changed_cb, c);
        if (r < 0)
                return r;
        return router_cache_get_all(c);
}

bool router_cache_loaded(RouterCache *c) {
        return c && c->has_table;
}

int router_cache_node(RouterCache *c, const char *id_or_name, const char *model, RouterTarget *ret, bool *ret_local) {
        const HttpBaseUrl *url;
        RouteNode *n;

        if (!c->has_table)
                return -ENOENT;
        n = route_table_find_by_id_or_name(&c->table, id_or_name);
        if (!n)
                return -ENOENT;
        /* Pinned by the client: a node cooling down is still its choice. */
        if (!n->up && !n->cooling)
                return -EHOSTDOWN;
        if (model && !route_node_serves(n, model))
                return -ESRCH;
        url = &c->urls[n - c->table.nodes];
        if (isempty(n->address) || url->port == 0)
                return -EHOSTDOWN;
        if (!ret)
                return 0;
        *ret = (RouterTarget) { .address = strdup(n->address), .url = *url };
        if (!ret->address)
                return -ENOMEM;
        snprintf(ret->node_id, sizeof(ret->node_id), "%s", n->id);
        snprintf(ret->name, sizeof(ret->name), "%s", strempty(n->name));
        *ret_local = n->local;
        return 0;
}

int router_cache_peer_models(RouterCache *c, char ***ret, size_t *ret_n) {
        size_t n = 0, k = 0;
        char **v;

        for (size_t i = 0; c->has_table && i < c->table.n_nodes; i++)
                if (c->table.nodes[i].up && !c->table.nodes[i].local)
                        n += c->table.nodes[i].n_models;
        v = calloc(n + 1, sizeof(char *));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; c->has_table && i < c->table.n_nodes; i++) {
                RouteNode *node = &c->table.nodes[i];

                if (node->up && !node->local)
                        for (size_t j = 0; j < node->n_models; j++)
                                v[k++] = node->models[j];
        }
        *ret = v;
        *ret_n = k;
        return 0;
}

int router_cache_targets(RouterCache *c, const char *model, RouterTarget *ret, unsigned *ret_free, size_t max) {
        size_t n = 0;

        for (size_t i = 0; c->has_table && i < c->table.n_nodes && n < max; i++) {
                RouteNode *node = &c->table.nodes[i];
                unsigned cap = node->capacity ?: 1;

                if (!node->up || (model && !route_node_serves(node, model)) || isempty(node->address) ||
                    c->urls[i].port == 0)
                        continue;
                ret[n] = (RouterTarget) { .address = strdup(node->address), .url = c->urls[i] };
                if (!ret[n].address) {
                        for (size_t k = 0; k < n; k++)
                                free(ret[k].address);
                        return -ENOMEM;
                }
                snprintf(ret[n].node_id, sizeof(ret[n].node_id), "%s", node->id);
                snprintf(ret[n].name, sizeof(ret[n].name), "%s", strempty(node->name));
                if (ret_free)
                        ret_free[n] = node->in_flight < cap ? cap - node->in_flight : 1;
                n++;
        }
        return (int) n;
}

void router_cache_refresh_models(RouterCache *c) {
        int r;

        if (!c->m->bus)
                return;
        r = sd_bus_call_method_async(c->m->bus, NULL, ROUTER1_BUS_NAME, ROUTER1_OBJECT_PATH, ROUTER1_INTERFACE,
                                     "RefreshModels", NULL, NULL, NULL);
        if (r < 0)
                log_debug_errno(r, "Failed to ask %s to refresh the model list: %m", ROUTER1_BUS_NAME);
}

RoutePolicy router_cache_policy(RouterCache *c) {
        return c->policy;
}

static usec_t router_cache_service_time(const RouteNode *n, const char *model, void *userdata) {
        RouterCache *c = userdata;

        return shim_latency_expected(&c->latency, n->id, model);
}

int router_cache_pick(RouterCache *c, const RoutePick *pick, RouterTarget *ret, const char **ret_reason) {
        const char *reason = NULL;
        RoutePick p = *pick;
        usec_t wait = 0;
        const HttpBaseUrl *url;
        RouteNode *n;
        char *address;
        int r;

        if (!c->has_table || !p.model)
                return -ENOENT;
        if (p.policy < 0 || p.policy >= _ROUTE_POLICY_MAX)
                p.policy = c->policy;
        /* splitmix64: the power of two choices needs no better. */
        c->random += UINT64_C(0x9e3779b97f4a7c15);
        p.random = (c->random ^ (c->random >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        p.random = (p.random ^ (p.random >> 27)) * UINT64_C(0x94d049bb133111eb);
        p.random ^= p.random >> 31;
        p.service_time = router_cache_service_time;
        p.service_time_userdata = c;
        r = route_table_pick_for(&c->table, &p, &n, &reason);
        metrics_picks_add(&c->picks, p.policy, reason);
        if (ret_reason)
                *ret_reason = reason;
        if (r < 0)
                return r;
        url = &c->urls[n - c->table.nodes];
        if (isempty(n->address) || url->port == 0)
                return -ENOENT;
        /* Every candidate cools down: wait for the first to recover when that is soon enough; a
         * later one is tried at once (its answer is the probe; waiting would only delay it). */
        if (n->cooling && n->cooling_until > 0) {
                usec_t now = now_realtime_usec();

                if (n->cooling_until > now && n->cooling_until - now <= c->m->config->cooling_wait)
                        wait = n->cooling_until - now;
        }
        address = strdup(n->address);
        if (!address)
                return -ENOMEM;
        *ret = (RouterTarget) { .address = address, .url = *url, .wait_usec = wait };
        snprintf(ret->node_id, sizeof(ret->node_id), "%s", n->id);
        snprintf(ret->name, sizeof(ret->name), "%s", strempty(n->name));
        return 0;
}

void router_cache_in_flight(RouterCache *c, const char *node_id, int delta) {
        InFlight *f = NULL;
        RouteNode *n;

        if (!c || isempty(node_id))
                return;

        /* Between two table updates, count our own requests into the local copy, so that
         * least-loaded sees them at once. */
        n = route_table_find(&c->table, node_id);
        if (n) {
                if (delta > 0)
                        n->in_flight++;
                else if (n->in_flight > 0)
                        n->in_flight--;
        }

        for (size_t i = 0; i < c->n_in_flight; i++)
                if (streq(c->in_flight[i].node_id, node_id)) {
                        f = &c->in_flight[i];
                        break;
                }
        if (!f) {
                if (delta < 0 || c->n_in_flight >= ROUTE_MAX_NODES)
                        return;
                f = &c->in_flight[c->n_in_flight++];
                *f = (InFlight) {};
                snprintf(f->node_id, sizeof(f->node_id), "%s", node_id);
        }
        if (delta > 0)
                f->count++;
        else if (f->count > 0)
                f->count--;
        f->dirty = true;
        router_cache_arm(c);
}

static bool outcome_foldable(uint32_t http_status, const char *error) {
        return http_status >= 200 && http_status < 300 && isempty(error);
}

void router_cache_report(RouterCache *c, const char *node_id, const char *model, usec_t ttfb_usec,
                         usec_t duration_usec, uint32_t tokens, uint32_t http_status, const char *error) {
        bool foldable = outcome_foldable(http_status, error);
        Outcome *o;

        if (!c || isempty(node_id))
                return;
        model = strempty(model);
        /* This shim's own estimate for the latency policy, with or without routerd. */
        if (foldable && !isempty(model))
                (void) shim_latency_sample(&c->latency, node_id, model, ttfb_usec, duration_usec, tokens);
        if (!c->connected || !c->m->bus)
                return;

        if (foldable)
                for (size_t i = 0; i < c->n_folded; i++) {
                        o = &c->outcomes[c->folded[i]];
                        if (o->http_status == http_status && streq(o->node_id, node_id) && streq(o->model, model)) {
                                o->n++;
                                o->duration_usec += duration_usec;
                                o->tokens += tokens;
                                if (ttfb_usec > 0) {
                                        o->ttfb_usec += ttfb_usec;
                                        o->n_ttfb++;
                                }
                                return;
                        }
                }

        if (c->n_outcomes >= ROUTER_REPORT_MAX_OUTCOMES) {
                c->outcomes_dropped++;
                return;
        }
        o = &c->outcomes[c->n_outcomes];
        *o = (Outcome) {
                .ttfb_usec = ttfb_usec,
                .duration_usec = duration_usec,
                .tokens = tokens,
                .http_status = http_status,
                .model = strdup(model),
                .error = foldable ? NULL : strdup(strempty(error)),
                .n = 1,
                .n_ttfb = ttfb_usec > 0,
        };
        if (!o->model || (!foldable && !o->error)) {
                outcome_done(o);
                return;
        }
        snprintf(o->node_id, sizeof(o->node_id), "%s", node_id);
        if (foldable && c->n_folded < ROUTER_REPORT_MAX_FOLDED)
                c->folded[c->n_folded++] = c->n_outcomes;
        c->n_outcomes++;
        router_cache_arm(c);
}

void router_cache_flush(RouterCache *c) {
        int r;

        if (!c || !c->connected || !c->m->bus)
                return;
        (void) evtimer_del(c->report_timer);
        router_cache_report_cb(-1, 0, c);
        r = sd_bus_flush(c->m->bus);
        if (r < 0)
                log_debug_errno(r, "Failed to flush the bus connection: %m");
}

void router_cache_bus_lost(RouterCache *c) {
        if (!c)
                return;
        c->get_all = sd_bus_slot_unref(c->get_all);
        c->match_properties = sd_bus_slot_unref(c->match_properties);
        c->match_owner = sd_bus_slot_unref(c->match_owner);
        /* As when routerd leaves the bus: the last table stays in use until a new connection
         * reads it again (router_cache_start()); outcomes are dropped, in-flight counts kept. */
        router_cache_set_connected(c, false);
        (void) evtimer_del(c->report_timer);
        for (size_t i = 0; i < c->n_outcomes; i++)
                outcome_done(&c->outcomes[i]);
        c->n_outcomes = 0;
        c->n_folded = 0;
}

const RouteTable *router_cache_table(RouterCache *c) {
        return &c->table;
}

uint64_t router_cache_outcomes_dropped(RouterCache *c) {
        return c->outcomes_dropped;
}

const MetricsPicks *router_cache_picks(RouterCache *c) {
        return &c->picks;
}
