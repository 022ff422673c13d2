/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.mycelia.Shim1 at /org/mycelia/Shim1: the addresses the shim serves on, whether it has a
 * routing table, and its counters. Matches dbus/org.mycelia.Shim1.xml member for member. */
#include <stddef.h>

#include "bus-names.h"
#include "bus-process.h"
#include "log.h"
#include "shimd-auth.h"
#include "shimd-manager.h"

/* Kept by shimd-auth.c, not in the Manager. */
static int property_get_rejected_unauthorized(sd_bus *bus, const char *path, const char *interface,
                                              const char *property, sd_bus_message *reply, void *userdata,
                                              sd_bus_error *error) {
        return sd_bus_message_append(reply, "t", shim_auth_rejected_unauthorized());
}

/* The mesh listener's TLS handshakes refused (no or another key), and ours refused by peers;
 * 0 without a mesh key (no TLS). */
static int property_get_mesh_tls(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const MeshTlsCounters *c = m->creds.tls ? mesh_tls_counters(m->creds.tls) : NULL;

        return sd_bus_message_append(reply, "t", !c ? 0 : streq(property, "MeshTlsRefused") ? c->refused : c->failed);
}

/* Properties without a getter are read from the Manager at the given offset; sd-bus reads "s"
 * as char*, "b" as int, "u" as uint32_t, "t" as uint64_t. Flags 0 introspect as
 * EmitsChangedSignal "false": counters are read on demand. */
static const sd_bus_vtable shim_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("ApiAddress", "s", NULL, offsetof(Manager, api.address), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("MeshAddress", "s", NULL, offsetof(Manager, mesh.address), SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("RouterConnected", "b", NULL, offsetof(Manager, router_connected), 0),
        SD_BUS_PROPERTY("RequestsTotal", "t", NULL, offsetof(Manager, counters.requests_total), 0),
        SD_BUS_PROPERTY("RequestsActive", "u", NULL, offsetof(Manager, requests_active), 0),
        SD_BUS_PROPERTY("RequestsFailed", "t", NULL, offsetof(Manager, counters.requests_failed), 0),
        SD_BUS_PROPERTY("RejectedBusy", "t", NULL, offsetof(Manager, counters.rejected_busy), 0),
        SD_BUS_PROPERTY("RejectedTooLarge", "t", NULL, offsetof(Manager, counters.rejected_too_large), 0),
        SD_BUS_PROPERTY("RejectedUnauthenticated", "t", NULL, offsetof(Manager, counters.rejected_unauthenticated), 0),
        SD_BUS_PROPERTY("RejectedUnauthorized", "t", property_get_rejected_unauthorized, 0, 0),
        SD_BUS_PROPERTY("ClientCancelled", "t", NULL, offsetof(Manager, counters.client_cancelled), 0),
        SD_BUS_PROPERTY("UpstreamErrors", "t", NULL, offsetof(Manager, counters.upstream_errors), 0),
        SD_BUS_PROPERTY("CoolingWaits", "t", NULL, offsetof(Manager, counters.cooling_waits), 0),
        SD_BUS_PROPERTY("BytesToClients", "t", NULL, offsetof(Manager, counters.bytes_to_clients), 0),
        SD_BUS_PROPERTY("Connections", "u", NULL, offsetof(Manager, clients_open), 0),
        SD_BUS_PROPERTY("MeshTlsRefused", "t", property_get_mesh_tls, 0, 0),
        SD_BUS_PROPERTY("MeshTlsFailed", "t", property_get_mesh_tls, 0, 0),
        SD_BUS_PROPERTY("AcceptPaused", "t", NULL, offsetof(Manager, counters.accept_paused), 0),
        SD_BUS_PROPERTY("ClientsTimedOut", "t", NULL, offsetof(Manager, counters.clients_timed_out), 0),
        SD_BUS_VTABLE_END,
};

_Static_assert(sizeof(((Manager *) NULL)->requests_active) == sizeof(uint32_t), "RequestsActive is read as u");
_Static_assert(sizeof(((Manager *) NULL)->clients_open) == sizeof(uint32_t), "Connections is read as u");
_Static_assert(sizeof(((Manager *) NULL)->router_connected) == sizeof(int), "RouterConnected is read as b");

static int manager_request_name_cb(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;

        /* Taken by another process: this one serves on without the name (the front door never
         * depends on the bus). bus_request_name_result() logged it. */
        if (bus_request_name_result(m->bus, reply, SHIM1_BUS_NAME) > 0)
                log_info("Serving %s again.", SHIM1_BUS_NAME);
        return 0;
}

int manager_bus_publish(Manager *m, bool reconnected) {
        int r;

        r = sd_bus_add_object_vtable(m->bus, &m->vtable_slot, SHIM1_OBJECT_PATH, SHIM1_INTERFACE, shim_vtable, m);
        if (r >= 0)
                r = bus_add_process_interface(m->bus, SHIM1_OBJECT_PATH);
        if (r < 0)
                return log_full_errno(reconnected ? LOG_WARNING : LOG_ERR, r, "Failed to add the %s object: %m", SHIM1_BUS_NAME);
        if (reconnected)
                r = sd_bus_request_name_async(m->bus, &m->name_slot, SHIM1_BUS_NAME, 0, manager_request_name_cb, m);
        else
                r = sd_bus_request_name(m->bus, SHIM1_BUS_NAME, 0);
        if (r < 0)
                return log_full_errno(reconnected ? LOG_WARNING : LOG_ERR, r, "Failed to acquire the bus name %s: %m", SHIM1_BUS_NAME);
        return 0;
}
