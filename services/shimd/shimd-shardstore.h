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
