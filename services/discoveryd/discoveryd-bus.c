/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.mycelia.Discovery1 on the bus (dbus/org.mycelia.Discovery1.xml documents it), and what
 * discoveryd reads from org.mycelia.Gossip1: this node's LocalNode, for the ports to publish. */
#include "bus-process.h"
#include "discoveryd-manager.h"
#include "gossip-member.h"
#include "log.h"

static int append_peer_fields(sd_bus_message *reply, const Peer *p) {
        int r;

        r = sd_bus_message_append(reply, "ssss", strempty(p->id), p->name, peer_source_to_string(p->source),
                                  strempty(p->mesh));
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "s");
        if (r < 0)
                return r;
        for (size_t i = 0; i < p->n_gossip; i++) {
                r = sd_bus_message_append_basic(reply, 's', p->gossip[i]);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static int property_get_peers(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r;

        r = sd_bus_message_open_container(reply, 'a', "(ssssas)");
        if (r < 0)
                return r;
        for (size_t i = 0; i < m->peers.n_peers; i++) {
                r = sd_bus_message_open_container(reply, 'r', "ssssas");
                if (r < 0)
                        return r;
                r = append_peer_fields(reply, &m->peers.peers[i]);
                if (r < 0)
                        return r;
                r = sd_bus_message_close_container(reply);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

/* {source: peers}: every source, also those with none, so that a reader (GET /metrics of
 * mycelia-shimd) gets a few bytes where Peers would be up to PEERS_MAX records. */
static int property_get_peers_by_source(sd_bus *bus, const char *path, const char *interface, const char *property,
                                        sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        uint32_t n[_PEER_SOURCE_MAX] = {};
        int r;

        for (size_t i = 0; i < m->peers.n_peers; i++)
                if (m->peers.peers[i].source >= 0 && m->peers.peers[i].source < _PEER_SOURCE_MAX)
                        n[m->peers.peers[i].source]++;
        r = sd_bus_message_open_container(reply, 'a', "{su}");
        if (r < 0)
                return r;
        for (PeerSource s = 0; s < _PEER_SOURCE_MAX; s++) {
                r = sd_bus_message_append(reply, "{su}", peer_source_to_string(s), n[s]);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_close_container(reply);
}

static int property_get_published(sd_bus *bus, const char *path, const char *interface, const char *property,
                                  sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        return sd_bus_message_append(reply, "b", discovery_avahi_is_published(m->avahi));
}

static const sd_bus_vtable discovery_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Peers", "a(ssssas)", property_get_peers, 0, 0),
        SD_BUS_PROPERTY("Published", "b", property_get_published, 0, 0),
        SD_BUS_PROPERTY("PeersBySource", "a{su}", property_get_peers_by_source, 0, 0),
        SD_BUS_SIGNAL_WITH_ARGS("PeerDiscovered",
                                SD_BUS_ARGS("s", id, "s", name, "s", source, "s", mesh, "as", gossip), 0),
        SD_BUS_SIGNAL_WITH_ARGS("PeerVanished", SD_BUS_ARGS("s", id, "s", name, "s", source), 0),
        SD_BUS_VTABLE_END
};

int manager_bus_register(Manager *m) {
        int r;

        r = sd_bus_add_object_vtable(m->bus, &m->vtable_slot, DISCOVERY1_OBJECT_PATH, DISCOVERY1_INTERFACE, discovery_vtable, m);
        if (r < 0)
                return r;
        return bus_add_process_interface(m->bus, DISCOVERY1_OBJECT_PATH);
}

int manager_bus_emit_peer(Manager *m, PeerEvent event, const Peer *p) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        int r;

        if (!m->bus)
                return 0;
        r = sd_bus_message_new_signal(m->bus, &msg, DISCOVERY1_OBJECT_PATH, DISCOVERY1_INTERFACE,
                                      event == PEER_DISCOVERED ? "PeerDiscovered" : "PeerVanished");
        if (r < 0)
                return r;
        if (event == PEER_DISCOVERED)
                r = append_peer_fields(msg, p);
        else
                r = sd_bus_message_append(msg, "sss", strempty(p->id), p->name, peer_source_to_string(p->source));
        if (r < 0)
                return r;
        r = sd_bus_send(m->bus, msg, NULL);
        /* Outside a bus callback the message may sit in the write queue: re-arm for POLLOUT. */
        bus_event_rearm(m->bus_event);
        return r;
}

/* Reads a Gossip1 member "(ssassua{ss})" and, when it is this node, takes the gossip port of
 * addresses[0] and the port of metadata "mesh". */
static int manager_read_member(Manager *m, sd_bus_message *msg) {
        const char *mesh;
        uint16_t gossip_port = 0, mesh_port = 0;
        GossipMember g;
        int r;

        r = gossip_member_read(msg, &g);
        if (r <= 0)
                return r < 0 ? r : -EBADMSG;
        if (!strcaseeq(g.id, m->local_id))
                return 0;
        if (g.n_addresses > 0)
                (void) seed_split(g.addresses[0], NULL, &gossip_port);
        mesh = gossip_member_meta(&g, "mesh");
        if (mesh)
                (void) seed_split(mesh, NULL, &mesh_port);
        manager_set_gossip_ports(m, gossip_port, mesh_port);
        return 1;
}

static int local_node_reply_cb(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const sd_bus_error *e;
        int r;

        m->local_node_call = sd_bus_slot_unref(m->local_node_call);
        e = sd_bus_message_get_error(reply);
        if (e) {
                /* Not on the bus yet (or not at all): NameOwnerChanged and the poll catch up. */
                log_debug("Reading %s.LocalNode failed: %s", GOSSIP1_INTERFACE, e->message ?: e->name);
                return 0;
        }
        r = sd_bus_message_enter_container(reply, 'v', "(ssassua{ss})");
        if (r >= 0)
                r = manager_read_member(m, reply);
        if (r < 0)
                log_debug_errno(r, "Failed to parse %s.LocalNode: %m", GOSSIP1_INTERFACE);
        return 0;
}

int manager_bus_read_local_node(Manager *m) {
        int r;

        if (!m->bus || m->local_node_call)
                return 0;
        r = sd_bus_call_method_async(m->bus, &m->local_node_call, GOSSIP1_BUS_NAME, GOSSIP1_OBJECT_PATH,
                                     "org.freedesktop.DBus.Properties", "Get", local_node_reply_cb, m, "ss",
                                     GOSSIP1_INTERFACE, "LocalNode");
        bus_event_rearm(m->bus_event);
        return r;
}

static int match_gossip_owner_changed(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        const char *name, *old_owner, *new_owner;
        Manager *m = userdata;

        if (sd_bus_message_read(msg, "sss", &name, &old_owner, &new_owner) < 0)
                return 0;
        if (!streq(name, GOSSIP1_BUS_NAME) || isempty(new_owner))
                return 0;
        log_debug("%s appeared on the bus; reading LocalNode.", GOSSIP1_BUS_NAME);
        m->local_node_call = sd_bus_slot_unref(m->local_node_call);
        (void) manager_bus_read_local_node(m);
        return 0;
}

static int match_gossip_member(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *member = sd_bus_message_get_member(msg);
        int r;

        if (!member || !(streq(member, "MemberUpdated") || streq(member, "MemberJoined")))
                return 0;
        r = manager_read_member(m, msg);
        if (r < 0)
                log_debug_errno(r, "Failed to parse %s.%s: %m", GOSSIP1_INTERFACE, member);
        return 0;
}

int manager_bus_watch_gossip(Manager *m) {
        int r;

        r = bus_match_name_owner(m->bus, &m->gossip_owner_slot, GOSSIP1_BUS_NAME, match_gossip_owner_changed, m);
        if (r < 0)
                return r;
        return sd_bus_add_match_async(m->bus, &m->gossip_signal_slot,
                                      "type='signal',sender='" GOSSIP1_BUS_NAME "',path='" GOSSIP1_OBJECT_PATH "',"
                                      "interface='" GOSSIP1_INTERFACE "'",
                                      match_gossip_member, NULL, m);
}
