/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/ctl/ctl-nodes.c: a node goes by its gossip name only when that name is
 * its own, else by its id's first 12 characters; this node is starred. */
#include "ctl-nodes.h"
#include "unit-test.h"

#define ID_A "aaaaaaaaaaaa1111111111111111111a"
#define ID_B "bbbbbbbbbbbb2222222222222222222b"
#define ID_C "cccccccccccc3333333333333333333c"
#define ID_D "dddddddddddd4444444444444444444d"
#define ID_E "eeeeeeeeeeee5555555555555555555e"

static const GossipMember members[] = {
        { .id = ID_A, .name = "kitchen", .state = "alive" },
        { .id = ID_B, .name = "attic", .state = "suspect" },
        /* Two nodes started with the same --name. */
        { .id = ID_C, .name = "twin", .state = "alive" },
        { .id = ID_D, .name = "twin", .state = "alive" },
        { .id = ID_E, .name = "", .state = "alive" },
};

START_TEST(test_name) {
        ck_assert_str_eq(ctl_nodes_name(members, ELEMENTSOF(members), ID_A), "kitchen");
        ck_assert_str_eq(ctl_nodes_name(members, ELEMENTSOF(members), ID_B), "attic");
        ck_assert_ptr_null(ctl_nodes_name(members, ELEMENTSOF(members), ID_C));
        ck_assert_ptr_null(ctl_nodes_name(members, ELEMENTSOF(members), ID_E));
        ck_assert_ptr_null(ctl_nodes_name(members, ELEMENTSOF(members), "f00"));
        ck_assert_ptr_null(ctl_nodes_name(NULL, 0, ID_A));
}
END_TEST

START_TEST(test_join) {
        const char *holders[] = { ID_B, ID_A, ID_C, "f00" };
        _cleanup_free_ char *s = NULL, *none = NULL, *bare = NULL;

        s = ctl_nodes_join(holders, ELEMENTSOF(holders), ID_A, members, ELEMENTSOF(members));
        ck_assert_str_eq(s, "attic,kitchen*,cccccccccccc,f00");
        /* Without gossip (gossipd down): ids only, this node still marked. */
        bare = ctl_nodes_join(holders, 2, ID_B, NULL, 0);
        ck_assert_str_eq(bare, "bbbbbbbbbbbb*,aaaaaaaaaaaa");
        none = ctl_nodes_join(NULL, 0, NULL, members, ELEMENTSOF(members));
        ck_assert_str_eq(none, "");
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("ctl-nodes");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_name);
        tcase_add_test(tc, test_join);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
