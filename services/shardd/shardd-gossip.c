/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Gossip1 client of mycelia-shardd: the members that run shardd (metadata "shard", the
 * address of their transfer listener), from Members at start and whenever gossipd comes back, and
 * from the Member* signals in between. This node's own entry is always there. Each change calls
 * manager_members_changed(), which decides what moves (docs/shardd.md). */
#include "bus-names.h"
#include "gossip-member.h"
#include "log.h"
#include "shardd-gossip.h"
#include "shardd-manager.h"

#define GOSSIP_GET_TIMEOUT_USEC (5 * USEC_PER_SEC)

/* Applies one member; returns > 0 when the members changed. */
static int gossip_apply(Manager *m, const GossipMember *g, bool removed) {
        const char *shard = gossip_member_meta(g, "shard");
        char url[128];

        if (!g->id || streq(g->id, m->node_id))
                return 0;       /* this node's entry is ours, not gossip's */
        if (removed || !shard || !g->state || !(streq(g->state, "alive") || streq(g->state, "suspect")))
                return shard_members_remove(&m->members, g->id);
        if (gossip_meta_url(shard, g->n_addresses > 0 ? g->addresses[0] : NULL, url, sizeof(url)) < 0) {
                log_debug("Member %s advertises an unusable shard address '%s'; ignoring it.", g->id, shard);
                return shard_members_remove(&m->members, g->id);
        }
        return shard_members_set(&m->members, g->id, url, streq(g->state, "alive"));
}

static int gossip_publish(Manager *m) {
        const char *address = !isempty(m->config->shard_advertise) ? m->config->shard_advertise : m->peer_address;
        int r;

        if (!m->bus)
                return 0;
        r = gossip_set_local_metadata(m->bus, "shard", strempty(address));
        if (r < 0)
                return r;
        bus_event_rearm(m->bus_event);
        return 0;
}

static int gossip_get_members_cb(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const sd_bus_error *e;
        bool seen_changed = false;
        int r;

        m->gossip_get_slot = sd_bus_slot_unref(m->gossip_get_slot);
        e = sd_bus_message_get_error(reply);
        if (e) {
                log_debug("Cannot read %s Members: %s", GOSSIP1_BUS_NAME, e->message ?: e->name);
                return 0;
        }
        r = sd_bus_message_enter_container(reply, 'v', "a" GOSSIP_MEMBER_SIGNATURE);
        if (r >= 0)
                r = sd_bus_message_enter_container(reply, 'a', GOSSIP_MEMBER_SIGNATURE);
        if (r < 0) {
                log_warning_errno(r, "Failed to read the members from %s: %m", GOSSIP1_BUS_NAME);
                return 0;
        }
        /* Members is the whole truth: peers not in it are gone. */
        {
                ShardMembers old = m->members;
                GossipMember g;

                m->members = (ShardMembers) {};
                (void) shard_members_set(&m->members, m->node_id, m->self_url, true);
                while ((r = gossip_member_read(reply, &g)) > 0)
                        (void) gossip_apply(m, &g, false);
                seen_changed = old.n_peers != m->members.n_peers;
                for (size_t i = 0; !seen_changed && i < old.n_peers; i++) {
                        const ShardPeer *p = shard_members_find(&m->members, old.peers[i].id);

                        seen_changed = !p || p->alive != old.peers[i].alive || !streq(p->url, old.peers[i].url);
                }
                m->members.generation = old.generation + seen_changed;
                shard_members_done(&old);
        }
        if (r < 0)
                log_warning_errno(r, "Failed to read a member from %s: %m", GOSSIP1_BUS_NAME);
        log_debug("Read the members from %s: %zu run shardd.", GOSSIP1_BUS_NAME, m->members.n_peers);
        if (seen_changed)
                manager_members_changed(m);
        return 0;
}

static int gossip_get_members(Manager *m) {
        int r;

        if (!m->bus)
                return 0;
        r = gossip_get_members_async(m->bus, &m->gossip_get_slot, gossip_get_members_cb, m, GOSSIP_GET_TIMEOUT_USEC);
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
        if (r < 0 || !streq(name, GOSSIP1_BUS_NAME) || isempty(new_owner))
                return 0;       /* gone: keep the last members until it is back */
        log_info("%s is on the bus; publishing this node's shard address and reading members.", GOSSIP1_BUS_NAME);
        r = gossip_publish(m);
        if (r < 0)
                log_warning_errno(r, "Failed to publish this node's shard address: %m");
        r = gossip_get_members(m);
        if (r < 0)
                log_warning_errno(r, "Failed to ask %s for its members: %m", GOSSIP1_BUS_NAME);
        /* It may have changed the keyring while shardd was not listening. */
        (void) manager_mesh_keys_reload(m);
        return 0;
}

static int gossip_signal_cb(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        GossipMember g;
        bool removed;
        int r;

        if (sd_bus_message_is_signal(msg, GOSSIP1_INTERFACE, "KeysChanged") > 0) {
                (void) manager_mesh_keys_reload(m);
                return 0;
        }
        if (gossip_member_signal_read(msg, &g, &removed) <= 0)
                return 0;
        r = gossip_apply(m, &g, removed);
        if (r < 0)
                log_debug_errno(r, "Ignoring member %s: %m", strempty(g.id));
        if (r > 0)
                manager_members_changed(m);
        return 0;
}

int shardd_gossip_start(Manager *m) {
        int r;

        r = shard_members_set(&m->members, m->node_id, m->self_url, true);
        if (r < 0)
                return r;
        r = bus_match_name_owner(m->bus, &m->gossip_owner_slot, GOSSIP1_BUS_NAME, gossip_owner_changed_cb, m);
        if (r < 0)
                return r;
        r = sd_bus_match_signal_async(m->bus, &m->gossip_signal_slot, GOSSIP1_BUS_NAME, GOSSIP1_OBJECT_PATH,
                                      GOSSIP1_INTERFACE, NULL, gossip_signal_cb, NULL, m);
        if (r < 0)
                return r;
        /* Both after the matches: gossipd appearing in between is still seen. */
        (void) gossip_publish(m);
        r = gossip_get_members(m);
        if (r < 0)
                log_debug_errno(r, "Failed to ask %s for its members: %m", GOSSIP1_BUS_NAME);
        return 0;
}

void shardd_gossip_bus_lost(Manager *m) {
        m->gossip_get_slot = sd_bus_slot_unref(m->gossip_get_slot);
        m->gossip_signal_slot = sd_bus_slot_unref(m->gossip_signal_slot);
        m->gossip_owner_slot = sd_bus_slot_unref(m->gossip_owner_slot);
}

void shardd_gossip_done(Manager *m) {
        shardd_gossip_bus_lost(m);
        shard_members_done(&m->members);
}
