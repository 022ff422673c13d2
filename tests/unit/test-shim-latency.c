/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The latency estimates per (node, model): time to first byte and decode rate as EWMAs, the
 * model's usual answer length shared by every node, eviction and forgetting. */
#include <check.h>
#include <stdio.h>

#include "shim-latency.h"
#include "unit-test.h"

#define NODE_A "0000000000000000000000000000000a"
#define NODE_B "0000000000000000000000000000000b"

/* A streamed answer: 100 ms to the first token, then 101 tokens at 50 tokens/s (2 s). */
START_TEST(test_streamed_answer) {
        ShimLatency l;

        shim_latency_init(&l);
        ck_assert_uint_eq(shim_latency_expected(&l, NODE_A, "m"), 0);
        ck_assert_int_eq(shim_latency_sample(&l, NODE_A, "m", 100000, 2100000, 101), 0);
        /* 100 ms + 101 tokens at 50/s = 2.12 s */
        ck_assert_uint_eq(shim_latency_expected(&l, NODE_A, "m"), 100000 + 2020000);
        /* "m" and "m:latest" are one model; another model is not known. */
        ck_assert_uint_eq(shim_latency_expected(&l, NODE_A, "m:latest"), 2120000);
        ck_assert_uint_eq(shim_latency_expected(&l, NODE_A, "other"), 0);
        ck_assert_uint_eq(shim_latency_expected(&l, NODE_B, "m"), 0);
        shim_latency_done(&l);
}
END_TEST

/* Nodes are compared on the same work: a node whose answers happened to be short is not
 * cheaper for it; its decode rate is what counts. */
START_TEST(test_same_work_compared) {
        ShimLatency l;
        usec_t a, b;

        shim_latency_init(&l);
        /* A: 10 tokens/s, answers of 11 tokens; B: 100 tokens/s, answers of 201 tokens. */
        ck_assert_int_eq(shim_latency_sample(&l, NODE_A, "m", 50000, 1050000, 11), 0);
        ck_assert_int_eq(shim_latency_sample(&l, NODE_B, "m", 50000, 2050000, 201), 0);
        a = shim_latency_expected(&l, NODE_A, "m");
        b = shim_latency_expected(&l, NODE_B, "m");
        /* Mean answer 106 tokens: A 50 ms + 10.6 s, B 50 ms + 1.06 s. */
        ck_assert_uint_eq(a, 50000 + 10600000);
        ck_assert_uint_eq(b, 50000 + 1060000);
        shim_latency_done(&l);
}
END_TEST

/* An answer in one piece (no tokens streamed) counts its whole duration as time to first byte;
 * the EWMA moves a fifth of the way to each new sample. */
START_TEST(test_unstreamed_and_ewma) {
        ShimLatency l;

        shim_latency_init(&l);
        ck_assert_int_eq(shim_latency_sample(&l, NODE_A, "m", 0, 500000, 0), 0);
        ck_assert_uint_eq(shim_latency_expected(&l, NODE_A, "m"), 500000);
        ck_assert_int_eq(shim_latency_sample(&l, NODE_A, "m", 0, 1000000, 0), 0);
        ck_assert_uint_eq(shim_latency_expected(&l, NODE_A, "m"), 600000);
        ck_assert_int_eq(shim_latency_sample(&l, NULL, "m", 1, 1, 0), -EINVAL);
        ck_assert_int_eq(shim_latency_sample(&l, NODE_A, "", 1, 1, 0), -EINVAL);
        shim_latency_done(&l);
}
END_TEST

/* Bounded: past SHIM_LATENCY_MAX_ENTRIES pairs the one updated longest ago goes. */
START_TEST(test_bounded_and_forget) {
        ShimLatency l;
        char model[32];

        shim_latency_init(&l);
        for (unsigned i = 0; i < SHIM_LATENCY_MAX_ENTRIES + 10; i++) {
                snprintf(model, sizeof(model), "model%u", i);
                ck_assert_int_eq(shim_latency_sample(&l, NODE_A, model, 1000 + i, 1000 + i, 0), 0);
                /* model0 stays fresh, so it is never the one to go. */
                ck_assert_int_eq(shim_latency_sample(&l, NODE_A, "model0", 1000, 1000, 0), 0);
        }
        ck_assert_uint_eq(l.n_entries, SHIM_LATENCY_MAX_ENTRIES);
        ck_assert_uint_eq(shim_latency_expected(&l, NODE_A, "model0"), 1000);
        ck_assert_uint_eq(shim_latency_expected(&l, NODE_A, "model1"), 0);
        snprintf(model, sizeof(model), "model%u", SHIM_LATENCY_MAX_ENTRIES + 9);
        ck_assert_uint_ne(shim_latency_expected(&l, NODE_A, model), 0);
        ck_assert_int_eq(shim_latency_sample(&l, NODE_B, "model0", 7, 7, 0), 0);
        shim_latency_forget(&l, NODE_A);
        ck_assert_uint_eq(l.n_entries, 1);
        ck_assert_uint_eq(shim_latency_expected(&l, NODE_A, "model0"), 0);
        ck_assert_uint_eq(shim_latency_expected(&l, NODE_B, "model0"), 7);
        shim_latency_done(&l);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shim-latency");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_streamed_answer);
        tcase_add_test(tc, test_same_work_compared);
        tcase_add_test(tc, test_unstreamed_and_ewma);
        tcase_add_test(tc, test_bounded_and_forget);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
