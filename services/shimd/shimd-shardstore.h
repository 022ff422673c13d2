/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Calls to org.mycelia.ShardStore1 (shardd) from the shim's handlers: asynchronous, on the
 * Manager's bus, never starting shardd (it is started by systemd or the launcher). */
#pragma once

#include <systemd/sd-bus.h>

#include "shimd-manager.h"

/* Sends member of interface on shardd's object with the arguments types describes; cb gets the
 * reply (or the error) with userdata; *ret_slot holds the call (unreferencing it cancels the
 * answer). -ENOTCONN when the shim runs without a bus. */
int shardstore_call(Manager *m, sd_bus_slot **ret_slot, const char *interface, const char *member,
                    sd_bus_message_handler_t cb, void *userdata, const char *types, ...);

/* One entry of ShardStore1.Collections, a(sussuut); the strings live in the reply. */
typedef struct ShardStoreCollection {
        const char *name;
        uint32_t dimension;
        const char *metric;
        const char *model;
        uint32_t shards, replicas;
        uint64_t documents;
} ShardStoreCollection;

/* 0: on to the next entry; > 0: stop here; < 0: stop, and the walk returns it. */
typedef int (*ShardStoreCollectionFn)(const ShardStoreCollection *c, void *userdata);

/* Reads the value of a Properties.Get of ShardStore1.Collections: each entry to fn. 0 at the end
 * (or where fn stopped), a negative errno from sd-bus or fn. */
int shardstore_collections_read(sd_bus_message *reply, ShardStoreCollectionFn fn, void *userdata);
