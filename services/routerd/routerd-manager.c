/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Wires the pieces of mycelia-routerd together on its event loop: the routing table, the
 * local upstream's poller feeding it, the shim's reports updating load, and change signals on
 * the bus. */
#include <assert.h>
#include <limits.h>
#include <stdio.h>

#include "daemon.h"
#include "log.h"
#include "routerd-gossip.h"
#include "routerd-manager.h"

static void manager_exit(Manager *m, int code) {
        if (m->exit_code == 0)
                m->exit_code = code;
        (void) event_base_loopbreak(m->base);
}

static void manager_emit_now(Manager *m) {
        int r;

        m->emit_pending = false;
        (void) evtimer_del(m->emit_timer);
        m->last_emit = now_usec();
        m->n_emits++;
        r = manager_bus_emit_nodes_changed(m);
        if (r < 0)
                log_warning_errno(r, "Failed to emit PropertiesChanged for Nodes: %m");
}

static void manager_emit_timer_cb(evutil_socket_t fd, short what, void *userdata) {
        manager_emit_now(userdata);
}

/* Nodes changed. Membership, state and model changes go out at once (taking any pending
 * load update along); load-only changes at most once per ROUTER_LOAD_EMIT_INTERVAL_USEC. */
static void manager_nodes_changed(Manager *m, bool load_only) {
        struct timeval tv;
        usec_t now, due;

        if (m->batch > 0) {
                /* Several changes of one event go out as one Generation and one signal. */
                m->batch_dirty = true;
                return;
        }
        m->table.generation++;
        if (!load_only) {
                manager_emit_now(m);
                return;
        }
        if (m->emit_pending)
                return;
        now = now_usec();
        due = m->n_emits > 0 ? m->last_emit + ROUTER_LOAD_EMIT_INTERVAL_USEC : now;
        if (due <= now) {
                manager_emit_now(m);
                return;
        }
        m->emit_pending = true;
        tv.tv_sec = (time_t) ((due - now) / USEC_PER_SEC);
        tv.tv_usec = (suseconds_t) ((due - now) % USEC_PER_SEC);
        (void) evtimer_add(m->emit_timer, &tv);
}

void manager_batch_begin(Manager *m) {
        m->batch++;
}

void manager_batch_end(Manager *m) {
        assert(m->batch > 0);
        if (--m->batch > 0 || !m->batch_dirty)
                return;
        m->batch_dirty = false;
        manager_nodes_changed(m, false);
}

static NodeStats *manager_stats_get(Manager *m, const char *id, bool create) {
        NodeStats *s;

        for (size_t i = 0; i < m->n_stats; i++)
                if (streq(m->stats[i].id, id))
                        return &m->stats[i];
        if (!create || m->n_stats >= ROUTE_MAX_NODES)
                return NULL;
        s = realloc(m->stats, (m->n_stats + 1) * sizeof(NodeStats));
        if (!s)
                return NULL;
        m->stats = s;
        s = &m->stats[m->n_stats++];
        *s = (NodeStats) {};
        snprintf(s->id, sizeof(s->id), "%s", id);
        node_breaker_init(&s->breaker, now_usec());
        return s;
}

const NodeStats *manager_get_stats(Manager *m, const char *id) {
        return manager_stats_get(m, id, false);
}

/* ---- circuit breakers (node-breaker.c) ---- */

/* splitmix64: jitter needs no syscall and no quality beyond "not the same for every node". */
static uint64_t manager_random(Manager *m) {
        uint64_t z = (m->jitter_state += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static bool node_cooling(Manager *m, const char *id) {
        const NodeStats *s = manager_stats_get(m, id, false);

        return s && !node_breaker_routable(&s->breaker);
}

const char *manager_node_state(Manager *m, const RouteNode *n) {
        if (!n->up)
                return "down";
        return node_cooling(m, n->id) ? "cooling" : "up";
}

/* Arms the timer for the earliest deadline of an open breaker, or stops it. */
static void manager_breaker_arm(Manager *m) {
        usec_t next = USEC_INFINITY, now, delta;
        struct timeval tv;

        for (size_t i = 0; i < m->n_stats; i++)
                next = MIN(next, node_breaker_next_wakeup(&m->stats[i].breaker));
        if (next == USEC_INFINITY) {
                (void) evtimer_del(m->breaker_timer);
                return;
        }
        now = now_usec();
        delta = next > now ? next - now : 0;
        tv.tv_sec = (time_t) (delta / USEC_PER_SEC);
        tv.tv_usec = (suseconds_t) (delta % USEC_PER_SEC);
        (void) evtimer_add(m->breaker_timer, &tv);
}

static void manager_cooling_changed(Manager *m) {
        int r;

        m->n_cooling_emits++;
        r = manager_bus_emit_cooling_changed(m);
        if (r < 0)
                log_warning_errno(r, "Failed to emit PropertiesChanged for Cooling: %m");
}

static const char *node_name_of(Manager *m, const char *id) {
        RouteNode *n = route_table_find(&m->table, id);

        return n && !isempty(n->name) ? n->name : id;
}

/* Counts and logs a transition of s's breaker; the caller emits. */
static void manager_breaker_changed(Manager *m, const NodeStats *s, NodeBreakerState old, usec_t now) {
        const NodeBreaker *b = &s->breaker;

        switch (b->state) {
        case NODE_BREAKER_OPEN:
                m->n_breaker_opened++;
                if (old == NODE_BREAKER_CLOSED)
                        log_warning("Node %s (%s) failed %u requests in a row; cooling it down for %.1fs.",
                                    node_name_of(m, s->id), s->id, NODE_BREAKER_FAILURES,
                                    (double) (b->open_until - now) / USEC_PER_SEC);
                else
                        log_warning("Node %s (%s) failed again after cooling down; cooling it for %.1fs.",
                                    node_name_of(m, s->id), s->id, (double) (b->open_until - now) / USEC_PER_SEC);
                break;
        case NODE_BREAKER_HALF_OPEN:
                log_info("Node %s (%s) cooled down; routing to it again, its next request decides.",
                         node_name_of(m, s->id), s->id);
                break;
        default:
                log_notice("Node %s (%s) serves again.", node_name_of(m, s->id), s->id);
                break;
        }
}

static void manager_breaker_timer_cb(evutil_socket_t fd, short what, void *userdata) {
        Manager *m = userdata;
        bool cooling = false, nodes = false;
        usec_t now = now_usec();

        for (size_t i = 0; i < m->n_stats; i++) {
                NodeStats *s = &m->stats[i];
                RouteNode *n = route_table_find(&m->table, s->id);

                if (!node_breaker_tick(&s->breaker, now))
                        continue;
                s->cooling_until_realtime = 0;
                manager_breaker_changed(m, s, NODE_BREAKER_OPEN, now);
                cooling = true;
                /* Nodes shows "cooling" only for a node that is up otherwise. */
                if (n && n->up)
                        nodes = true;
        }
        if (cooling)
                manager_cooling_changed(m);
        if (nodes)
                manager_nodes_changed(m, false);
        manager_breaker_arm(m);
}

int manager_node_add(Manager *m, const char *id, const char *name, const char *address, bool local) {
        RouteNode *n;
        int r;

        if (route_table_find(&m->table, id))
                return -EEXIST;
        r = route_table_add(&m->table, id, name, address, &n);
        if (r < 0)
                return r;
        n->local = local;
        (void) manager_stats_get(m, id, true);
        manager_nodes_changed(m, false);
        return 0;
}

int manager_node_set_up(Manager *m, const char *id, bool up) {
        RouteNode *n = route_table_find(&m->table, id);

        if (!n)
                return -ENOENT;
        if (n->up == up)
                return 0;
        n->up = up;
        manager_nodes_changed(m, false);
        return 1;
}

static bool models_equal(const RouteNode *n, char *const *models, size_t n_models) {
        if (n->n_models != n_models)
                return false;
        for (size_t i = 0; i < n_models; i++)
                if (!streq(n->models[i], models[i]))
                        return false;
        return true;
}

int manager_node_set_models(Manager *m, const char *id, char *const *models, size_t n_models) {
        RouteNode *n = route_table_find(&m->table, id);
        int r;

        if (!n)
                return -ENOENT;
        if (models_equal(n, models, n_models))
                return 0;
        r = route_node_set_models(n, models, n_models);
        if (r < 0)
                return r;
        manager_nodes_changed(m, false);
        return 1;
}

int manager_node_remove(Manager *m, const char *id) {
        RouteNode *n = route_table_find(&m->table, id);
        bool was_cooling = false;
        NodeStats *s;
        size_t i;

        if (!n)
                return -ENOENT;
        if (n->local)
                return -EPERM;
        i = (size_t) (n - m->table.nodes);
        route_node_done(n);
        memmove(&m->table.nodes[i], &m->table.nodes[i + 1], (m->table.n_nodes - i - 1) * sizeof(RouteNode));
        m->table.n_nodes--;

        /* Its counters and breaker go with it: the stats table is bounded like the routing table. */
        s = manager_stats_get(m, id, false);
        if (s) {
                was_cooling = s->breaker.state != NODE_BREAKER_CLOSED;
                i = (size_t) (s - m->stats);
                memmove(&m->stats[i], &m->stats[i + 1], (m->n_stats - i - 1) * sizeof(NodeStats));
                m->n_stats--;
        }
        manager_nodes_changed(m, false);
        if (was_cooling) {
                manager_cooling_changed(m);
                manager_breaker_arm(m);
        }
        return 1;
}

/* Replaces *field with a copy of value when they differ; 1 when changed. */
static int update_string(char **field, const char *value) {
        char *copy;

        if (*field && streq(*field, strempty(value)))
                return 0;
        copy = strdup(strempty(value));
        if (!copy)
                return -ENOMEM;
        free(*field);
        *field = copy;
        return 1;
}

/* A remote node's shown in_flight: what this node's shim has in flight there, or what the
 * node says it has in flight in all (gossip, up to a second old), whichever is more. */
static unsigned remote_in_flight(const NodeStats *s) {
        return s ? MAX(s->shim_in_flight, s->gossip_in_flight) : 0;
}

int manager_node_set_remote(Manager *m, const char *id, const char *name, const char *address,
                            char *const *models, size_t n_models, bool up, unsigned in_flight,
                            unsigned capacity) {
        RouteNode *n = route_table_find(&m->table, id);
        bool changed = false, load_changed = false;
        NodeStats *s;
        int r;

        if (n && n->local)
                return -EPERM;

        manager_batch_begin(m);
        if (!n) {
                r = manager_node_add(m, id, name, address, false);
                if (r < 0)
                        goto finish;
                n = route_table_find(&m->table, id);
        }
        r = update_string(&n->name, name);
        if (r < 0)
                goto finish;
        changed = changed || r > 0;
        r = update_string(&n->address, address);
        if (r < 0)
                goto finish;
        changed = changed || r > 0;
        r = manager_node_set_models(m, id, models, n_models);
        if (r < 0)
                goto finish;
        r = manager_node_set_up(m, id, up);
        if (r < 0)
                goto finish;

        s = manager_stats_get(m, id, true);
        if (s)
                s->gossip_in_flight = in_flight;
        if (n->capacity != capacity) {
                n->capacity = capacity;
                load_changed = true;
        }
        if (n->in_flight != remote_in_flight(s)) {
                n->in_flight = remote_in_flight(s);
                load_changed = true;
        }
        r = 0;
finish:
        /* Inside the batch: one Generation for the whole update. */
        if (changed || load_changed)
                manager_nodes_changed(m, false);
        manager_batch_end(m);
        return r;
}

int manager_route(Manager *m, const char *model, const char *affinity_key, char *const *exclude,
                  RouteNode **ret_node, const char **ret_reason) {
        _cleanup_free_ char **all = NULL;
        size_t n_exclude = 0, n = 0;
        int r;

        /* Cooling nodes are routed around: excluded as if the caller had tried them. */
        while (exclude && exclude[n_exclude])
                n_exclude++;
        all = calloc(n_exclude + m->table.n_nodes + 1, sizeof(char *));
        if (!all)
                return -ENOMEM;
        for (size_t i = 0; i < n_exclude; i++)
                all[n++] = exclude[i];
        for (size_t i = 0; i < m->table.n_nodes; i++)
                if (node_cooling(m, m->table.nodes[i].id))
                        all[n++] = m->table.nodes[i].id;

        r = route_table_pick(&m->table, m->policy, model, affinity_key, all, ret_node, ret_reason);
        if (r < 0)
                m->n_no_route++;
        else
                m->n_routed++;
        return r;
}

int manager_report(Manager *m, const RouteOutcome *outcomes, size_t n_outcomes,
                   const InFlightCount *in_flight, size_t n_in_flight) {
        bool changed = false, probe_local = false, cooling_changed = false, state_changed = false;
        usec_t now = now_usec();

        m->n_reports++;

        for (size_t i = 0; i < n_outcomes; i++) {
                const RouteOutcome *o = &outcomes[i];
                RouteNode *n = route_table_find(&m->table, o->node_id);
                NodeStats *s;
                bool failed;

                if (!n) {
                        m->n_unknown_node_reports++;
                        continue;
                }
                failed = upstream_outcome_is_failure(o->http_status, o->error);
                s = manager_stats_get(m, n->id, true);
                if (s) {
                        NodeBreakerState old = s->breaker.state;

                        s->n_outcomes++;
                        s->n_tokens += o->tokens;
                        if (failed)
                                s->n_failures++;
                        if (node_breaker_record(&s->breaker, node_outcome_classify(o->http_status, o->error), now,
                                                manager_random(m))) {
                                s->cooling_until_realtime = s->breaker.state == NODE_BREAKER_OPEN
                                        ? now_realtime_usec() + (s->breaker.open_until - now) : 0;
                                manager_breaker_changed(m, s, old, now);
                                cooling_changed = true;
                                /* closed -> open and half-open -> open turn "up" into "cooling";
                                 * half-open -> closed changes Cooling only. */
                                if (n->up && s->breaker.state == NODE_BREAKER_OPEN)
                                        state_changed = true;
                        }
                }
                if (failed) {
                        log_debug("Request for '%s' on node %s failed: status %u%s%s", strempty(o->model),
                                  n->name, o->http_status, isempty(o->error) ? "" : ", ",
                                  strempty(o->error));
                        if (n->local)
                                probe_local = true;
                        continue;
                }
                /* Only answers that streamed say how fast the node is; 4xx come back at once. */
                if (o->http_status >= 200 && o->http_status < 300 && o->ttfb_usec > 0) {
                        usec_t ewma = ttfb_ewma_update(n->ttfb_ewma_usec, o->ttfb_usec);

                        if (ewma != n->ttfb_ewma_usec) {
                                n->ttfb_ewma_usec = ewma;
                                changed = true;
                        }
                }
        }

        /* The shim's in-flight picture is complete: whoever it does not list has none. */
        for (size_t i = 0; i < m->table.n_nodes; i++) {
                RouteNode *n = &m->table.nodes[i];
                unsigned count = 0;
                NodeStats *s;

                for (size_t j = 0; j < n_in_flight; j++)
                        if (streq(in_flight[j].node_id, n->id))
                                count = in_flight[j].count;
                s = manager_stats_get(m, n->id, false);
                if (s)
                        s->shim_in_flight = count;
                if (!n->local)
                        count = MAX(count, s ? s->gossip_in_flight : 0);
                if (n->in_flight != count) {
                        n->in_flight = count;
                        changed = true;
                }
        }
        for (size_t j = 0; j < n_in_flight; j++)
                if (!route_table_find(&m->table, in_flight[j].node_id))
                        m->n_unknown_node_reports++;

        if (cooling_changed) {
                /* Cooling first: a reader that sees "cooling" in Nodes finds the deadline there. */
                manager_cooling_changed(m);
                manager_breaker_arm(m);
        }
        if (state_changed)
                manager_nodes_changed(m, false);
        else if (changed)
                manager_nodes_changed(m, true);
        if (probe_local && m->local_upstream)
                upstream_poller_report_failure(m->local_upstream);
        return 0;
}

void manager_clear_in_flight(Manager *m) {
        bool changed = false;

        for (size_t i = 0; i < m->table.n_nodes; i++) {
                RouteNode *n = &m->table.nodes[i];
                NodeStats *s = manager_stats_get(m, n->id, false);
                unsigned count;

                if (s)
                        s->shim_in_flight = 0;
                count = n->local ? 0 : remote_in_flight(s);
                if (n->in_flight != count) {
                        n->in_flight = count;
                        changed = true;
                }
        }
        if (changed)
                manager_nodes_changed(m, true);
}

static void manager_format_status(Manager *m, char *buf, size_t size) {
        const UpstreamHealth *h = upstream_poller_get_health(m->local_upstream);
        const char *upstream = upstream_poller_get_host_port(m->local_upstream);
        RouteNode *n = route_table_find(&m->table, m->local_id);

        switch (h->state) {
        case UPSTREAM_UNKNOWN:
                snprintf(buf, size, "Serving; first model list from %s not fetched yet", upstream);
                break;
        case UPSTREAM_UP:
                snprintf(buf, size, "Serving; local Ollama at %s up with %zu model(s)", upstream,
                         n ? n->n_models : 0);
                break;
        default:
                snprintf(buf, size, "Serving; local Ollama at %s down, probing every %.1fs", upstream,
                         (double) h->probe_interval / USEC_PER_SEC);
                break;
        }
}

static void manager_update_status(Manager *m) {
        char status[sizeof(m->last_status)];

        /* While the bus is lost, STATUS= says so (bus-reconnect.c). */
        if (!m->ready || !m->bus)
                return;
        manager_format_status(m, status, sizeof(status));
        if (streq(status, m->last_status))
                return;
        snprintf(m->last_status, sizeof(m->last_status), "%s", status);
        daemon_notify_status("%s", status);
}

static void manager_local_fetched(UpstreamPoller *p, int error, const char *reason, const TagsList *tags,
                                  bool state_changed, void *userdata) {
        Manager *m = userdata;
        const UpstreamHealth *h = upstream_poller_get_health(p);
        int r;

        if (error < 0) {
                if (state_changed)
                        log_warning("Local Ollama at %s is down: %s. Probing it every %.1fs.",
                                    upstream_poller_get_host_port(p), strempty(reason),
                                    (double) m->config->probe_interval / USEC_PER_SEC);
                else
                        log_debug("Local Ollama still down (%u failed probes): %s", h->consecutive_failures,
                                  strempty(reason));
                (void) manager_node_set_up(m, m->local_id, false);
                router_gossip_local_changed(m);
                manager_update_status(m);
                return;
        }

        if (tags->truncated)
                log_warning("Local Ollama lists more than %u models; routing only the first ones.",
                            ROUTE_MAX_MODELS);
        if (tags->n_skipped > 0)
                log_debug("Skipped %zu entries of the model list (no usable name, or duplicates).",
                          tags->n_skipped);

        manager_batch_begin(m);
        r = manager_node_set_models(m, m->local_id, tags->models, tags->n_models);
        if (r < 0)
                log_warning_errno(r, "Failed to store the model list: %m");
        else if (r > 0)
                log_info("Local Ollama serves %zu model(s).", tags->n_models);
        (void) manager_node_set_up(m, m->local_id, true);
        manager_batch_end(m);
        router_gossip_local_changed(m);

        if (state_changed)
                log_notice("Local Ollama at %s is up.", upstream_poller_get_host_port(p));
        manager_update_status(m);
}

static int manager_request_name_cb(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        int r;

        r = bus_request_name_result(m->bus, reply, ROUTER1_BUS_NAME);
        if (r < 0)
                manager_exit(m, EXIT_FAILURE);
        if (r <= 0)
                return 0;

        if (m->ready) {
                log_info("Serving %s again.", ROUTER1_BUS_NAME);
                m->last_status[0] = '\0';
                manager_update_status(m);
                return 0;
        }
        m->ready = true;
        log_info("Serving %s at %s, policy %s, node %s (%s).", ROUTER1_BUS_NAME, ROUTER1_OBJECT_PATH,
                 route_policy_to_string(m->policy), m->local_name, m->local_id);
        manager_format_status(m, m->last_status, sizeof(m->last_status));
        daemon_notify_ready(m->last_status);
        return 0;
}

int manager_request_name(Manager *m) {
        int r;

        /* name_slot lives as long as the connection: once per connection. */
        if (!m->bus || m->name_slot)
                return 0;
        if (sd_bus_is_open(m->bus) <= 0)
                return 0;       /* closing: the next connection asks */
        r = sd_bus_request_name_async(m->bus, &m->name_slot, ROUTER1_BUS_NAME, 0, manager_request_name_cb, m);
        if (r < 0) {
                log_error_errno(r, "Failed to request the bus name %s: %m", ROUTER1_BUS_NAME);
                manager_exit(m, EXIT_FAILURE);
                return r;
        }
        bus_event_rearm(m->bus_event);
        return 0;
}

/* A connection to the bus (the first, or a new one after dbus-daemon came back): Router1, the
 * shim's and gossipd's names, the first read of Members (the name is requested after it). */
static int manager_bus_connected(BusEvent *b, sd_bus *bus, bool reconnected, void *userdata) {
        Manager *m = userdata;
        int r;

        m->bus_event = b;
        m->bus = bus;
        if (reconnected)
                log_info("Connected to the bus again; registering %s and reading %s.", ROUTER1_BUS_NAME,
                         GOSSIP1_BUS_NAME);

        r = manager_bus_register(m);
        if (r < 0)
                return log_full_errno(reconnected ? LOG_WARNING : LOG_ERR, r, "Failed to register %s: %m", ROUTER1_OBJECT_PATH);

        r = manager_bus_watch_shim(m);
        if (r < 0)
                return log_full_errno(reconnected ? LOG_WARNING : LOG_ERR, r, "Failed to watch %s on the bus: %m", SHIM1_BUS_NAME);

        /* The name is requested once the first read of Gossip1.Members ended (or failed):
         * a restarted routerd must not show the shim a table without its peers. */
        r = router_gossip_start(m);
        if (r < 0)
                return log_full_errno(reconnected ? LOG_WARNING : LOG_ERR, r, "Failed to watch %s on the bus: %m", GOSSIP1_BUS_NAME);
        return 0;
}

/* The table, the breakers and the upstream poller go on; nothing is said on the bus until it is
 * back. */
static void manager_bus_lost(void *userdata) {
        Manager *m = userdata;

        if (m->ready)
                log_warning("Lost the connection to the bus; keeping the routing table and reconnecting.");
        router_gossip_bus_lost(m);
        m->shim_match_slot = sd_bus_slot_unref(m->shim_match_slot);
        m->name_slot = sd_bus_slot_unref(m->name_slot);
        m->vtable_slot = sd_bus_slot_unref(m->vtable_slot);
        m->bus = NULL;
        m->bus_event = NULL;
}

static const BusReconnectOps manager_bus_ops = {
        .connected = manager_bus_connected,
        .lost = manager_bus_lost,
};

int manager_new(const MyceliaConfig *config, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->config = config;
        r = daemon_loop_new(0, &m->base, &m->loop);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the event loop: %m");
        route_table_init(&m->table);

        m->policy = route_policy_from_string(config->route_policy);
        if (m->policy < 0) {
                log_error("Invalid routing policy '%s' ([router] policy, --policy); expected one of: "
                          "gravity, round-robin, least-loaded, latency, local-first.",
                          strempty(config->route_policy));
                return -EINVAL;
        }
        if (config->tags_interval == 0 || config->probe_interval == 0 || config->connect_timeout == 0) {
                log_error("tags_interval, probe_interval and connect_timeout must be greater than 0.");
                return -EINVAL;
        }

        r = daemon_node_id_get(config->node_id, config->state_dir, m->local_id);
        if (r < 0)
                return r;
        r = node_name_get(config, &m->local_name);
        if (r < 0)
                return log_error_errno(r, "Failed to determine the node name: %m");

        m->emit_timer = evtimer_new(m->base, manager_emit_timer_cb, m);
        m->breaker_timer = evtimer_new(m->base, manager_breaker_timer_cb, m);
        if (!m->emit_timer || !m->breaker_timer || router_gossip_init(m) < 0)
                return log_oom();
        m->jitter_state = now_realtime_usec() ^ ((uint64_t) getpid() << 32);

        r = upstream_poller_new(m->base, config->upstream_url, config->connect_timeout, config->tags_interval,
                                config->probe_interval, manager_local_fetched, m, &m->local_upstream);
        if (r == -EINVAL)
                return log_error_errno(r, "Invalid upstream URL '%s' ([upstream] url, --upstream); expected http://HOST[:PORT][/PATH].",
                                       strempty(config->upstream_url));
        if (r < 0)
                return log_error_errno(r, "Failed to set up the upstream poller: %m");

        if (config->upstream_parallel == 0)
                return log_error_errno(-EINVAL, "[upstream] parallel must be at least 1.");
        r = manager_node_add(m, m->local_id, m->local_name, config->upstream_url, true);
        if (r < 0)
                return log_error_errno(r, "Failed to add the local node: %m");
        route_table_find(&m->table, m->local_id)->capacity = config->upstream_parallel;

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        upstream_poller_free(m->local_upstream);
        router_gossip_done(m);
        sd_bus_slot_unref(m->shim_match_slot);
        sd_bus_slot_unref(m->name_slot);
        sd_bus_slot_unref(m->vtable_slot);
        bus_reconnect_free(m->bus_reconnect);
        if (m->emit_timer)
                event_free(m->emit_timer);
        if (m->breaker_timer)
                event_free(m->breaker_timer);
        route_table_clear(&m->table);
        free(m->stats);
        free(m->local_name);
        daemon_loop_free(m->loop);
        if (m->base)
                event_base_free(m->base);
        free(m);
        return NULL;
}

int manager_start(Manager *m) {
        int r;

        r = daemon_bus_connect(m->base, m->config->bus_address, &manager_bus_ops, m, &m->bus_reconnect);
        if (r < 0)
                return r;

        r = upstream_poller_start(m->local_upstream);
        if (r < 0)
                return log_error_errno(r, "Failed to start polling the upstream: %m");
        return 0;
}

int manager_run(Manager *m) {
        /* Until SIGTERM/SIGINT (daemon_loop_new() breaks the loop and says STOPPING=1) or
         * manager_exit(). */
        if (event_base_dispatch(m->base) < 0)
                return log_error_errno(EIO, "The event loop failed.");
        if (m->exit_code == 0)
                log_info("Stopping.");
        return m->exit_code;
}
