/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The reconnect loop of every daemon's bus connection: a lost connection is torn down from a
 * deferred event (never inside sd_bus_process()), then bus_event_open() is retried on a timer
 * with exponential backoff and jitter until a new dbus-daemon answers on the same address. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "bus-reconnect.h"
#include "daemon.h"
#include "log.h"

struct BusReconnect {
        struct event_base *base;
        char *address;
        const BusReconnectOps *ops;
        void *userdata;

        BusEvent *event;                /* NULL while disconnected */
        struct event *lost_event;       /* the teardown, out of sd-bus's call stack */
        struct event *retry_timer;
        unsigned attempt;               /* failed attempts since the loss */
        bool started;
        uint64_t random;                /* splitmix64 state for the jitter */
        uint64_t n_reconnects;
        int last_error;
};

static uint64_t bus_reconnect_random(BusReconnect *r) {
        uint64_t z = (r->random += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

usec_t bus_reconnect_delay(unsigned attempt, uint64_t random) {
        usec_t d = BUS_RECONNECT_DELAY_MIN_USEC, quarter;

        for (unsigned i = 0; i < attempt && d < BUS_RECONNECT_DELAY_MAX_USEC; i++)
                d *= 2;
        d = MIN(d, BUS_RECONNECT_DELAY_MAX_USEC);
        /* Jitter, so that the daemons of a node do not all knock at the same instant. */
        quarter = d / 4;
        return d - (quarter > 0 ? random % quarter : 0);
}

static void bus_reconnect_schedule(BusReconnect *r) {
        usec_t delay = bus_reconnect_delay(r->attempt, bus_reconnect_random(r));
        struct timeval tv = usec_to_timeval(delay);

        log_debug("Connecting to the bus again in %.2fs (attempt %u).", (double) delay / USEC_PER_SEC, r->attempt + 1);
        (void) evtimer_add(r->retry_timer, &tv);
}

/* Hands the connection back: the daemon lets go of it, then it is freed. */
static void bus_reconnect_drop(BusReconnect *r) {
        if (!r->event)
                return;
        if (r->ops->lost)
                r->ops->lost(r->userdata);
        r->event = bus_event_free(r->event);
}

static void bus_reconnect_disconnected(void *userdata) {
        BusReconnect *r = userdata;

        /* Inside bus_event_process(): the BusEvent must outlive this call. */
        event_active(r->lost_event, EV_TIMEOUT, 0);
}

static void bus_reconnect_lost_cb(evutil_socket_t fd, short what, void *userdata) {
        BusReconnect *r = userdata;

        if (!r->event)
                return;
        bus_reconnect_drop(r);
        daemon_notify_status("Bus lost, reconnecting");
        r->attempt = 0;
        bus_reconnect_schedule(r);
}

/* Hands a new connection to the daemon: 0 when it took it. */
static int bus_reconnect_take(BusReconnect *r, BusEvent *b, bool reconnected) {
        int k;

        bus_event_set_disconnect_cb(b, bus_reconnect_disconnected, r);
        r->event = b;
        k = r->ops->connected(b, bus_event_get_bus(b), reconnected, r->userdata);
        r->last_error = k < 0 ? k : 0;
        if (k < 0) {
                bus_reconnect_drop(r);
                return k;
        }
        /* What connected() queued goes out on the next loop iteration. */
        bus_event_rearm(b);
        return 0;
}

static void bus_reconnect_retry_cb(evutil_socket_t fd, short what, void *userdata) {
        BusReconnect *r = userdata;
        BusEvent *b = NULL;
        int k;

        if (r->event)
                return;
        k = bus_event_open(r->base, r->address, &b);
        r->last_error = k < 0 ? k : 0;
        if (k >= 0)
                k = bus_reconnect_take(r, b, true);
        if (k < 0) {
                log_debug_errno(k, "Connecting to the bus %s failed: %m", isempty(r->address) ? "(system)" : r->address);
                r->attempt++;
                bus_reconnect_schedule(r);
                return;
        }
        r->attempt = 0;
        r->n_reconnects++;
}

int bus_reconnect_new(struct event_base *base, const char *address, const BusReconnectOps *ops, void *userdata,
                      BusReconnect **ret) {
        _cleanup_(bus_reconnect_freep) BusReconnect *r = NULL;

        if (!base || !ops || !ops->connected || !ret)
                return -EINVAL;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->base = base;
        r->ops = ops;
        r->userdata = userdata;
        r->address = strdup(strempty(address));
        r->lost_event = event_new(base, -1, 0, bus_reconnect_lost_cb, r);
        r->retry_timer = evtimer_new(base, bus_reconnect_retry_cb, r);
        if (!r->address || !r->lost_event || !r->retry_timer)
                return -ENOMEM;
        r->random = now_realtime_usec() ^ ((uint64_t) getpid() << 32);
        *ret = TAKE_PTR(r);
        return 0;
}

BusReconnect *bus_reconnect_free(BusReconnect *r) {
        if (!r)
                return NULL;
        bus_event_free(r->event);
        if (r->lost_event)
                event_free(r->lost_event);
        if (r->retry_timer)
                event_free(r->retry_timer);
        free(r->address);
        free(r);
        return NULL;
}

int bus_reconnect_start(BusReconnect *r, bool retry) {
        BusEvent *b = NULL;
        int k;

        if (r->started)
                return -EALREADY;
        r->started = true;
        k = bus_event_open(r->base, r->address, &b);
        r->last_error = k < 0 ? k : 0;
        if (k < 0) {
                if (!retry)
                        return k;
                log_debug_errno(k, "Connecting to the bus %s failed: %m", isempty(r->address) ? "(system)" : r->address);
                r->attempt = 0;
                bus_reconnect_schedule(r);
                return 0;
        }
        return bus_reconnect_take(r, b, false);
}

int bus_reconnect_last_error(BusReconnect *r) {
        return r ? r->last_error : 0;
}

bool bus_reconnect_is_connected(BusReconnect *r) {
        return r && r->event;
}

uint64_t bus_reconnect_n_reconnects(BusReconnect *r) {
        return r ? r->n_reconnects : 0;
}
