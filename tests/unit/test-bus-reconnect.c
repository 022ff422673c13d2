/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for common/bus-reconnect.c: the backoff between reconnect attempts (doubling from
 * 100 ms, capped at 5 s, jitter of at most a quarter) and the object's life without a bus. */

#include "bus-reconnect.h"
#include "unit-test.h"

#define MS USEC_PER_MSEC

START_TEST(test_delay_doubles_and_caps) {
        /* random 0: no jitter. */
        ck_assert_uint_eq(bus_reconnect_delay(0, 0), 100 * MS);
        ck_assert_uint_eq(bus_reconnect_delay(1, 0), 200 * MS);
        ck_assert_uint_eq(bus_reconnect_delay(2, 0), 400 * MS);
        ck_assert_uint_eq(bus_reconnect_delay(5, 0), 3200 * MS);
        ck_assert_uint_eq(bus_reconnect_delay(6, 0), 5000 * MS);
        ck_assert_uint_eq(bus_reconnect_delay(1000, 0), 5000 * MS);
        ck_assert_uint_eq(bus_reconnect_delay(UINT32_MAX, 0), 5000 * MS);
}
END_TEST

START_TEST(test_delay_jitter_bounded) {
        for (unsigned a = 0; a < 12; a++) {
                usec_t full = bus_reconnect_delay(a, 0);

                for (uint64_t rnd = 1; rnd < 100000; rnd = rnd * 7 + 13) {
                        usec_t d = bus_reconnect_delay(a, rnd);

                        ck_assert_uint_le(d, full);
                        ck_assert_uint_gt(d, full - full / 4);
                }
        }
        ck_assert_uint_ne(bus_reconnect_delay(3, 12345), bus_reconnect_delay(3, 54321));
}
END_TEST

static int never_connected(BusEvent *b, sd_bus *bus, bool reconnected, void *userdata) {
        return -EIO;
}

START_TEST(test_no_bus) {
        static const BusReconnectOps ops = { .connected = never_connected };
        struct event_base *base = event_base_new();
        BusReconnect *r = NULL;

        ck_assert_ptr_nonnull(base);
        ck_assert_int_eq(bus_reconnect_new(base, NULL, NULL, NULL, &r), -EINVAL);
        ck_assert_int_eq(bus_reconnect_new(base, "unix:path=/nonexistent/bus.sock", &ops, NULL, &r), 0);
        ck_assert(!bus_reconnect_is_connected(r));
        /* No retry: the connection's error. */
        ck_assert_int_lt(bus_reconnect_start(r, false), 0);
        ck_assert_int_lt(bus_reconnect_last_error(r), 0);
        ck_assert_int_eq(bus_reconnect_start(r, false), -EALREADY);
        ck_assert_ptr_null(bus_reconnect_free(r));

        /* With retry: 0, not connected, retries pending (freed with the object). */
        ck_assert_int_eq(bus_reconnect_new(base, "unix:path=/nonexistent/bus.sock", &ops, NULL, &r), 0);
        ck_assert_int_eq(bus_reconnect_start(r, true), 0);
        ck_assert(!bus_reconnect_is_connected(r));
        ck_assert_uint_eq(bus_reconnect_n_reconnects(r), 0);
        bus_reconnect_free(r);
        ck_assert_ptr_null(bus_reconnect_free(NULL));
        event_base_free(base);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("bus-reconnect");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_delay_doubles_and_caps);
        tcase_add_test(tc, test_delay_jitter_bounded);
        tcase_add_test(tc, test_no_bus);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
