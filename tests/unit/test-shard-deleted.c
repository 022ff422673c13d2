/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The deleted collections: an incarnation is a name and a creation time; the text form round
 * trips; bad lines are skipped, not trusted; the list is bounded. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard-deleted.h"
#include "unit-test.h"

START_TEST(test_incarnations) {
        ShardDeletedList l = {};

        ck_assert_int_eq(shard_deleted_add(&l, "docs", 1000), 0);
        ck_assert_int_eq(shard_deleted_add(&l, "docs", 1000), 0);
        ck_assert_uint_eq(l.n, 1);
        ck_assert(shard_deleted_contains(&l, "docs", 1000));
        /* Created again under the same name: another collection. */
        ck_assert(!shard_deleted_contains(&l, "docs", 2000));
        ck_assert(!shard_deleted_contains(&l, "other", 1000));
        shard_deleted_done(&l);
}
END_TEST

START_TEST(test_round_trip_and_bad_lines) {
        ShardDeletedList l = {}, back = {};
        const char *text = "5 a\n\n7 b.c\nx y\n9\n 3 lead\n12 bad/name\n18446744073709551616 big\n42 last";
        char *out = NULL;
        size_t size = 0;

        ck_assert_int_eq(shard_deleted_add(&l, "docs", 17), 0);
        ck_assert_int_eq(shard_deleted_add(&l, "kb-1", 18), 0);
        ck_assert_int_eq(shard_deleted_format(&l, &out, &size), 0);
        ck_assert_str_eq(out, "17 docs\n18 kb-1\n");
        ck_assert_int_eq(shard_deleted_parse(&back, out, size), 0);
        ck_assert_uint_eq(back.n, 2);
        ck_assert(shard_deleted_contains(&back, "kb-1", 18));
        free(out);
        shard_deleted_done(&back);

        /* Skipped: "x y", "9", " 3 lead", "12 bad/name", the overflowing number. */
        ck_assert_int_eq(shard_deleted_parse(&back, text, strlen(text)), 5);
        ck_assert_uint_eq(back.n, 3);
        ck_assert(shard_deleted_contains(&back, "a", 5));
        ck_assert(shard_deleted_contains(&back, "b.c", 7));
        ck_assert(shard_deleted_contains(&back, "last", 42));
        shard_deleted_done(&back);
        shard_deleted_done(&l);
}
END_TEST

START_TEST(test_bounded) {
        ShardDeletedList l = {};
        char name[32];

        for (unsigned i = 0; i < SHARD_DELETED_MAX + 5; i++) {
                snprintf(name, sizeof(name), "c%u", i);
                ck_assert_int_eq(shard_deleted_add(&l, name, i), 0);
        }
        ck_assert_uint_eq(l.n, SHARD_DELETED_MAX);
        ck_assert(!shard_deleted_contains(&l, "c0", 0));
        ck_assert(!shard_deleted_contains(&l, "c4", 4));
        ck_assert(shard_deleted_contains(&l, "c5", 5));
        snprintf(name, sizeof(name), "c%u", SHARD_DELETED_MAX + 4);
        ck_assert(shard_deleted_contains(&l, name, SHARD_DELETED_MAX + 4));
        shard_deleted_done(&l);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shard-deleted");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_incarnations);
        tcase_add_test(tc, test_round_trip_and_bad_lines);
        tcase_add_test(tc, test_bounded);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
