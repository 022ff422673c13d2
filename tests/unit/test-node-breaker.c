/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/routerd/node-breaker.c: closed, open and half-open with a fake clock,
 * the backoff's doubling, cap and jitter, and which outcomes count. */

#include "node-breaker.h"
#include "unit-test.h"

#define S USEC_PER_SEC
#define MS USEC_PER_MSEC
#define T0 (1000 * S)

static NodeBreaker b;

static void setup(void) {
        node_breaker_init(&b, T0);
}

/* Fails the breaker until it opens; returns when that happened. */
static usec_t fail_until_open(usec_t t, uint64_t random) {
        for (unsigned i = 0; i < 100 && b.state != NODE_BREAKER_OPEN; i++, t += MS)
                (void) node_breaker_record(&b, NODE_OUTCOME_FAILURE, t, random);
        ck_assert_int_eq(b.state, NODE_BREAKER_OPEN);
        return t - MS;
}

START_TEST(test_closed_opens_after_k_failures) {
        ck_assert_int_eq(b.state, NODE_BREAKER_CLOSED);
        ck_assert_str_eq(node_breaker_state_to_string(b.state), "closed");
        ck_assert(node_breaker_routable(&b));
        ck_assert_uint_eq(node_breaker_next_wakeup(&b), USEC_INFINITY);

        for (unsigned i = 1; i < NODE_BREAKER_FAILURES; i++) {
                ck_assert(!node_breaker_record(&b, NODE_OUTCOME_FAILURE, T0 + i * MS, 0));
                ck_assert_int_eq(b.state, NODE_BREAKER_CLOSED);
                ck_assert_uint_eq(b.consecutive_failures, i);
        }
        ck_assert(node_breaker_record(&b, NODE_OUTCOME_FAILURE, T0 + 10 * MS, 0));
        ck_assert_int_eq(b.state, NODE_BREAKER_OPEN);
        ck_assert_str_eq(node_breaker_state_to_string(b.state), "open");
        ck_assert(!node_breaker_routable(&b));
        /* random 0: no jitter, the whole first backoff. */
        ck_assert_uint_eq(b.open_until, T0 + 10 * MS + 1 * S);
        ck_assert_uint_eq(node_breaker_next_wakeup(&b), b.open_until);
        ck_assert_uint_eq(b.openings, 1);
        ck_assert_uint_eq(b.n_opened, 1);
        ck_assert_uint_eq(b.last_change, T0 + 10 * MS);
}
END_TEST

START_TEST(test_success_resets_the_count) {
        for (unsigned round = 0; round < 10; round++) {
                for (unsigned i = 1; i < NODE_BREAKER_FAILURES; i++)
                        ck_assert(!node_breaker_record(&b, NODE_OUTCOME_FAILURE, T0, 0));
                ck_assert(!node_breaker_record(&b, NODE_OUTCOME_SUCCESS, T0, 0));
                ck_assert_uint_eq(b.consecutive_failures, 0);
        }
        ck_assert_int_eq(b.state, NODE_BREAKER_CLOSED);
        ck_assert_uint_eq(b.n_opened, 0);
}
END_TEST

START_TEST(test_open_ignores_outcomes_until_the_deadline) {
        usec_t t = fail_until_open(T0, 0), until = b.open_until;

        /* Answers to requests sent before it opened change nothing. */
        ck_assert(!node_breaker_record(&b, NODE_OUTCOME_SUCCESS, t + 1 * MS, 0));
        ck_assert(!node_breaker_record(&b, NODE_OUTCOME_FAILURE, t + 2 * MS, 0));
        ck_assert_int_eq(b.state, NODE_BREAKER_OPEN);
        ck_assert_uint_eq(b.open_until, until);

        ck_assert(!node_breaker_tick(&b, until - 1));
        ck_assert_int_eq(b.state, NODE_BREAKER_OPEN);
        ck_assert(node_breaker_tick(&b, until));
        ck_assert_int_eq(b.state, NODE_BREAKER_HALF_OPEN);
        ck_assert_str_eq(node_breaker_state_to_string(b.state), "half-open");
        ck_assert(node_breaker_routable(&b));
        ck_assert_uint_eq(node_breaker_next_wakeup(&b), USEC_INFINITY);
        ck_assert_uint_eq(b.last_change, until);
        /* Ticking again is no change. */
        ck_assert(!node_breaker_tick(&b, until + 10 * S));
}
END_TEST

START_TEST(test_half_open_success_closes_and_resets_the_backoff) {
        usec_t t = fail_until_open(T0, 0);

        ck_assert(node_breaker_tick(&b, b.open_until));
        t = b.last_change;
        /* A neutral answer does not decide. */
        ck_assert(!node_breaker_record(&b, NODE_OUTCOME_NEUTRAL, t + MS, 0));
        ck_assert_int_eq(b.state, NODE_BREAKER_HALF_OPEN);
        ck_assert(node_breaker_record(&b, NODE_OUTCOME_SUCCESS, t + 2 * MS, 0));
        ck_assert_int_eq(b.state, NODE_BREAKER_CLOSED);
        ck_assert_uint_eq(b.openings, 0);
        ck_assert_uint_eq(b.consecutive_failures, 0);

        /* The next opening cools for the first backoff again, and only after K failures. */
        t = fail_until_open(t + 1 * S, 0);
        ck_assert_uint_eq(b.open_until, t + 1 * S);
        ck_assert_uint_eq(b.n_opened, 2);
}
END_TEST

START_TEST(test_half_open_failure_doubles_up_to_the_cap) {
        usec_t t = fail_until_open(T0, 0), expected = 1 * S;

        ck_assert_uint_eq(b.open_until - t, expected);
        for (unsigned i = 2; i <= 10; i++) {
                t = b.open_until;
                ck_assert(node_breaker_tick(&b, t));
                /* One failure is enough in half-open. */
                ck_assert(node_breaker_record(&b, NODE_OUTCOME_FAILURE, t + 5 * MS, 0));
                ck_assert_int_eq(b.state, NODE_BREAKER_OPEN);
                ck_assert_uint_eq(b.openings, i);
                expected = MIN(expected * 2, 30 * S);
                ck_assert_uint_eq(b.open_until - (t + 5 * MS), expected);
        }
        /* 1, 2, 4, 8, 16, 30, 30, ... */
        ck_assert_uint_eq(expected, 30 * S);
        ck_assert_uint_eq(b.n_opened, 10);
}
END_TEST

START_TEST(test_backoff_and_jitter_bounds) {
        static const usec_t nominal[] = { 0, 1 * S, 2 * S, 4 * S, 8 * S, 16 * S, 30 * S, 30 * S };

        for (unsigned n = 1; n < ELEMENTSOF(nominal); n++) {
                ck_assert_uint_eq(node_breaker_backoff(n, 0), nominal[n]);
                for (uint64_t r = 0; r < 5000; r++) {
                        uint64_t random = r * UINT64_C(0x9e3779b97f4a7c15);
                        usec_t v = node_breaker_backoff(n, random);

                        /* At most a tenth shorter, never longer. */
                        ck_assert_uint_le(v, nominal[n]);
                        ck_assert_uint_ge(v, nominal[n] - nominal[n] / 10);
                }
                /* The jitter really moves it. */
                ck_assert_uint_lt(node_breaker_backoff(n, nominal[n] / 10), nominal[n]);
        }
        ck_assert_uint_eq(node_breaker_backoff(UINT32_MAX, UINT64_MAX), 30 * S - UINT64_MAX % (3 * S + 1));
        ck_assert_uint_eq(node_breaker_backoff(1000, 0), 30 * S);

        /* And through the breaker: the deadline within the bounds. */
        {
                usec_t t = fail_until_open(T0, UINT64_C(123456789));

                ck_assert_uint_le(b.open_until - t, 1 * S);
                ck_assert_uint_ge(b.open_until - t, 900 * MS);
                ck_assert_uint_eq(b.open_until - t, 1 * S - UINT64_C(123456789) % (100 * MS + 1));
        }
}
END_TEST

START_TEST(test_outcome_classify) {
        /* Successes. */
        ck_assert_int_eq(node_outcome_classify(200, NULL), NODE_OUTCOME_SUCCESS);
        ck_assert_int_eq(node_outcome_classify(200, ""), NODE_OUTCOME_SUCCESS);
        ck_assert_int_eq(node_outcome_classify(204, ""), NODE_OUTCOME_SUCCESS);
        /* Failures: no status, 5xx, an error string. */
        ck_assert_int_eq(node_outcome_classify(0, ""), NODE_OUTCOME_FAILURE);
        ck_assert_int_eq(node_outcome_classify(0, "connection refused"), NODE_OUTCOME_FAILURE);
        ck_assert_int_eq(node_outcome_classify(500, ""), NODE_OUTCOME_FAILURE);
        ck_assert_int_eq(node_outcome_classify(502, "no mesh key to forward with"), NODE_OUTCOME_FAILURE);
        ck_assert_int_eq(node_outcome_classify(503, "answered with an error status"), NODE_OUTCOME_FAILURE);
        ck_assert_int_eq(node_outcome_classify(200, "upstream reset during the response"), NODE_OUTCOME_FAILURE);
        /* The client's doing: 4xx, 499, a client that hung up mid-answer. */
        ck_assert_int_eq(node_outcome_classify(400, ""), NODE_OUTCOME_NEUTRAL);
        ck_assert_int_eq(node_outcome_classify(404, ""), NODE_OUTCOME_NEUTRAL);
        ck_assert_int_eq(node_outcome_classify(429, ""), NODE_OUTCOME_NEUTRAL);
        ck_assert_int_eq(node_outcome_classify(499, NULL), NODE_OUTCOME_NEUTRAL);
        ck_assert_int_eq(node_outcome_classify(499, "client disconnected"), NODE_OUTCOME_NEUTRAL);
        ck_assert_int_eq(node_outcome_classify(200, "client disconnected"), NODE_OUTCOME_NEUTRAL);
        /* A 5xx stays a failure whoever left afterwards. */
        ck_assert_int_eq(node_outcome_classify(503, "client disconnected"), NODE_OUTCOME_FAILURE);
}
END_TEST

START_TEST(test_4xx_and_499_never_open) {
        for (unsigned i = 0; i < 50; i++) {
                ck_assert(!node_breaker_record(&b, node_outcome_classify(499, "client disconnected"), T0 + i, 0));
                ck_assert(!node_breaker_record(&b, node_outcome_classify(404, ""), T0 + i, 0));
                ck_assert(!node_breaker_record(&b, node_outcome_classify(200, "client disconnected"), T0 + i, 0));
        }
        ck_assert_int_eq(b.state, NODE_BREAKER_CLOSED);
        ck_assert_uint_eq(b.consecutive_failures, 0);

        /* Neutral outcomes between failures neither count nor break the run. */
        ck_assert(!node_breaker_record(&b, NODE_OUTCOME_FAILURE, T0, 0));
        ck_assert(!node_breaker_record(&b, node_outcome_classify(499, NULL), T0, 0));
        ck_assert(!node_breaker_record(&b, NODE_OUTCOME_FAILURE, T0, 0));
        ck_assert(!node_breaker_record(&b, node_outcome_classify(400, ""), T0, 0));
        ck_assert(node_breaker_record(&b, NODE_OUTCOME_FAILURE, T0, 0));
        ck_assert_int_eq(b.state, NODE_BREAKER_OPEN);
}
END_TEST

static Suite *breaker_suite(void) {
        Suite *s = suite_create("node-breaker");
        TCase *tc = tcase_create("breaker");

        tcase_add_checked_fixture(tc, setup, NULL);
        tcase_add_test(tc, test_closed_opens_after_k_failures);
        tcase_add_test(tc, test_success_resets_the_count);
        tcase_add_test(tc, test_open_ignores_outcomes_until_the_deadline);
        tcase_add_test(tc, test_half_open_success_closes_and_resets_the_backoff);
        tcase_add_test(tc, test_half_open_failure_doubles_up_to_the_cap);
        tcase_add_test(tc, test_backoff_and_jitter_bounds);
        tcase_add_test(tc, test_outcome_classify);
        tcase_add_test(tc, test_4xx_and_499_never_open);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(breaker_suite());
}
