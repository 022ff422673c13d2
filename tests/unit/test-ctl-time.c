/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/ctl/ctl-time.c: the --since of myceliactl audit, absolute (in UTC here,
 * and in a zone with summer time), relative, and what is refused. */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "ctl-time.h"
#include "unit-test.h"

/* 2025-01-31 14:30:15 UTC */
#define NOW ((usec_t) 1738333815 * USEC_PER_SEC + 123)

static usec_t parse(const char *s) {
        usec_t t = 0;

        ck_assert_msg(ctl_time_parse(s, NOW, &t) == 0, "'%s' refused", s);
        return t;
}

static void refused(const char *s) {
        usec_t t = 0;

        ck_assert_msg(ctl_time_parse(s, NOW, &t) < 0, "'%s' taken as %" PRIu64, s, t);
}

START_TEST(test_absolute_utc) {
        setenv("TZ", "UTC", 1);
        tzset();
        ck_assert_uint_eq(parse("2025-01-31 14:00:00"), (usec_t) 1738332000 * USEC_PER_SEC);
        ck_assert_uint_eq(parse("2025-01-31T14:00:00"), (usec_t) 1738332000 * USEC_PER_SEC);
        ck_assert_uint_eq(parse("2025-01-31 14:00"), (usec_t) 1738332000 * USEC_PER_SEC);
        ck_assert_uint_eq(parse("2025-01-31"), (usec_t) 1738281600 * USEC_PER_SEC);
        ck_assert_uint_eq(parse("14:00"), (usec_t) 1738332000 * USEC_PER_SEC);
        ck_assert_uint_eq(parse("14:00:01"), (usec_t) 1738332001 * USEC_PER_SEC);
        ck_assert_uint_eq(parse("today"), (usec_t) 1738281600 * USEC_PER_SEC);
        ck_assert_uint_eq(parse("yesterday"), (usec_t) (1738281600 - 86400) * USEC_PER_SEC);
        ck_assert_uint_eq(parse("now"), NOW);
        ck_assert_uint_eq(parse("@1700000000"), (usec_t) 1700000000 * USEC_PER_SEC);
        ck_assert_uint_eq(parse("2024-02-29"), (usec_t) 1709164800 * USEC_PER_SEC);
}
END_TEST

START_TEST(test_absolute_local) {
        /* Central Europe, as a POSIX rule (no tzdata needed): UTC+1 in winter, +2 in summer. */
        setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3", 1);
        tzset();
        ck_assert_uint_eq(parse("2025-01-31 15:00:00"), (usec_t) 1738332000 * USEC_PER_SEC);
        ck_assert_uint_eq(parse("2025-07-01 02:00:00"), (usec_t) 1751328000 * USEC_PER_SEC);
        setenv("TZ", "UTC", 1);
        tzset();
}
END_TEST

START_TEST(test_relative) {
        ck_assert_uint_eq(parse("-1h"), NOW - 3600 * USEC_PER_SEC);
        ck_assert_uint_eq(parse("1h ago"), NOW - 3600 * USEC_PER_SEC);
        ck_assert_uint_eq(parse("10min ago"), NOW - 600 * USEC_PER_SEC);
        ck_assert_uint_eq(parse("-10m"), NOW - 600 * USEC_PER_SEC);
        ck_assert_uint_eq(parse("-1h30min"), NOW - 5400 * USEC_PER_SEC);
        ck_assert_uint_eq(parse("1h 30min ago"), NOW - 5400 * USEC_PER_SEC);
        ck_assert_uint_eq(parse("2 days ago"), NOW - 2 * 86400 * USEC_PER_SEC);
        ck_assert_uint_eq(parse("-1w"), NOW - 7 * 86400 * USEC_PER_SEC);
        ck_assert_uint_eq(parse("-90s"), NOW - 90 * USEC_PER_SEC);
        ck_assert_uint_eq(parse("-500ms"), NOW - 500 * USEC_PER_MSEC);
        ck_assert_uint_eq(parse("-100000w"), 0);
}
END_TEST

START_TEST(test_refused) {
        setenv("TZ", "UTC", 1);
        tzset();
        refused("");
        refused("soon");
        refused("-");
        refused("-1");
        refused("-1x");
        refused("-1.5h");
        refused("1h");
        refused("ago");
        refused("2025-02-30");
        refused("2025-13-01");
        refused("2025-01-31 25:00");
        refused("2025-01-31 14:00:00 UTC");
        refused("2025-1-31");
        refused("14");
        refused("@");
        refused("@12x");
        refused("@-1");
}
END_TEST

START_TEST(test_span) {
        usec_t t;

        ck_assert_int_eq(ctl_time_span_parse("1h", &t), 0);
        ck_assert_uint_eq(t, 3600 * USEC_PER_SEC);
        ck_assert_int_eq(ctl_time_span_parse("1 hour 2 minutes 3 seconds", &t), 0);
        ck_assert_uint_eq(t, 3723 * USEC_PER_SEC);
        ck_assert_int_eq(ctl_time_span_parse("5", &t), -EINVAL);
        ck_assert_int_eq(ctl_time_span_parse("", &t), -EINVAL);
        ck_assert_int_eq(ctl_time_span_parse("h", &t), -EINVAL);
        ck_assert_int_eq(ctl_time_span_parse("99999999999999999999w", &t), -ERANGE);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("ctl-time");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_absolute_utc);
        tcase_add_test(tc, test_absolute_local);
        tcase_add_test(tc, test_relative);
        tcase_add_test(tc, test_refused);
        tcase_add_test(tc, test_span);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
