/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* AvahiPoll implemented with libevent events: an fd watch is one event (EV_PERSIST), a timeout
 * one timer. Avahi may free or change any watch from any callback, so frees are deferred. */
#include <assert.h>
#include <sys/time.h>

#include "avahi-event.h"

struct AvahiWatch {
        AvahiEvent *owner;
        struct event *ev;
        int fd;
        AvahiWatchEvent events;         /* what avahi waits for */
        AvahiWatchEvent revents;        /* what happened, valid inside the callback */
        AvahiWatchCallback callback;
        void *userdata;
        bool dead;
        AvahiWatch *next;               /* in owner->watches */
};

struct AvahiTimeout {
        AvahiEvent *owner;
        struct event *ev;
        AvahiTimeoutCallback callback;
        void *userdata;
        bool dead;
        AvahiTimeout *next;             /* in owner->timeouts */
};

struct AvahiEvent {
        AvahiPoll poll;
        struct event_base *base;
        struct event *reaper;           /* frees dead watches and timeouts outside callbacks */
        AvahiWatch *watches;
        AvahiTimeout *timeouts;
        size_t n_dead;
};

static short watch_event_to_libevent(AvahiWatchEvent e) {
        short what = 0;

        /* libevent reports errors and hang-ups as readable/writable; poll(2) does the same
         * for the flags avahi cannot ask for anyway (POLLERR/POLLHUP are always reported). */
        if (e & (AVAHI_WATCH_IN | AVAHI_WATCH_ERR | AVAHI_WATCH_HUP))
                what |= EV_READ;
        if (e & AVAHI_WATCH_OUT)
                what |= EV_WRITE;
        return what;
}

static void avahi_event_schedule_reap(AvahiEvent *a) {
        a->n_dead++;
        event_active(a->reaper, EV_TIMEOUT, 0);
}

static void watch_cb(evutil_socket_t fd, short what, void *userdata) {
        AvahiWatch *w = userdata;
        AvahiWatchEvent e = 0;

        if (w->dead)
                return;
        if (what & EV_READ)
                e |= AVAHI_WATCH_IN;
        if (what & EV_WRITE)
                e |= AVAHI_WATCH_OUT;
        /* Only what avahi asked for, plus errors it always gets. */
        w->revents = e & (w->events | AVAHI_WATCH_ERR | AVAHI_WATCH_HUP);
        if (w->revents == 0)
                return;
        w->callback(w, w->fd, w->revents, w->userdata);
        /* w may be dead now, but its memory lives until the reaper runs. */
        w->revents = 0;
}

static int watch_arm(AvahiWatch *w) {
        short what = watch_event_to_libevent(w->events);

        if (w->ev) {
                (void) event_del(w->ev);
                event_free(w->ev);
                w->ev = NULL;
        }
        if (what == 0)
                return 0;
        w->ev = event_new(w->owner->base, w->fd, what | EV_PERSIST, watch_cb, w);
        if (!w->ev)
                return -ENOMEM;
        if (event_add(w->ev, NULL) < 0)
                return -EIO;
        return 0;
}

static AvahiWatch *watch_new(const AvahiPoll *api, int fd, AvahiWatchEvent event, AvahiWatchCallback callback,
                             void *userdata) {
        AvahiEvent *a = api->userdata;
        AvahiWatch *w;

        assert(fd >= 0);
        assert(callback);

        w = calloc(1, sizeof(*w));
        if (!w)
                return NULL;
        *w = (AvahiWatch) {
                .owner = a,
                .fd = fd,
                .events = event,
                .callback = callback,
                .userdata = userdata,
        };
        if (watch_arm(w) < 0) {
                if (w->ev)
                        event_free(w->ev);
                free(w);
                return NULL;
        }
        w->next = a->watches;
        a->watches = w;
        return w;
}

static void watch_update(AvahiWatch *w, AvahiWatchEvent event) {
        assert(w && !w->dead);

        if (w->events == event && (w->ev || event == 0))
                return;
        w->events = event;
        /* Failure leaves the watch disarmed; avahi has no way to hear about it. */
        (void) watch_arm(w);
}

static AvahiWatchEvent watch_get_events(AvahiWatch *w) {
        assert(w && !w->dead);
        return w->revents;
}

static void watch_free(AvahiWatch *w) {
        if (!w)
                return;
        assert(!w->dead);
        w->dead = true;
        if (w->ev) {
                (void) event_del(w->ev);
                event_free(w->ev);
                w->ev = NULL;
        }
        avahi_event_schedule_reap(w->owner);
}

static void timeout_cb(evutil_socket_t fd, short what, void *userdata) {
        AvahiTimeout *t = userdata;

        if (t->dead)
                return;
        /* One-shot: the timer is not pending any more, which is what "disabled" means. */
        t->callback(t, t->userdata);
}

static void timeout_arm(AvahiTimeout *t, const struct timeval *tv) {
        struct timeval now, rel = {};

        (void) evtimer_del(t->ev);
        if (!tv)
                return;
        /* avahi's times are absolute wall-clock (gettimeofday, see avahi_elapse_time()). */
        (void) gettimeofday(&now, NULL);
        if (timercmp(tv, &now, >))
                timersub(tv, &now, &rel);
        (void) evtimer_add(t->ev, &rel);
}

static AvahiTimeout *timeout_new(const AvahiPoll *api, const struct timeval *tv, AvahiTimeoutCallback callback,
                                 void *userdata) {
        AvahiEvent *a = api->userdata;
        AvahiTimeout *t;

        assert(callback);

        t = calloc(1, sizeof(*t));
        if (!t)
                return NULL;
        *t = (AvahiTimeout) {
                .owner = a,
                .callback = callback,
                .userdata = userdata,
        };
        t->ev = evtimer_new(a->base, timeout_cb, t);
        if (!t->ev) {
                free(t);
                return NULL;
        }
        timeout_arm(t, tv);
        t->next = a->timeouts;
        a->timeouts = t;
        return t;
}

static void timeout_update(AvahiTimeout *t, const struct timeval *tv) {
        assert(t && !t->dead);
        timeout_arm(t, tv);
}

static void timeout_free(AvahiTimeout *t) {
        if (!t)
                return;
        assert(!t->dead);
        t->dead = true;
        (void) evtimer_del(t->ev);
        avahi_event_schedule_reap(t->owner);
}

static void avahi_event_reap(AvahiEvent *a, bool all) {
        for (AvahiWatch **p = &a->watches; *p;) {
                AvahiWatch *w = *p;

                if (!w->dead && !all) {
                        p = &w->next;
                        continue;
                }
                *p = w->next;
                if (w->ev)
                        event_free(w->ev);
                free(w);
        }
        for (AvahiTimeout **p = &a->timeouts; *p;) {
                AvahiTimeout *t = *p;

                if (!t->dead && !all) {
                        p = &t->next;
                        continue;
                }
                *p = t->next;
                event_free(t->ev);
                free(t);
        }
        a->n_dead = 0;
}

static void reaper_cb(evutil_socket_t fd, short what, void *userdata) {
        avahi_event_reap(userdata, false);
}

int avahi_event_new(struct event_base *base, AvahiEvent **ret) {
        AvahiEvent *a;

        assert(base);
        assert(ret);

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->base = base;
        a->reaper = event_new(base, -1, 0, reaper_cb, a);
        if (!a->reaper) {
                free(a);
                return -ENOMEM;
        }
        a->poll = (AvahiPoll) {
                .userdata = a,
                .watch_new = watch_new,
                .watch_update = watch_update,
                .watch_get_events = watch_get_events,
                .watch_free = watch_free,
                .timeout_new = timeout_new,
                .timeout_update = timeout_update,
                .timeout_free = timeout_free,
        };
        *ret = a;
        return 0;
}

AvahiEvent *avahi_event_free(AvahiEvent *a) {
        if (!a)
                return NULL;
        avahi_event_reap(a, true);
        event_free(a->reaper);
        free(a);
        return NULL;
}

const AvahiPoll *avahi_event_get_poll(AvahiEvent *a) {
        return &a->poll;
}

size_t avahi_event_count_live(AvahiEvent *a) {
        size_t n = 0;

        for (AvahiWatch *w = a->watches; w; w = w->next)
                n += !w->dead;
        for (AvahiTimeout *t = a->timeouts; t; t = t->next)
                n += !t->dead;
        return n;
}
