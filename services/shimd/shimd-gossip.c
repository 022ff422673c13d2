/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tells org.mycelia.Gossip1 where this shim listens ("api", "mesh" metadata), at start and
 * whenever gossipd appears on the bus (a restarted gossipd starts with empty metadata), and reads
 * the mesh keyring again when gossipd says it changed (KeysChanged) or comes back. */
#include "gossip-member.h"
#include "log.h"
#include "shimd-manager.h"

/* "mesh" is removed ("") when the mesh listener is off: nothing can be forwarded here then. */
static void gossip_publish(Manager *m) {
        int r;

        if (!m->bus)
                return;
        r = gossip_set_local_metadata(m->bus, "api", strempty(m->api.address));
        if (r >= 0)
                r = gossip_set_local_metadata(m->bus, "mesh", m->mesh.http ? m->mesh.address : "");
        if (r < 0)
                log_debug_errno(r, "Failed to publish the listener addresses to %s: %m", GOSSIP1_BUS_NAME);
        bus_event_rearm(m->bus_event);
}

static int gossip_owner_changed_cb(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error) {
        const char *name, *old_owner, *new_owner;
        Manager *m = userdata;

        if (sd_bus_message_read(msg, "sss", &name, &old_owner, &new_owner) < 0 || !streq(name, GOSSIP1_BUS_NAME))
                return 0;
        if (!isempty(new_owner)) {
                log_debug("%s is on the bus; publishing api=%s mesh=%s.", GOSSIP1_BUS_NAME, m->api.address,
                          m->mesh.http ? m->mesh.address : "(off)");
                gossip_publish(m);
                /* It may have changed the keyring while the shim was not listening. */
                (void) manager_mesh_keys_reload(m);
        }
        return 0;
}

static int gossip_keys_changed_cb(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error) {
        (void) manager_mesh_keys_reload(userdata);
        return 0;
}

int manager_gossip_start(Manager *m) {
        int r;

        if (!m->bus)
                return 0;
        r = bus_match_name_owner(m->bus, &m->gossip_owner_slot, GOSSIP1_BUS_NAME, gossip_owner_changed_cb, m);
        if (r < 0)
                return r;
        r = sd_bus_match_signal_async(m->bus, &m->gossip_keys_slot, GOSSIP1_BUS_NAME, GOSSIP1_OBJECT_PATH,
                                      GOSSIP1_INTERFACE, "KeysChanged", gossip_keys_changed_cb, NULL, m);
        if (r < 0)
                return r;
        /* If gossipd is not there yet this fails quietly, and NameOwnerChanged says when it is. */
        gossip_publish(m);
        return 0;
}
