/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for common/avahi-event.c: the AvahiPoll adapter on a real event_base, with pipe
 * watches and timeouts, including frees and updates from inside callbacks. */
#include <fcntl.h>
#include <sys/time.h>

#include "avahi-event.h"
#include "unit-test.h"

static struct event_base *base;
static AvahiEvent *ae;
static const AvahiPoll *api;

static void setup(void) {
        base = event_base_new();
        ck_assert_ptr_nonnull(base);
        ck_assert_int_eq(avahi_event_new(base, &ae), 0);
        api = avahi_event_get_poll(ae);
}

static void teardown(void) {
        ae = avahi_event_free(ae);
        event_base_free(base);
}

static void abs_in(struct timeval *tv, long usec) {
        struct timeval now, d = { .tv_sec = usec / 1000000, .tv_usec = usec % 1000000 };

        gettimeofday(&now, NULL);
        timeradd(&now, &d, tv);
}

static void run_for(long usec) {
        struct timeval tv = { .tv_sec = usec / 1000000, .tv_usec = usec % 1000000 };

        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
}

typedef struct WatchState {
        AvahiWatch *self;
        AvahiWatch *other;      /* freed from our callback when set */
        unsigned calls;
        AvahiWatchEvent seen;
        bool free_self;
        bool switch_to_out;
} WatchState;

static void watch_cb(AvahiWatch *w, int fd, AvahiWatchEvent event, void *userdata) {
        WatchState *s = userdata;
        char buf[16];

        s->calls++;
        s->seen |= event;
        ck_assert_int_eq(api->watch_get_events(w), event);
        if (event & AVAHI_WATCH_IN)
                (void) read(fd, buf, sizeof(buf));
        if (s->other) {
                api->watch_free(s->other);
                s->other = NULL;
        }
        if (s->switch_to_out) {
                s->switch_to_out = false;
                api->watch_update(w, AVAHI_WATCH_OUT);
        }
        if (s->free_self)
                api->watch_free(w);
}

START_TEST(test_watch_pipe) {
        WatchState s = {};
        int p[2];

        ck_assert_int_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
        s.self = api->watch_new(api, p[0], AVAHI_WATCH_IN, watch_cb, &s);
        ck_assert_ptr_nonnull(s.self);

        run_for(20000);
        ck_assert_uint_eq(s.calls, 0);

        ck_assert_int_eq(write(p[1], "a", 1), 1);
        run_for(20000);
        ck_assert_uint_eq(s.calls, 1);
        ck_assert_int_eq(s.seen, AVAHI_WATCH_IN);

        /* Persistent: a second write, a second call. */
        ck_assert_int_eq(write(p[1], "b", 1), 1);
        run_for(20000);
        ck_assert_uint_eq(s.calls, 2);

        /* No events asked for: silent even when readable. */
        api->watch_update(s.self, 0);
        ck_assert_int_eq(write(p[1], "c", 1), 1);
        run_for(20000);
        ck_assert_uint_eq(s.calls, 2);
        api->watch_update(s.self, AVAHI_WATCH_IN);
        run_for(20000);
        ck_assert_uint_eq(s.calls, 3);

        /* Writable end: update from inside the callback to OUT. */
        WatchState o = { .switch_to_out = true };
        o.self = api->watch_new(api, p[1], AVAHI_WATCH_IN, watch_cb, &o);
        api->watch_update(o.self, AVAHI_WATCH_OUT);
        run_for(20000);
        ck_assert_uint_ge(o.calls, 1);
        ck_assert(o.seen & AVAHI_WATCH_OUT);
        ck_assert_uint_eq(avahi_event_count_live(ae), 2);

        /* Free itself from its callback, and the other one with it. */
        s.free_self = true;
        s.other = o.self;
        ck_assert_int_eq(write(p[1], "d", 1), 1);
        unsigned before = o.calls;
        run_for(20000);
        ck_assert_uint_eq(s.calls, 4);
        ck_assert_uint_le(o.calls, before + 1);
        ck_assert_uint_eq(avahi_event_count_live(ae), 0);

        close(p[0]);
        close(p[1]);
}
END_TEST

/* Two watches ready in the same loop iteration; the first frees the second, which must not
 * be called any more. */
START_TEST(test_watch_free_other_pending) {
        WatchState a = {}, b = {};
        int p[2], q[2];

        ck_assert_int_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
        ck_assert_int_eq(pipe2(q, O_NONBLOCK | O_CLOEXEC), 0);
        a.self = api->watch_new(api, p[0], AVAHI_WATCH_IN, watch_cb, &a);
        b.self = api->watch_new(api, q[0], AVAHI_WATCH_IN, watch_cb, &b);
        a.other = b.self;
        b.other = a.self;
        ck_assert_int_eq(write(p[1], "a", 1), 1);
        ck_assert_int_eq(write(q[1], "b", 1), 1);
        run_for(20000);
        /* Exactly one ran and freed the other. */
        ck_assert_uint_eq(a.calls + b.calls, 1);
        ck_assert_uint_eq(avahi_event_count_live(ae), 1);
        /* The survivor still works. */
        WatchState *alive = a.calls ? &a : &b;
        alive->other = NULL;
        ck_assert_int_eq(write(alive == &a ? p[1] : q[1], "c", 1), 1);
        run_for(20000);
        ck_assert_uint_eq(alive->calls, 2);
        api->watch_free(alive->self);
        close(p[0]);
        close(p[1]);
        close(q[0]);
        close(q[1]);
}
END_TEST

typedef struct TimeoutState {
        unsigned calls;
        unsigned rearm;         /* re-arm from the callback this many times */
        bool free_self;
        AvahiTimeout *other;
        struct timeval first;
} TimeoutState;

static void timeout_cb(AvahiTimeout *t, void *userdata) {
        TimeoutState *s = userdata;

        if (s->calls++ == 0)
                gettimeofday(&s->first, NULL);
        if (s->other) {
                api->timeout_free(s->other);
                s->other = NULL;
        }
        if (s->rearm > 0) {
                struct timeval tv;

                s->rearm--;
                abs_in(&tv, 5000);
                api->timeout_update(t, &tv);
        }
        if (s->free_self)
                api->timeout_free(t);
}

START_TEST(test_timeouts) {
        TimeoutState a = {}, b = {}, c = {}, d = {};
        struct timeval tv, start, diff;
        AvahiTimeout *ta, *tb, *tc, *td;

        gettimeofday(&start, NULL);
        abs_in(&tv, 30000);
        ta = api->timeout_new(api, &tv, timeout_cb, &a);
        ck_assert_ptr_nonnull(ta);
        /* NULL: disabled until updated. */
        tb = api->timeout_new(api, NULL, timeout_cb, &b);
        ck_assert_ptr_nonnull(tb);
        /* In the past: fires at once. */
        abs_in(&tv, -1000000);
        c.rearm = 2;
        tc = api->timeout_new(api, &tv, timeout_cb, &c);
        run_for(100000);

        ck_assert_uint_eq(a.calls, 1);  /* one-shot */
        timersub(&a.first, &start, &diff);
        ck_assert_int_ge(diff.tv_sec * 1000000 + diff.tv_usec, 25000);
        ck_assert_uint_eq(b.calls, 0);
        ck_assert_uint_eq(c.calls, 3);  /* fired, re-armed twice from its callback */

        /* Disable a pending one. */
        abs_in(&tv, 10000);
        api->timeout_update(tb, &tv);
        api->timeout_update(tb, NULL);
        run_for(40000);
        ck_assert_uint_eq(b.calls, 0);

        /* Free itself from its callback, and free another that is due at the same time. */
        abs_in(&tv, 5000);
        d.free_self = true;
        td = api->timeout_new(api, &tv, timeout_cb, &d);
        ck_assert_ptr_nonnull(td);
        api->timeout_update(tb, &tv);
        d.other = tb;
        b.other = td;
        b.free_self = true;
        run_for(40000);
        ck_assert_uint_eq(d.calls + b.calls, 1);

        api->timeout_free(ta);
        api->timeout_free(tc);
        ck_assert_uint_eq(avahi_event_count_live(ae), 0);
}
END_TEST

/* What avahi leaves behind when it forgets to free is released with the adapter. */
START_TEST(test_free_with_live_objects) {
        TimeoutState a = {};
        WatchState w = {};
        struct timeval tv;
        int p[2];

        ck_assert_int_eq(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
        abs_in(&tv, 1000000);
        ck_assert_ptr_nonnull(api->timeout_new(api, &tv, timeout_cb, &a));
        ck_assert_ptr_nonnull(api->watch_new(api, p[0], AVAHI_WATCH_IN, watch_cb, &w));
        ck_assert_uint_eq(avahi_event_count_live(ae), 2);
        close(p[0]);
        close(p[1]);
        /* teardown frees them */
}
END_TEST

static Suite *avahi_event_suite(void) {
        Suite *s = suite_create("avahi-event");
        TCase *tc = tcase_create("avahi-event");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_watch_pipe);
        tcase_add_test(tc, test_watch_free_other_pending);
        tcase_add_test(tc, test_timeouts);
        tcase_add_test(tc, test_free_with_live_objects);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(avahi_event_suite());
}
