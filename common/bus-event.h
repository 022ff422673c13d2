/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* sd-bus driven by a libevent event_base, so each daemon has exactly one loop. Also the
 * connection helper every daemon uses: open the configured bus, request the daemon's name. */
#pragma once

#include <event2/event.h>
#include <systemd/sd-bus.h>

#include "macro.h"

typedef struct BusEvent BusEvent;

/* Opens the bus at address (empty or NULL: the system bus, which honours
 * DBUS_SYSTEM_BUS_ADDRESS) and attaches it to base. */
int bus_event_open(struct event_base *base, const char *address, BusEvent **ret);
/* Attaches an already opened bus; takes a reference. */
int bus_event_attach(struct event_base *base, sd_bus *bus, BusEvent **ret);
BusEvent *bus_event_free(BusEvent *b);
DEFINE_TRIVIAL_CLEANUP_FUNC(BusEvent *, bus_event_free);

sd_bus *bus_event_get_bus(BusEvent *b);

/* Re-reads what sd-bus waits for (fd events, timeout) after the caller queued messages outside
 * a bus callback. Cheap; bus callbacks do it themselves. */
void bus_event_rearm(BusEvent *b);

/* Called once when the connection to the bus is lost, from inside the processing of b: the
 * callback must not free b (bus-reconnect.c defers that to the loop and connects anew). */
void bus_event_set_disconnect_cb(BusEvent *b, void (*cb)(void *userdata), void *userdata);


/* Reads the reply to an asynchronous RequestName made on bus (NULL once that connection was
 * dropped): 1 when the name is ours, 0 when the connection went while asking (nothing to do: the
 * next connection asks again), negative errno (logged) when the call failed or another process
 * owns it (daemons do not queue). */
int bus_request_name_result(sd_bus *bus, sd_bus_message *reply, const char *name);

/* Reads an "as" at the read position of m. The first max strings go to ret (borrowed: they live
 * as long as m); *ret_n says how many, *ret_total how many the array had, so the caller decides
 * whether more than max is an error or the rest is skipped. */
int bus_message_read_strv_bounded(sd_bus_message *m, const char **ret, size_t max, size_t *ret_n,
                                  size_t *ret_total);

/* Calls cb (asynchronously added match) with every NameOwnerChanged of the well-known name:
 * how a daemon notices a peer daemon appear, restart or go. */
int bus_match_name_owner(sd_bus *bus, sd_bus_slot **slot, const char *name, sd_bus_message_handler_t cb,
                         void *userdata);

static inline void bus_error_freep(sd_bus_error *e) {
        sd_bus_error_free(e);
}
#define _cleanup_bus_error_ _cleanup_(bus_error_freep)
