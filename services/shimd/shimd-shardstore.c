/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One way to call shardd for every handler that needs it (shimd-shardstore.h): collections,
 * blobs, and the blobs a create names; and one reader of its Collections property. */
#include <stdarg.h>

#include "bus-names.h"
#include "shimd-bus-reads.h"
#include "shimd-shardstore.h"

int shardstore_call(Manager *m, sd_bus_slot **ret_slot, const char *interface, const char *member,
                    sd_bus_message_handler_t cb, void *userdata, const char *types, ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        va_list ap;
        int r;

        if (!m->bus)
                return -ENOTCONN;
        r = sd_bus_message_new_method_call(m->bus, &msg, SHARDSTORE1_BUS_NAME, SHARDSTORE1_OBJECT_PATH, interface,
                                           member);
        if (r < 0)
                return r;
        /* shardd is started by systemd or the launcher, not by a client's request: when it is not
         * running the answer is an error at once (as the router cache does with routerd). */
        (void) sd_bus_message_set_auto_start(msg, false);
        va_start(ap, types);
        r = sd_bus_message_appendv(msg, types, ap);
        va_end(ap);
        if (r < 0)
                return r;
        r = sd_bus_call_async(m->bus, ret_slot, msg, cb, userdata, 0);
        if (r < 0)
                return r;
        bus_event_rearm(m->bus_event);
        return 0;
}

int shardstore_collections_read(sd_bus_message *reply, ShardStoreCollectionFn fn, void *userdata) {
        int r;

        r = bus_reply_enter_array(reply, "(sussuut)");
        while (r >= 0) {
                ShardStoreCollection c;

                r = sd_bus_message_read(reply, "(sussuut)", &c.name, &c.dimension, &c.metric, &c.model, &c.shards,
                                        &c.replicas, &c.documents);
                if (r <= 0)
                        break;
                r = fn(&c, userdata);
                if (r > 0)
                        return 0;
        }
        return r;
}
