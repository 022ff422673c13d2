/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Parallel Properties.Get calls with one completion; see shimd-bus-reads.h. */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
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

int bus_calls_start(Manager *m, sd_bus_message *const *calls, size_t n, usec_t timeout, BusReadsDoneFn done,
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
                BusRead *c = &reads->calls[i];

                if (!calls[i])
                        continue;
                c->reads = reads;
                r = sd_bus_call_async(m->bus, &c->slot, calls[i], bus_read_cb, c, timeout);
                if (r < 0) {
                        log_debug_errno(r, "Failed to call %s.%s of %s: %m", strempty(sd_bus_message_get_interface(calls[i])),
                                        strempty(sd_bus_message_get_member(calls[i])),
                                        strempty(sd_bus_message_get_destination(calls[i])));
                        continue;
                }
                reads->pending++;
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

int bus_reads_start(Manager *m, const BusPropertyRef *refs, size_t n, usec_t timeout, BusReadsDoneFn done,
                    void *userdata, BusReads **ret) {
        sd_bus_message *calls[BUS_READS_MAX] = {};
        int r;

        if (n > BUS_READS_MAX)
                return -EINVAL;
        for (size_t i = 0; m->bus && i < n; i++) {
                r = sd_bus_message_new_method_call(m->bus, &calls[i], refs[i].bus_name, refs[i].path,
                                                   "org.freedesktop.DBus.Properties", "Get");
                if (r >= 0)
                        r = sd_bus_message_append(calls[i], "ss", refs[i].interface, refs[i].property);
                if (r < 0) {
                        log_debug_errno(r, "Failed to ask %s for %s: %m", refs[i].bus_name, refs[i].property);
                        calls[i] = sd_bus_message_unref(calls[i]);
                        continue;
                }
                (void) sd_bus_message_set_auto_start(calls[i], false);
        }
        r = bus_calls_start(m, calls, n, timeout, done, userdata, ret);
        for (size_t i = 0; i < n; i++)
                sd_bus_message_unref(calls[i]);
        return r;
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

int bus_reply_enter_array(sd_bus_message *reply, const char *element) {
        char array[32];
        int r;

        if (snprintf(array, sizeof(array), "a%s", element) >= (int) sizeof(array))
                return -EINVAL;
        r = sd_bus_message_rewind(reply, true);
        if (r >= 0)
                r = sd_bus_message_enter_container(reply, 'v', array);
        if (r >= 0)
                r = sd_bus_message_enter_container(reply, 'a', element);
        return r;
}
