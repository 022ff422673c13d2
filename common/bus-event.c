/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Glue between sd-bus and libevent: one persistent fd event whose interest follows
 * sd_bus_get_events(), and one timer for sd_bus_get_timeout(). */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>

#include "bus-event.h"
#include "log.h"

struct BusEvent {
        struct event_base *base;
        sd_bus *bus;
        struct event *io;
        struct event *timer;
        short io_events;          /* what io is currently armed for */
        bool disconnected;
        void (*disconnect_cb)(void *userdata);
        void *disconnect_userdata;
};

static void bus_event_update(BusEvent *b);

static void bus_event_process(BusEvent *b) {
        int r;

        if (b->disconnected)
                return;
        do {
                r = sd_bus_process(b->bus, NULL);
        } while (r > 0);

        if (r < 0 || !sd_bus_is_open(b->bus)) {
                b->disconnected = true;
                (void) event_del(b->io);
                (void) event_del(b->timer);
                if (b->disconnect_cb)
                        b->disconnect_cb(b->disconnect_userdata);
                return;
        }
        bus_event_update(b);
}

static void bus_event_io_cb(evutil_socket_t fd, short what, void *userdata) {
        bus_event_process(userdata);
}

static void bus_event_timer_cb(evutil_socket_t fd, short what, void *userdata) {
        bus_event_process(userdata);
}

static void bus_event_update(BusEvent *b) {
        short want = EV_READ | EV_PERSIST;
        uint64_t timeout_usec;
        int events, fd;

        if (b->disconnected)
                return;

        events = sd_bus_get_events(b->bus);
        if (events < 0)
                return;
        if (events & POLLOUT)
                want |= EV_WRITE;

        if (want != b->io_events) {
                fd = sd_bus_get_fd(b->bus);
                (void) event_del(b->io);
                (void) event_assign(b->io, b->base, fd, want, bus_event_io_cb, b);
                (void) event_add(b->io, NULL);
                b->io_events = want;
        }

        /* sd_bus_get_timeout() is absolute CLOCK_MONOTONIC; UINT64_MAX means none. */
        if (sd_bus_get_timeout(b->bus, &timeout_usec) >= 0 && timeout_usec != UINT64_MAX) {
                usec_t now = now_usec();
                usec_t delta = timeout_usec > now ? timeout_usec - now : 0;
                struct timeval tv = { .tv_sec = delta / USEC_PER_SEC, .tv_usec = delta % USEC_PER_SEC };

                (void) evtimer_add(b->timer, &tv);
        } else
                (void) evtimer_del(b->timer);
}

void bus_event_rearm(BusEvent *b) {
        if (b)
                bus_event_update(b);
}

int bus_event_attach(struct event_base *base, sd_bus *bus, BusEvent **ret) {
        BusEvent *b;

        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->base = base;
        b->bus = sd_bus_ref(bus);
        b->io = event_new(base, sd_bus_get_fd(bus), EV_READ | EV_PERSIST, bus_event_io_cb, b);
        b->timer = evtimer_new(base, bus_event_timer_cb, b);
        if (!b->io || !b->timer) {
                bus_event_free(b);
                return -ENOMEM;
        }
        b->io_events = EV_READ | EV_PERSIST;
        (void) event_add(b->io, NULL);
        bus_event_update(b);

        /* Messages may already be queued (Hello, name requests): handle them on the first
         * loop iteration rather than waiting for the socket to wake us. */
        event_active(b->timer, EV_TIMEOUT, 0);
        *ret = b;
        return 0;
}

int bus_event_open(struct event_base *base, const char *address, BusEvent **ret) {
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        int r;

        if (isempty(address))
                r = sd_bus_open_system(&bus);
        else {
                r = sd_bus_new(&bus);
                if (r < 0)
                        return r;
                r = sd_bus_set_address(bus, address);
                if (r < 0)
                        return r;
                r = sd_bus_set_bus_client(bus, true);
                if (r < 0)
                        return r;
                r = sd_bus_start(bus);
        }
        if (r < 0)
                return r;

        r = bus_event_attach(base, bus, ret);
        if (r < 0)
                return r;
        /* attach holds its own reference; ours must go without closing the connection. */
        sd_bus_unref(TAKE_PTR(bus));
        return 0;
}

BusEvent *bus_event_free(BusEvent *b) {
        if (!b)
                return NULL;
        if (b->io)
                event_free(b->io);
        if (b->timer)
                event_free(b->timer);
        if (b->bus) {
                (void) sd_bus_flush(b->bus);
                sd_bus_close(b->bus);
                sd_bus_unref(b->bus);
        }
        free(b);
        return NULL;
}

sd_bus *bus_event_get_bus(BusEvent *b) {
        return b->bus;
}

void bus_event_set_disconnect_cb(BusEvent *b, void (*cb)(void *userdata), void *userdata) {
        b->disconnect_cb = cb;
        b->disconnect_userdata = userdata;
}

int bus_request_name_result(sd_bus *bus, sd_bus_message *reply, const char *name) {
        const sd_bus_error *e;
        uint32_t ret;
        int r;

        if (!bus || sd_bus_is_open(bus) <= 0)
                return 0;
        e = sd_bus_message_get_error(reply);
        if (e) {
                log_error("Failed to acquire the bus name %s: %s", name, e->message ?: e->name);
                return -sd_bus_error_get_errno(e) ?: -EIO;
        }
        r = sd_bus_message_read(reply, "u", &ret);
        if (r < 0)
                return log_error_errno(r, "Failed to parse the reply to RequestName for %s: %m", name);
        /* 1: primary owner, 4: already the owner; 2 (queued) and 3 (exists) mean someone else has it. */
        if (ret != 1 && ret != 4) {
                log_error("The bus name %s is owned by another process.", name);
                return -EEXIST;
        }
        return 1;
}

int bus_match_name_owner(sd_bus *bus, sd_bus_slot **slot, const char *name, sd_bus_message_handler_t cb,
                         void *userdata) {
        char match[256];

        if (snprintf(match, sizeof(match),
                     "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                     "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='%s'",
                     name) >= (int) sizeof(match))
                return -ENAMETOOLONG;
        return sd_bus_add_match_async(bus, slot, match, cb, NULL, userdata);
}

int bus_message_read_strv_bounded(sd_bus_message *m, const char **ret, size_t max, size_t *ret_n,
                                  size_t *ret_total) {
        size_t n = 0, total = 0;
        int r;

        r = sd_bus_message_enter_container(m, 'a', "s");
        if (r < 0)
                return r;
        for (;;) {
                const char *s;

                r = sd_bus_message_read_basic(m, 's', &s);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                if (n < max)
                        ret[n++] = s;
                total++;
        }
        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        *ret_n = n;
        if (ret_total)
                *ret_total = total;
        return 0;
}
