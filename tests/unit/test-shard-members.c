/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The shardd members: sorted ids for placement, changes reported only when something changed,
 * bounds and bad ids. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "shard-members.h"
#include "unit-test.h"

static const char *id_of(unsigned i, char buf[static NODE_ID_LEN + 1]) {
        snprintf(buf, NODE_ID_LEN + 1, "%032x", i);
        return buf;
}

START_TEST(test_set_remove_sorted) {
        ShardMembers m = {};
        char a[NODE_ID_LEN + 1], b[NODE_ID_LEN + 1], c[NODE_ID_LEN + 1];
        uint64_t g;

        ck_assert_int_eq(shard_members_set(&m, id_of(30, c), "http://10.0.0.3:11437", true), 1);
        ck_assert_int_eq(shard_members_set(&m, id_of(10, a), "http://10.0.0.1:11437", true), 1);
        ck_assert_int_eq(shard_members_set(&m, id_of(20, b), "http://10.0.0.2:11437", false), 1);
        ck_assert_uint_eq(m.n_peers, 3);
        ck_assert_str_eq(m.ids[0], a);
        ck_assert_str_eq(m.ids[1], b);
        ck_assert_str_eq(m.ids[2], c);
        ck_assert_ptr_null(m.ids[3]);
        g = m.generation;
        /* The same again: no change. */
        ck_assert_int_eq(shard_members_set(&m, b, "http://10.0.0.2:11437", false), 0);
        ck_assert_uint_eq(m.generation, g);
        ck_assert_int_eq(shard_members_set(&m, b, "http://10.0.0.2:11437", true), 1);
        ck_assert(shard_members_find(&m, b)->alive);
        ck_assert_int_eq(shard_members_set(&m, b, "http://10.0.0.9:11437", true), 1);
        ck_assert_str_eq(shard_members_find(&m, b)->url, "http://10.0.0.9:11437");
        ck_assert_uint_gt(m.generation, g);

        ck_assert_int_eq(shard_members_remove(&m, b), 1);
        ck_assert_int_eq(shard_members_remove(&m, b), 0);
        ck_assert_uint_eq(m.n_peers, 2);
        ck_assert_str_eq(m.ids[0], a);
        ck_assert_str_eq(m.ids[1], c);
        ck_assert_ptr_null(m.ids[2]);
        ck_assert_ptr_null(shard_members_find(&m, b));
        shard_members_done(&m);
}
END_TEST

START_TEST(test_bad_input_and_bounds) {
        ShardMembers m = {};
        char id[NODE_ID_LEN + 1];

        ck_assert_int_eq(shard_members_set(&m, "short", "http://x:1", true), -EINVAL);
        ck_assert_int_eq(shard_members_set(&m, "0123456789ABCDEF0123456789abcdef", "http://x:1", true), -EINVAL);
        ck_assert_int_eq(shard_members_set(&m, id_of(1, id), "", true), -EINVAL);
        ck_assert_int_eq(shard_members_set(&m, NULL, "http://x:1", true), -EINVAL);
        for (unsigned i = 0; i < SHARD_PEERS_MAX; i++)
                ck_assert_int_eq(shard_members_set(&m, id_of(SHARD_PEERS_MAX - i, id), "http://x:1", true), 1);
        ck_assert_int_eq(shard_members_set(&m, id_of(SHARD_PEERS_MAX + 7, id), "http://x:1", true), -E2BIG);
        for (unsigned i = 1; i < SHARD_PEERS_MAX; i++)
                ck_assert_int_lt(strcmp(m.ids[i - 1], m.ids[i]), 0);
        shard_members_done(&m);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shard-members");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_set_remove_sorted);
        tcase_add_test(tc, test_bad_input_and_bounds);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
