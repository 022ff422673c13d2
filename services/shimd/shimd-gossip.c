/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Tells org.mycelia.Gossip1 where this shim listens ("api", "mesh" metadata), at start and
 * whenever gossipd appears on the bus (a restarted gossipd starts with empty metadata). */
#include "log.h"
#include "shimd-manager.h"

#define GOSSIP_NAME "org.mycelia.Gossip1"
#define GOSSIP_PATH "/org/mycelia/Gossip1"
#define GOSSIP_IFACE "org.mycelia.Gossip1"

static int gossip_reply_cb(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (e)
                log_debug("%s.SetLocalMetadata failed: %s", GOSSIP_NAME, e->message ?: e->name);
        return 0;
}

static int gossip_set(Manager *m, const char *key, const char *value) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        int r;

        r = sd_bus_message_new_method_call(m->bus, &msg, GOSSIP_NAME, GOSSIP_PATH, GOSSIP_IFACE, "SetLocalMetadata");
        if (r < 0)
                return r;
        /* gossipd is started by systemd or the launcher, never by this call. */
        (void) sd_bus_message_set_auto_start(msg, false);
        r = sd_bus_message_append(msg, "ss", key, value);
        if (r < 0)
                return r;
        return sd_bus_call_async(m->bus, NULL, msg, gossip_reply_cb, NULL, 0);
}

/* "mesh" is removed ("") when the mesh listener is off: nothing can be forwarded here then. */
static void gossip_publish(Manager *m) {
        int r;

        if (!m->bus)
                return;
        r = gossip_set(m, "api", strempty(m->api.address));
        if (r >= 0)
                r = gossip_set(m, "mesh", m->mesh.http ? m->mesh.address : "");
        if (r < 0)
                log_debug_errno(r, "Failed to publish the listener addresses to %s: %m", GOSSIP_NAME);
        bus_event_rearm(m->bus_event);
}

static int gossip_owner_changed_cb(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error) {
        const char *name, *old_owner, *new_owner;
        Manager *m = userdata;

        if (sd_bus_message_read(msg, "sss", &name, &old_owner, &new_owner) < 0 || !streq(name, GOSSIP_NAME))
                return 0;
        if (!isempty(new_owner)) {
                log_debug("%s is on the bus; publishing api=%s mesh=%s.", GOSSIP_NAME, m->api.address,
                          m->mesh.http ? m->mesh.address : "(off)");
                gossip_publish(m);
        }
        return 0;
}

int manager_gossip_start(Manager *m) {
        int r;

        if (!m->bus)
                return 0;
        r = bus_match_name_owner(m->bus, &m->gossip_owner_slot, GOSSIP_NAME, gossip_owner_changed_cb, m);
        if (r < 0)
                return r;
        /* If gossipd is not there yet this fails quietly, and NameOwnerChanged says when it is. */
        gossip_publish(m);
        return 0;
}
