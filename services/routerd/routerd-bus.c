/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.mycelia.Router1 on the bus: the vtable, argument checking and marshalling. Decisions
 * live in routerd-manager.c; dbus/org.mycelia.Router1.xml documents what is here. */
#include "bus-process.h"
#include "log.h"
#include "routerd-manager.h"

static int property_get_nodes(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(ssssuutas)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->table.n_nodes; i++) {
                const RouteNode *n = &m->table.nodes[i];

                r = sd_bus_message_open_container(reply, 'r', "ssssuutas");
                if (r < 0)
                        return r;
                r = sd_bus_message_append(reply, "ssssuut", n->id, n->name, n->address, manager_node_state(m, n),
                                          n->in_flight, n->capacity, (uint64_t) n->ttfb_ewma_usec);
                if (r < 0)
                        return r;
                r = sd_bus_message_open_container(reply, 'a', "s");
                if (r < 0)
                        return r;
                for (size_t j = 0; j < n->n_models; j++) {
                        r = sd_bus_message_append_basic(reply, 's', n->models[j]);
                        if (r < 0)
                                return r;
                }
                r = sd_bus_message_close_container(reply);
                if (r < 0)
                        return r;
                r = sd_bus_message_close_container(reply);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

/* (node_id, state, until): every node whose breaker is not closed. state "open": routed around
 * until the CLOCK_REALTIME usec until; "half-open": routed to again, until is 0. */
static int property_get_cooling(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(sst)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->n_stats; i++) {
                const NodeStats *s = &m->stats[i];

                if (s->breaker.state == NODE_BREAKER_CLOSED)
                        continue;
                r = sd_bus_message_append(reply, "(sst)", s->id, node_breaker_state_to_string(s->breaker.state),
                                          s->breaker.state == NODE_BREAKER_OPEN ? (uint64_t) s->cooling_until_realtime
                                                                                : UINT64_C(0));
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

/* {node_id: times its breaker opened}: every node of the table that has a breaker, for the
 * metrics (mycelia_route_node_cooldowns_total). Counts start with routerd and go with the node
 * when it leaves the table; bounded like the table (ROUTE_MAX_NODES). Read on demand: it
 * changes with the breaker, and a PropertiesChanged for a counter nobody watches is noise. */
static int property_get_cooldowns(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "{st}");
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->n_stats; i++) {
                r = sd_bus_message_append(reply, "{st}", m->stats[i].id, m->stats[i].breaker.n_opened);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static int property_get_generation(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        return sd_bus_message_append(reply, "t", m->table.generation);
}

static int property_get_local_node_id(sd_bus *bus, const char *path, const char *interface,
                                      const char *property, sd_bus_message *reply, void *userdata,
                                      sd_bus_error *error) {
        Manager *m = userdata;

        return sd_bus_message_append(reply, "s", m->local_id);
}

static int property_get_policy(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        return sd_bus_message_append(reply, "s", route_policy_to_string(m->policy));
}

static int method_route(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_free_ const char **exclude = NULL;
        const char *model, *affinity_key, *reason;
        Manager *m = userdata;
        size_t n_exclude = 0, total;
        RouteNode *node;
        int r;

        r = sd_bus_message_read(msg, "ss", &model, &affinity_key);
        if (r < 0)
                return r;
        if (isempty(model))
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "model must not be empty");

        /* The strings stay in msg; only the pointer array is ours, bounded by the table size. */
        exclude = calloc(ROUTE_MAX_NODES + 1, sizeof(char *));
        if (!exclude)
                return -ENOMEM;
        r = bus_message_read_strv_bounded(msg, exclude, ROUTE_MAX_NODES, &n_exclude, &total);
        if (r < 0)
                return r;
        if (total > ROUTE_MAX_NODES)
                return sd_bus_error_setf(error, SD_BUS_ERROR_LIMITS_EXCEEDED, "exclude lists more than %u nodes",
                                         ROUTE_MAX_NODES);

        r = manager_route(m, model, affinity_key, (char *const *) exclude, &node, &reason);
        if (r == -ENOENT)
                return sd_bus_error_setf(error, ROUTER1_ERROR_NO_ROUTE, "no live node serves model '%s'", model);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, "sss", node->id, node->address, reason);
}

/* The shim counts the requests in flight; when it leaves the bus they died with it, and its
 * successor only reports once it has something to say. */
static int match_shim_owner_changed(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        const char *name, *old_owner, *new_owner;
        Manager *m = userdata;
        int r;

        r = sd_bus_message_read(msg, "sss", &name, &old_owner, &new_owner);
        if (r < 0)
                return 0;
        if (!streq(name, SHIM1_BUS_NAME) || !isempty(new_owner))
                return 0;
        log_info("%s left the bus; clearing in-flight counts.", SHIM1_BUS_NAME);
        manager_clear_in_flight(m);
        return 0;
}

static int method_report_outcome(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        _cleanup_free_ RouteOutcome *outcomes = NULL;
        _cleanup_free_ InFlightCount *in_flight = NULL;
        size_t n_outcomes = 0, n_in_flight = 0;
        Manager *m = userdata;
        int r;

        outcomes = calloc(ROUTER_REPORT_MAX_ENTRIES, sizeof(RouteOutcome));
        in_flight = calloc(ROUTER_REPORT_MAX_ENTRIES, sizeof(InFlightCount));
        if (!outcomes || !in_flight)
                return -ENOMEM;

        r = sd_bus_message_enter_container(msg, 'a', "(ssttuus)");
        if (r < 0)
                return r;
        for (;;) {
                RouteOutcome o = {};
                uint64_t ttfb, duration;

                r = sd_bus_message_read(msg, "(ssttuus)", &o.node_id, &o.model, &ttfb, &duration, &o.tokens,
                                        &o.http_status, &o.error);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                if (n_outcomes >= ROUTER_REPORT_MAX_ENTRIES)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                                 "more than %u outcomes in one report",
                                                 ROUTER_REPORT_MAX_ENTRIES);
                o.ttfb_usec = ttfb;
                o.duration_usec = duration;
                outcomes[n_outcomes++] = o;
        }
        r = sd_bus_message_exit_container(msg);
        if (r < 0)
                return r;

        r = sd_bus_message_enter_container(msg, 'a', "(su)");
        if (r < 0)
                return r;
        for (;;) {
                InFlightCount c = {};

                r = sd_bus_message_read(msg, "(su)", &c.node_id, &c.count);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                if (n_in_flight >= ROUTER_REPORT_MAX_ENTRIES)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                                 "more than %u in-flight counts in one report",
                                                 ROUTER_REPORT_MAX_ENTRIES);
                in_flight[n_in_flight++] = c;
        }
        r = sd_bus_message_exit_container(msg);
        if (r < 0)
                return r;

        r = manager_report(m, outcomes, n_outcomes, in_flight, n_in_flight);
        if (r < 0)
                return r;
        return sd_bus_reply_method_return(msg, NULL);
}

/* Both methods are UNPRIVILEGED for sd-bus: the bus policy decides (dbus/org.mycelia.Router1.conf:
 * Route is open, ReportOutcome is for root and the mycelia group). */
/* The local Ollama's models changed (the shim served a pull, create, copy or delete): read them
 * again now, so that gossip carries the new list within a second rather than tags_interval. */
static int method_refresh_models(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        upstream_poller_refresh(m->local_upstream);
        return sd_bus_reply_method_return(msg, NULL);
}

static const sd_bus_vtable router_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_METHOD_WITH_ARGS("Route",
                                SD_BUS_ARGS("s", model, "s", affinity_key, "as", exclude),
                                SD_BUS_RESULT("s", node_id, "s", address, "s", reason),
                                method_route,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RefreshModels",
                                SD_BUS_NO_ARGS,
                                SD_BUS_NO_RESULT,
                                method_refresh_models,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("ReportOutcome",
                                SD_BUS_ARGS("a(ssttuus)", outcomes, "a(su)", in_flight),
                                SD_BUS_NO_RESULT,
                                method_report_outcome,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_PROPERTY("Nodes", "a(ssssuutas)", property_get_nodes, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Generation", "t", property_get_generation, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Cooling", "a(sst)", property_get_cooling, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Cooldowns", "a{st}", property_get_cooldowns, 0, 0),
        SD_BUS_PROPERTY("LocalNodeId", "s", property_get_local_node_id, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Policy", "s", property_get_policy, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_VTABLE_END
};

int manager_bus_register(Manager *m) {
        int r;

        r = sd_bus_add_object_vtable(m->bus, &m->vtable_slot, ROUTER1_OBJECT_PATH, ROUTER1_INTERFACE, router_vtable, m);
        if (r < 0)
                return r;
        return bus_add_process_interface(m->bus, ROUTER1_OBJECT_PATH);
}

int manager_bus_emit_nodes_changed(Manager *m) {
        int r;

        if (!m->bus || !m->vtable_slot)
                return 0;
        r = sd_bus_emit_properties_changed(m->bus, ROUTER1_OBJECT_PATH, ROUTER1_INTERFACE, "Nodes", "Generation",
                                           NULL);
        /* Outside a bus callback the message may sit in the write queue: re-arm for POLLOUT. */
        bus_event_rearm(m->bus_event);
        return r;
}

int manager_bus_emit_cooling_changed(Manager *m) {
        int r;

        if (!m->bus || !m->vtable_slot)
                return 0;
        r = sd_bus_emit_properties_changed(m->bus, ROUTER1_OBJECT_PATH, ROUTER1_INTERFACE, "Cooling", NULL);
        bus_event_rearm(m->bus_event);
        return r;
}

int manager_bus_watch_shim(Manager *m) {
        return bus_match_name_owner(m->bus, &m->shim_match_slot, SHIM1_BUS_NAME, match_shim_owner_changed, m);
}
