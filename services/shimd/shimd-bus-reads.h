/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Several D-Bus calls to other daemons made at once, for an answer that is gathered when it is
 * asked for (GET /api/mycelia/status, GET /metrics): in parallel, each bounded in time; one
 * callback when all are in, timed out, or the bus went. Who did not answer is left out by the
 * caller; nothing waits longer than the timeout. */
#pragma once

#include "shimd-manager.h"

#define BUS_READS_MAX 24

typedef struct BusPropertyRef {
        const char *bus_name;
        const char *path;
        const char *interface;
        const char *property;
} BusPropertyRef;

typedef struct BusReads BusReads;

/* Called once; reads is the caller's to free (bus_reads_free() from inside the callback is
 * fine). */
typedef void (*BusReadsDoneFn)(BusReads *reads, void *userdata);

/* Asks for refs[0..n) (n <= BUS_READS_MAX) with Properties.Get, never starting a daemon; done runs
 * from the loop, never from inside this call, also when there is no bus. -ENOMEM, -EINVAL. */
int bus_reads_start(Manager *m, const BusPropertyRef *refs, size_t n, usec_t timeout, BusReadsDoneFn done,
                    void *userdata, BusReads **ret);
/* The same for method calls made by the caller (on m->bus; NULL entries are not asked and have no
 * value); the messages are not kept. */
int bus_calls_start(Manager *m, sd_bus_message *const *calls, size_t n, usec_t timeout, BusReadsDoneFn done,
                    void *userdata, BusReads **ret);
/* Cancels what is still asked; done is not called. */
BusReads *bus_reads_free(BusReads *reads);
DEFINE_TRIVIAL_CLEANUP_FUNC(BusReads *, bus_reads_free);

/* The reply of call i, rewound (a property's value is in its variant: enter it with the
 * property's signature), or NULL when it did not come. */
sd_bus_message *bus_reads_value(BusReads *reads, size_t i);

/* Rewinds reply (a Properties.Get reply) and enters its variant and the array in it, of elements
 * of type element ("{st}"): each sd_bus_message_read() of element then reads the next one. */
int bus_reply_enter_array(sd_bus_message *reply, const char *element);

/* The connection is gone: every read still waiting finishes with what it has. */
void bus_reads_bus_lost(Manager *m);
