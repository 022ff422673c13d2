/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Keeps a daemon on the bus when dbus-daemon restarts: connects, and after a loss frees the old
 * connection and connects again with backoff, calling the daemon back on every new connection. */
#pragma once

#include <stdbool.h>

#include "bus-event.h"

/* Retries after a loss wait 100 ms, doubling up to 5 s, each minus up to a quarter at random. */
#define BUS_RECONNECT_DELAY_MIN_USEC (100 * USEC_PER_MSEC)
#define BUS_RECONNECT_DELAY_MAX_USEC (5 * USEC_PER_SEC)

typedef struct BusReconnect BusReconnect;

typedef struct BusReconnectOps {
        /* A connection was made: the first one (reconnected false) or a new one after a loss. b
         * and bus are the daemon's to use (borrowed) until lost(). Here the daemon publishes its
         * vtable, requests its name, adds its matches and starts its first reads. Called from
         * the loop, never from inside sd-bus. A negative errno drops the connection: after a
         * loss it is retried later; at start bus_reconnect_start() returns it. */
        int (*connected)(BusEvent *b, sd_bus *bus, bool reconnected, void *userdata);
        /* The connection is gone (or connected() failed): the daemon forgets b and its bus and
         * drops every slot it made on it, right before it is freed. Called from the loop. */
        void (*lost)(void *userdata);
} BusReconnectOps;

/* address: empty or NULL for the system bus (which honours DBUS_SYSTEM_BUS_ADDRESS). ops is
 * borrowed and must outlive the object. Does not connect yet. */
int bus_reconnect_new(struct event_base *base, const char *address, const BusReconnectOps *ops, void *userdata,
                      BusReconnect **ret);
/* Frees the connection too (without calling lost()): the daemon drops its slots first. */
BusReconnect *bus_reconnect_free(BusReconnect *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(BusReconnect *, bus_reconnect_free);

/* Connects now and calls connected(). Its failure is returned, and so is a failed connection
 * unless retry is set: then the retries begin as after a loss, and 0 is returned (see
 * bus_reconnect_is_connected() and bus_reconnect_last_error()). From then on every loss is
 * followed by retries, forever. */
int bus_reconnect_start(BusReconnect *r, bool retry);

bool bus_reconnect_is_connected(BusReconnect *r);
/* The last failed attempt's negative errno, 0 when the last one succeeded. */
int bus_reconnect_last_error(BusReconnect *r);
/* Connections made after a loss (0 until the first reconnect). */
uint64_t bus_reconnect_n_reconnects(BusReconnect *r);

/* The wait before retry number attempt (0: the first after the loss): min(100 ms << attempt,
 * 5 s), minus (random mod a quarter of it). Pure, for the unit test. */
usec_t bus_reconnect_delay(unsigned attempt, uint64_t random);
