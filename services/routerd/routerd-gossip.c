/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Gossip1 client of mycelia-routerd: NameOwnerChanged, Members, Loads, the Member* signals and
 * LoadsChanged feed the routing table; SetLocalMetadata publishes models and capacity,
 * SetLocalLoad this node's load. All calls are asynchronous; when gossipd is away the last peers
 * are kept and everything is re-read when it is back. */
#include <inttypes.h>
#include <stdio.h>

#include "log.h"
#include "routerd-manager.h"

static void timeval_from_usec(struct timeval *tv, usec_t u) {
        tv->tv_sec = (time_t) (u / USEC_PER_SEC);
        tv->tv_usec = (suseconds_t) (u % USEC_PER_SEC);
}

/* ---- the table side (no bus) ---- */

int router_gossip_apply(Manager *m, const GossipMember *g, bool removed) {
        _cleanup_(gossip_route_done) GossipRoute route = {};
        const char *reason = "left or failed";
        RouteNode *n;
        bool was_up;
        int r = 0;

        if (isempty(g->id) || streq(g->id, m->local_id))
                return 0;
        n = route_table_find(&m->table, g->id);
        was_up = n && n->up;
        /* Gone: its load went with it (gossipd forgets it too; a rejoin brings a new one). */
        if (removed || (g->state && (streq(g->state, "dead") || streq(g->state, "left"))))
                (void) gossip_loads_remove(&m->gossip.loads, g->id);

        if (!removed) {
                r = gossip_member_route(g, &route, &reason);
                if (r < 0)
                        return r;
                if (r > 0)
                        gossip_route_set_load(&route, gossip_loads_find(&m->gossip.loads, g->id));
        }
        if (r == 0) {
                if (n && manager_node_remove(m, g->id) > 0)
                        log_info("Peer %s (%s) is out of the routing table: %s.", strempty(g->name), g->id, reason);
                else
                        log_debug("Peer %s (%s) not routable: %s.", strempty(g->name), g->id, reason);
                return 0;
        }

        r = manager_node_set_remote(m, g->id, g->name, route.address, route.models, route.n_models, route.up,
                                    route.in_flight, route.capacity);
        if (r < 0)
                return log_warning_errno(r, "Failed to add peer %s (%s) to the routing table: %m",
                                         strempty(g->name), g->id);
        if (!n)
                log_info("Peer %s (%s) at %s: %s, %zu model(s).", strempty(g->name), g->id, route.address,
                         route.up ? "up" : "down (suspect)", route.n_models);
        else if (was_up != route.up)
                log_info("Peer %s (%s) is %s.", strempty(g->name), g->id,
                         route.up ? "up again" : "suspected down; routing around it");
        return 1;
}

void router_gossip_sweep(Manager *m, char (*seen)[NODE_ID_LEN + 1], size_t n_seen) {
        for (size_t i = 0; i < m->table.n_nodes;) {
                RouteNode *n = &m->table.nodes[i];
                bool found = n->local;

                for (size_t j = 0; !found && j < n_seen; j++)
                        found = streq(seen[j], n->id);
                if (found) {
                        i++;
                        continue;
                }
                log_info("Peer %s (%s) is no longer a member; out of the routing table.", n->name, n->id);
                (void) gossip_loads_remove(&m->gossip.loads, n->id);
                (void) manager_node_remove(m, n->id);
        }
}

int router_gossip_apply_load(Manager *m, const char *id, uint64_t in_flight, uint64_t capacity) {
        const GossipLoad *l;
        RouteNode *n;
        int r;

        if (isempty(id) || streq(id, m->local_id))
                return 0;
        r = gossip_loads_set(&m->gossip.loads, id, in_flight, capacity);
        if (r <= 0)
                return r;
        m->gossip.n_loads++;
        n = route_table_find(&m->table, id);
        if (!n || n->local)
                return 1;       /* kept for when it is routable */
        l = gossip_loads_find(&m->gossip.loads, id);
        /* Everything else as it is: only in_flight and capacity change. */
        r = manager_node_set_remote(m, id, n->name, n->address, n->models, n->n_models, n->up, l->in_flight,
                                    l->capacity);
        return r < 0 ? r : 1;
}

/* ---- reading members from the bus ---- */

/* Replaces the peers of the table with the members of a Members value (variant opened). */
static int gossip_sync(Manager *m, sd_bus_message *msg) {
        _cleanup_free_ char (*seen)[NODE_ID_LEN + 1] = NULL;
        GossipMember *g = NULL;
        size_t n_seen = 0;
        int r;

        seen = calloc(ROUTER_GOSSIP_MEMBERS_MAX, sizeof(*seen));
        g = malloc(sizeof(*g));
        if (!seen || !g) {
                free(g);
                return -ENOMEM;
        }
        r = sd_bus_message_enter_container(msg, 'a', "(ssassua{ss})");
        if (r < 0)
                goto finish;

        manager_batch_begin(m);
        while ((r = gossip_member_read(msg, g)) > 0) {
                if (n_seen >= ROUTER_GOSSIP_MEMBERS_MAX)
                        continue;
                if (router_gossip_apply(m, g, false) > 0)
                        snprintf(seen[n_seen++], sizeof(seen[0]), "%s", g->id);
        }
        /* A bad reply changes nothing further: peers it did not list are only dropped after a
         * complete read. */
        if (r >= 0)
                router_gossip_sweep(m, seen, n_seen);
        manager_batch_end(m);
        if (r >= 0)
                r = sd_bus_message_exit_container(msg);
finish:
        free(g);
        return r;
}

/* Applies an a(suut) of loads (the variant already opened), in one batch. */
static int gossip_read_loads(Manager *m, sd_bus_message *msg) {
        GossipMemberLoad l;
        int r;

        r = sd_bus_message_enter_container(msg, 'a', GOSSIP_LOAD_SIGNATURE);
        if (r < 0)
                return r;
        manager_batch_begin(m);
        while ((r = gossip_member_load_read(msg, &l)) > 0) {
                int k = router_gossip_apply_load(m, l.id, l.in_flight, l.capacity);

                if (k < 0)
                        log_debug_errno(k, "Ignoring the load of %s: %m", l.id);
        }
        manager_batch_end(m);
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(msg);
}

static int gossip_get_loads_cb(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const sd_bus_error *e;
        int r;

        m->gossip.loads_slot = sd_bus_slot_unref(m->gossip.loads_slot);
        e = sd_bus_message_get_error(reply);
        if (e) {
                /* A gossipd of an earlier version has no Loads: metadata in_flight it is. */
                log_debug("Cannot read %s Loads: %s", GOSSIP1_BUS_NAME, e->message ?: e->name);
                return 0;
        }
        r = sd_bus_message_enter_container(reply, 'v', "a" GOSSIP_LOAD_SIGNATURE);
        if (r >= 0)
                r = gossip_read_loads(m, reply);
        if (r < 0)
                log_debug_errno(r, "Failed to read the loads from %s: %m", GOSSIP1_BUS_NAME);
        return 0;
}

/* After Members: LoadsChanged only tells changes, so the loads heard so far are read once. */
static int gossip_get_loads(Manager *m) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        int r;

        m->gossip.loads_slot = sd_bus_slot_unref(m->gossip.loads_slot);
        r = sd_bus_message_new_method_call(m->bus, &msg, GOSSIP1_BUS_NAME, GOSSIP1_OBJECT_PATH,
                                           "org.freedesktop.DBus.Properties", "Get");
        if (r < 0)
                return r;
        (void) sd_bus_message_set_auto_start(msg, false);
        r = sd_bus_message_append(msg, "ss", GOSSIP1_INTERFACE, "Loads");
        if (r < 0)
                return r;
        r = sd_bus_call_async(m->bus, &m->gossip.loads_slot, msg, gossip_get_loads_cb, m,
                              ROUTER_GOSSIP_GET_TIMEOUT_USEC);
        if (r < 0)
                return r;
        bus_event_rearm(m->bus_event);
        return 0;
}

/* ---- publishing ---- */

static int gossip_publish(Manager *m, const char *key, const char *value) {
        int r;

        if (!m->bus)
                return 0;
        r = gossip_set_local_metadata(m->bus, key, value);
        if (r < 0)
                return r;
        m->gossip.n_publishes++;
        bus_event_rearm(m->bus_event);
        return 0;
}

/* "models": the local model names while the local Ollama is up, "" (removed) while it is not,
 * so that peers do not forward to a node that cannot serve. */
static void gossip_publish_models(Manager *m, bool force) {
        _cleanup_free_ char *value = NULL;
        RouteNode *n = route_table_find(&m->table, m->local_id);
        bool truncated = false;
        int r;

        if (!m->gossip.present || !n)
                return;
        if (n->up)
                r = gossip_models_format(n->models, n->n_models, &value, &truncated);
        else
                r = (value = strdup("")) ? 0 : -ENOMEM;
        if (r < 0) {
                log_oom();
                return;
        }
        if (!force && m->gossip.published_models && streq(m->gossip.published_models, value))
                return;
        if (truncated)
                log_warning("The model list is longer than %u bytes; peers learn only the first models.",
                            GOSSIP_MODELS_META_MAX);
        r = gossip_publish(m, "models", value);
        if (r < 0) {
                log_debug_errno(r, "Failed to publish the model list: %m");
                return;
        }
        free(m->gossip.published_models);
        m->gossip.published_models = TAKE_PTR(value);
}

/* The load goes with SetLocalLoad, outside the versioned metadata: as metadata, every change was
 * news gossiped to every node, so traffic under load grew with the size of the mesh
 * (docs/router-gossip.md). */
static void gossip_publish_load(Manager *m, bool force) {
        RouteNode *n = route_table_find(&m->table, m->local_id);
        char buf[16];
        int r;

        if (!m->gossip.present || !n || !m->bus)
                return;
        if (force || !m->gossip.load_published || n->in_flight != m->gossip.published_in_flight ||
            n->capacity != m->gossip.published_capacity) {
                r = gossip_set_local_load(m->bus, n->in_flight, n->capacity);
                if (r < 0)
                        log_debug_errno(r, "Failed to publish this node's load: %m");
                else {
                        m->gossip.load_published = true;
                        m->gossip.published_in_flight = n->in_flight;
                        m->gossip.published_capacity = n->capacity;
                        m->gossip.n_load_publishes++;
                        bus_event_rearm(m->bus_event);
                }
        }
        /* Capacity also as metadata: it changes with the configuration only, and nodes of
         * earlier versions read nothing else. */
        if (force || !m->gossip.capacity_published || n->capacity != m->gossip.published_meta_capacity) {
                snprintf(buf, sizeof(buf), "%u", n->capacity);
                if (gossip_publish(m, "capacity", buf) >= 0) {
                        m->gossip.capacity_published = true;
                        m->gossip.published_meta_capacity = n->capacity;
                }
        }
        /* A routerd of an earlier version may have left in_flight in this gossipd's metadata;
         * removing a key that is not there costs gossipd nothing. */
        if (force)
                (void) gossip_publish(m, "in_flight", "");
}

static void gossip_load_timer_cb(evutil_socket_t fd, short what, void *userdata) {
        gossip_publish_load(userdata, false);
}

void router_gossip_local_changed(Manager *m) {
        gossip_publish_models(m, false);
}

/* gossipd is there (again): it may have started empty, so everything is said anew. */
static void gossip_appeared(Manager *m) {
        struct timeval tv;

        m->gossip.present = true;
        gossip_publish_models(m, true);
        gossip_publish_load(m, true);
        timeval_from_usec(&tv, ROUTER_GOSSIP_LOAD_INTERVAL_USEC);
        (void) event_add(m->gossip.load_timer, &tv);
}

static void gossip_vanished(Manager *m) {
        m->gossip.present = false;
        m->gossip.get_slot = sd_bus_slot_unref(m->gossip.get_slot);
        /* If that was the first read, its answer will not come: serve without it. */
        (void) manager_request_name(m);
        m->gossip.loads_slot = sd_bus_slot_unref(m->gossip.loads_slot);
        (void) event_del(m->gossip.load_timer);
        free(m->gossip.published_models);
        m->gossip.published_models = NULL;
        m->gossip.load_published = false;
        m->gossip.capacity_published = false;
}

/* ---- bus callbacks ---- */

static int gossip_get_members_cb(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const sd_bus_error *e;
        int r;

        m->gossip.get_slot = sd_bus_slot_unref(m->gossip.get_slot);
        /* The first read is over, whatever it brought: routerd may serve now. */
        (void) manager_request_name(m);
        e = sd_bus_message_get_error(reply);
        if (e) {
                /* Not there (yet): NameOwnerChanged will say when it is. */
                log_debug("Cannot read %s Members: %s", GOSSIP1_BUS_NAME, e->message ?: e->name);
                return 0;
        }
        r = sd_bus_message_enter_container(reply, 'v', "a(ssassua{ss})");
        if (r >= 0)
                r = gossip_sync(m, reply);
        if (r < 0) {
                log_warning_errno(r, "Failed to read the members from %s: %m", GOSSIP1_BUS_NAME);
                return 0;
        }
        m->gossip.n_syncs++;
        log_debug("Read the members from %s: %zu node(s) in the routing table.", GOSSIP1_BUS_NAME,
                  m->table.n_nodes);
        if (!m->gossip.present)
                gossip_appeared(m);
        r = gossip_get_loads(m);
        if (r < 0)
                log_debug_errno(r, "Failed to ask %s for the loads: %m", GOSSIP1_BUS_NAME);
        return 0;
}

static int gossip_get_members(Manager *m) {
        int r;

        r = gossip_get_members_async(m->bus, &m->gossip.get_slot, gossip_get_members_cb, m, ROUTER_GOSSIP_GET_TIMEOUT_USEC);
        if (r < 0)
                return r;
        bus_event_rearm(m->bus_event);
        return 0;
}

static int gossip_owner_changed_cb(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error) {
        const char *name, *old_owner, *new_owner;
        Manager *m = userdata;
        int r;

        r = sd_bus_message_read(msg, "sss", &name, &old_owner, &new_owner);
        if (r < 0 || !streq(name, GOSSIP1_BUS_NAME))
                return 0;
        if (isempty(new_owner)) {
                log_info("%s left the bus; routing to the last known peers until it is back.", GOSSIP1_BUS_NAME);
                gossip_vanished(m);
                return 0;
        }
        log_info("%s is on the bus; reading members and publishing this node's models.", GOSSIP1_BUS_NAME);
        gossip_appeared(m);
        r = gossip_get_members(m);
        if (r < 0)
                log_warning_errno(r, "Failed to ask %s for its members: %m", GOSSIP1_BUS_NAME);
        return 0;
}

static int gossip_signal_cb(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error) {
        const char *member = sd_bus_message_get_member(msg);
        Manager *m = userdata;
        GossipMember g;
        bool removed;
        int r;

        if (!member)
                return 0;
        if (streq(member, "LoadsChanged")) {
                r = gossip_read_loads(m, msg);
                if (r < 0)
                        log_debug_errno(r, "Ignoring a malformed LoadsChanged signal: %m");
                return 0;
        }
        if (gossip_member_signal_read(msg, &g, &removed) <= 0)
                return 0;
        m->gossip.n_events++;
        manager_batch_begin(m);
        (void) router_gossip_apply(m, &g, removed);
        manager_batch_end(m);
        return 0;
}

/* ---- life cycle ---- */

int router_gossip_init(Manager *m) {
        m->gossip.load_timer = event_new(m->base, -1, EV_PERSIST, gossip_load_timer_cb, m);
        return m->gossip.load_timer ? 0 : -ENOMEM;
}

void router_gossip_done(Manager *m) {
        m->gossip.get_slot = sd_bus_slot_unref(m->gossip.get_slot);
        m->gossip.loads_slot = sd_bus_slot_unref(m->gossip.loads_slot);
        gossip_loads_done(&m->gossip.loads);
        m->gossip.signal_slot = sd_bus_slot_unref(m->gossip.signal_slot);
        m->gossip.owner_slot = sd_bus_slot_unref(m->gossip.owner_slot);
        if (m->gossip.load_timer)
                event_free(m->gossip.load_timer);
        m->gossip.load_timer = NULL;
        free(m->gossip.published_models);
        m->gossip.published_models = NULL;
}

void router_gossip_bus_lost(Manager *m) {
        m->gossip.present = false;
        m->gossip.get_slot = sd_bus_slot_unref(m->gossip.get_slot);
        m->gossip.loads_slot = sd_bus_slot_unref(m->gossip.loads_slot);
        m->gossip.signal_slot = sd_bus_slot_unref(m->gossip.signal_slot);
        m->gossip.owner_slot = sd_bus_slot_unref(m->gossip.owner_slot);
        (void) event_del(m->gossip.load_timer);
        free(m->gossip.published_models);
        m->gossip.published_models = NULL;
        m->gossip.load_published = false;
        m->gossip.capacity_published = false;
}

int router_gossip_start(Manager *m) {
        int r;

        r = bus_match_name_owner(m->bus, &m->gossip.owner_slot, GOSSIP1_BUS_NAME, gossip_owner_changed_cb, m);
        if (r < 0)
                return r;
        r = sd_bus_match_signal_async(m->bus, &m->gossip.signal_slot, GOSSIP1_BUS_NAME, GOSSIP1_OBJECT_PATH,
                                      GOSSIP1_INTERFACE, NULL, gossip_signal_cb, NULL, m);
        if (r < 0)
                return r;
        /* Sent after the matches, so gossipd appearing after this fails is still seen. */
        r = gossip_get_members(m);
        if (r < 0) {
                log_warning_errno(r, "Failed to ask %s for its members: %m", GOSSIP1_BUS_NAME);
                return manager_request_name(m);
        }
        return 0;
}
