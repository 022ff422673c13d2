/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/ctl/ctl-table.c: column widths, the legend, ellipsizing, control
 * characters, rows that end early, and sizes. */
#include <stdio.h>

#include "ctl-table.h"
#include "unit-test.h"

static char *print(CtlTable *t, bool legend) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        ck_assert_ptr_nonnull(f);
        ck_assert_int_eq(ctl_table_print(t, f, legend), 0);
        fclose(f);
        return buf;
}

START_TEST(test_columns) {
        _cleanup_(ctl_table_freep) CtlTable *t = ctl_table_new("ID", "NAME", "STATE", NULL);
        _cleanup_free_ char *out = NULL, *bare = NULL;

        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(ctl_table_add(t, "a1"), 0);
        ck_assert_int_eq(ctl_table_add(t, "node-one"), 0);
        ck_assert_int_eq(ctl_table_add(t, "alive"), 0);
        ck_assert_int_eq(ctl_table_addf(t, "%s%d", "b", 2), 0);
        ck_assert_int_eq(ctl_table_add(t, NULL), 0);
        ck_assert_int_eq(ctl_table_add(t, "suspect"), 0);
        ck_assert_uint_eq(ctl_table_rows(t), 2);

        out = print(t, true);
        ck_assert_str_eq(out,
                         "ID NAME     STATE\n"
                         "a1 node-one alive\n"
                         "b2 -        suspect\n");
        bare = print(t, false);
        ck_assert_str_eq(bare,
                         "a1 node-one alive\n"
                         "b2 -        suspect\n");
}
END_TEST

START_TEST(test_ellipsize_and_control_chars) {
        _cleanup_(ctl_table_freep) CtlTable *t = ctl_table_new("K", "V", NULL);
        _cleanup_free_ char *out = NULL;

        ctl_table_set_max_width(t, 1, 5);
        ck_assert_int_eq(ctl_table_add(t, "x\ty"), 0);
        ck_assert_int_eq(ctl_table_add(t, "abcdefgh"), 0);
        ck_assert_int_eq(ctl_table_add(t, "z"), 0);
        ck_assert_int_eq(ctl_table_add(t, "äöü"), 0);
        out = print(t, true);
        ck_assert_str_eq(out,
                         "K   V\n"
                         "x?y abcd…\n"
                         "z   äöü\n");
}
END_TEST

START_TEST(test_partial_row) {
        _cleanup_(ctl_table_freep) CtlTable *t = ctl_table_new("A", "B", NULL);
        _cleanup_free_ char *out = NULL;

        ck_assert_int_eq(ctl_table_add(t, "only"), 0);
        ck_assert_uint_eq(ctl_table_rows(t), 1);
        out = print(t, false);
        ck_assert_str_eq(out, "only\n");
}
END_TEST

START_TEST(test_too_many_columns) {
        ck_assert_ptr_null(ctl_table_new("1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", NULL));
        ck_assert_ptr_null(ctl_table_new(NULL, NULL));
}
END_TEST

START_TEST(test_format_bytes) {
        char buf[CTL_TABLE_BYTES_MAX];

        ck_assert_str_eq(ctl_table_format_bytes(0, buf), "0B");
        ck_assert_str_eq(ctl_table_format_bytes(1023, buf), "1023B");
        ck_assert_str_eq(ctl_table_format_bytes(1024, buf), "1.0K");
        ck_assert_str_eq(ctl_table_format_bytes(1536, buf), "1.5K");
        ck_assert_str_eq(ctl_table_format_bytes(85 * 1024 * 1024 + 200 * 1024, buf), "85.2M");
        /* Just under a unit rounds up into it, never to "1024.0K". */
        ck_assert_str_eq(ctl_table_format_bytes(1024 * 1024 - 1, buf), "1.0M");
        ck_assert_str_eq(ctl_table_format_bytes(3ULL << 40, buf), "3.0T");
        ck_assert_str_eq(ctl_table_format_bytes(UINT64_MAX, buf), "16.0E");
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("ctl-table");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_columns);
        tcase_add_test(tc, test_ellipsize_and_control_chars);
        tcase_add_test(tc, test_partial_row);
        tcase_add_test(tc, test_too_many_columns);
        tcase_add_test(tc, test_format_bytes);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
