/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Parallel Properties.Get calls with one completion; see shimd-bus-reads.h. */
#include <event2/event.h>
#include <stdlib.h>

#include "bus-event.h"
#include "log.h"
#include "shimd-bus-reads.h"

typedef struct BusRead {
        BusReads *reads;
        sd_bus_slot *slot;
        sd_bus_message *reply;  /* NULL: failed, timed out or not asked */
} BusRead;

struct BusReads {
        Manager *m;
        LIST_ENTRY(BusReads) link;
        BusRead calls[BUS_READS_MAX];
        size_t n;
        unsigned pending;
        bool done_called;
        bool linked;            /* in m->bus_reads */
        struct event *timer;    /* first the "run done from the loop" kick, then the backstop */
        BusReadsDoneFn done;
        void *userdata;
};

static void bus_reads_finish(BusReads *reads) {
        if (reads->done_called)
                return;
        reads->done_called = true;
        for (size_t i = 0; i < reads->n; i++)
                reads->calls[i].slot = sd_bus_slot_unref(reads->calls[i].slot);
        (void) event_del(reads->timer);
        reads->done(reads, reads->userdata);
}

static int bus_read_cb(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        BusRead *c = userdata;
        BusReads *reads = c->reads;

        c->slot = sd_bus_slot_unref(c->slot);
        if (sd_bus_message_is_method_error(reply, NULL))
                log_debug("Bus read: %s", sd_bus_message_get_error(reply)->message);
        else
                c->reply = sd_bus_message_ref(reply);
        if (--reads->pending == 0)
                bus_reads_finish(reads);
        return 0;
}

static void bus_reads_timer_cb(evutil_socket_t fd, short what, void *userdata) {
        bus_reads_finish(userdata);
}

static int bus_read_ask(BusReads *reads, BusRead *c, const BusPropertyRef *ref, usec_t timeout) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        sd_bus *bus = reads->m->bus;
        int r;

        r = sd_bus_message_new_method_call(bus, &msg, ref->bus_name, ref->path, "org.freedesktop.DBus.Properties",
                                           "Get");
        if (r >= 0)
                r = sd_bus_message_append(msg, "ss", ref->interface, ref->property);
        if (r < 0)
                return r;
        (void) sd_bus_message_set_auto_start(msg, false);
        c->reads = reads;
        r = sd_bus_call_async(bus, &c->slot, msg, bus_read_cb, c, timeout);
        if (r < 0)
                return r;
        reads->pending++;
        return 0;
}

int bus_reads_start(Manager *m, const BusPropertyRef *refs, size_t n, usec_t timeout, BusReadsDoneFn done,
                    void *userdata, BusReads **ret) {
        _cleanup_(bus_reads_freep) BusReads *reads = NULL;
        struct timeval tv = { 0, 0 };
        int r;

        if (n > BUS_READS_MAX)
                return -EINVAL;
        reads = calloc(1, sizeof(*reads));
        if (!reads)
                return -ENOMEM;
        reads->m = m;
        reads->n = n;
        reads->done = done;
        reads->userdata = userdata;
        reads->timer = evtimer_new(m->base, bus_reads_timer_cb, reads);
        if (!reads->timer)
                return -ENOMEM;
        LIST_INSERT_HEAD(&m->bus_reads, reads, link);
        reads->linked = true;

        for (size_t i = 0; m->bus && i < n; i++) {
                r = bus_read_ask(reads, &reads->calls[i], &refs[i], timeout);
                if (r < 0)
                        log_debug_errno(r, "Failed to ask %s for %s: %m", refs[i].bus_name, refs[i].property);
        }
        if (reads->pending > 0) {
                if (m->bus_event)
                        bus_event_rearm(m->bus_event);
                /* sd-bus times each call out itself; the backstop is for a bus that stops
                 * answering altogether. */
                tv = usec_to_timeval(timeout + timeout / 2);
        }
        /* With nothing asked, done runs from the loop at once, as promised. */
        if (event_add(reads->timer, &tv) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(reads);
        return 0;
}

BusReads *bus_reads_free(BusReads *reads) {
        if (!reads)
                return NULL;
        for (size_t i = 0; i < reads->n; i++) {
                sd_bus_slot_unref(reads->calls[i].slot);
                sd_bus_message_unref(reads->calls[i].reply);
        }
        if (reads->timer)
                event_free(reads->timer);
        if (reads->linked)
                LIST_REMOVE(reads, link);
        free(reads);
        return NULL;
}

sd_bus_message *bus_reads_value(BusReads *reads, size_t i) {
        sd_bus_message *reply;

        if (i >= reads->n || !(reply = reads->calls[i].reply))
                return NULL;
        if (sd_bus_message_rewind(reply, true) < 0)
                return NULL;
        return reply;
}

void bus_reads_bus_lost(Manager *m) {
        BusReads *reads, *next;

        /* The callback may free its reads (and only its own). */
        for (reads = LIST_FIRST(&m->bus_reads); reads; reads = next) {
                next = LIST_NEXT(reads, link);
                bus_reads_finish(reads);
        }
}
