/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shimd/shim-retry.c: the budget, never the same node twice, one fresh
 * connection for a reused keep-alive one, no second wait after a timeout, unrouted requests. */
#include <stdio.h>

#include "shim-retry.h"
#include "unit-test.h"

#define NODE_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define NODE_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define NODE_C "cccccccccccccccccccccccccccccccc"

static const ShimRetryRequest routed = { .repeatable = true, .routed = true };
static const ShimAttemptFailure refused = {};

START_TEST(test_other_node_then_give_up) {
        ShimRetry r;
        char *const *x;

        shim_retry_init(&r, SHIM_RETRY_DEFAULT);
        x = shim_retry_exclude(&r);
        ck_assert_ptr_null(x[0]);

        shim_retry_target(&r, NODE_A);
        ck_assert_int_eq(shim_retry_next(&r, &routed, &refused), SHIM_RETRY_OTHER_NODE);
        x = shim_retry_exclude(&r);
        ck_assert_str_eq(x[0], NODE_A);
        ck_assert_ptr_null(x[1]);

        /* The second node failed too: a third, never one of the two again. */
        shim_retry_target(&r, NODE_B);
        ck_assert_int_eq(shim_retry_next(&r, &routed, &refused), SHIM_RETRY_OTHER_NODE);
        x = shim_retry_exclude(&r);
        ck_assert_str_eq(x[0], NODE_A);
        ck_assert_str_eq(x[1], NODE_B);
        ck_assert_ptr_null(x[2]);
        /* The third failed: two retries were the budget. */
        shim_retry_target(&r, NODE_C);
        ck_assert_int_eq(shim_retry_next(&r, &routed, &refused), SHIM_RETRY_GIVE_UP);
}
END_TEST

START_TEST(test_targets_bounded_and_unique) {
        ShimRetry r;

        shim_retry_init(&r, SHIM_RETRY_DEFAULT);
        shim_retry_target(&r, NULL);
        shim_retry_target(&r, "");
        ck_assert_uint_eq(r.n_tried, 0);
        shim_retry_target(&r, NODE_A);
        shim_retry_target(&r, NODE_A);
        ck_assert_uint_eq(r.n_tried, 1);
        for (unsigned i = 0; i < 2 * SHIM_RETRY_MAX_NODES; i++) {
                char id[NODE_ID_LEN + 1];

                snprintf(id, sizeof(id), "%032x", i + 1);
                shim_retry_target(&r, id);
        }
        ck_assert_uint_eq(r.n_tried, SHIM_RETRY_MAX_NODES);
        ck_assert_ptr_null(shim_retry_exclude(&r)[SHIM_RETRY_MAX_NODES]);
}
END_TEST

START_TEST(test_fresh_connection_once) {
        ShimAttemptFailure reused = { .reused = true, .connected = true };
        ShimRetry r;

        shim_retry_init(&r, SHIM_RETRY_DEFAULT);
        shim_retry_target(&r, NODE_A);
        ck_assert_int_eq(shim_retry_next(&r, &routed, &reused), SHIM_RETRY_FRESH_CONNECTION);
        /* Once: the fresh one failed as well, so the node is at fault. */
        ck_assert_int_eq(shim_retry_next(&r, &routed, &reused), SHIM_RETRY_OTHER_NODE);
        /* And the budget is spent. */
        shim_retry_target(&r, NODE_B);
        ck_assert_int_eq(shim_retry_next(&r, &routed, &refused), SHIM_RETRY_GIVE_UP);
}
END_TEST

START_TEST(test_fresh_connection_only_when_harmless) {
        ShimAttemptFailure reused = { .reused = true, .connected = true };
        ShimRetryRequest post = { .repeatable = false, .routed = false };
        ShimAttemptFailure lost = { .reused = true, .connected = true, .node_lost = true };
        ShimRetry r;

        /* A pull or a delete may have reached Ollama: never twice. */
        shim_retry_init(&r, SHIM_RETRY_DEFAULT);
        ck_assert_int_eq(shim_retry_next(&r, &post, &reused), SHIM_RETRY_GIVE_UP);

        /* Its node left the table: the connection was not the problem. */
        shim_retry_init(&r, SHIM_RETRY_DEFAULT);
        shim_retry_target(&r, NODE_A);
        ck_assert_int_eq(shim_retry_next(&r, &routed, &lost), SHIM_RETRY_OTHER_NODE);
}
END_TEST

START_TEST(test_timeout_after_send_not_retried) {
        ShimAttemptFailure silent = { .connected = true, .timed_out = true };
        ShimAttemptFailure connect_timeout = { .connected = false, .timed_out = true };
        ShimRetry r;

        shim_retry_init(&r, SHIM_RETRY_DEFAULT);
        shim_retry_target(&r, NODE_A);
        ck_assert_int_eq(shim_retry_next(&r, &routed, &silent), SHIM_RETRY_GIVE_UP);

        /* A connect that timed out never reached the node. */
        shim_retry_init(&r, SHIM_RETRY_DEFAULT);
        shim_retry_target(&r, NODE_A);
        ck_assert_int_eq(shim_retry_next(&r, &routed, &connect_timeout), SHIM_RETRY_OTHER_NODE);
}
END_TEST

START_TEST(test_unrouted_request) {
        ShimRetryRequest local = { .repeatable = true, .routed = false };
        ShimRetry r;

        /* Not routed (this node's Ollama by configuration): nowhere else to go. */
        shim_retry_init(&r, SHIM_RETRY_DEFAULT);
        ck_assert_int_eq(shim_retry_next(&r, &local, &refused), SHIM_RETRY_GIVE_UP);
        ck_assert_str_eq(shim_retry_action_to_string(SHIM_RETRY_GIVE_UP), "give up");
        ck_assert_str_eq(shim_retry_action_to_string(SHIM_RETRY_OTHER_NODE), "other node");
}
END_TEST

START_TEST(test_budget) {
        ShimAttemptFailure reused = { .reused = true };
        ShimRetry r;

        shim_retry_init(&r, SHIM_RETRY_DEFAULT);
        for (unsigned i = 0; i < SHIM_RETRY_DEFAULT; i++)
                (void) shim_retry_next(&r, &routed, &refused);
        /* Whatever happened, no more retries than the budget. */
        ck_assert_int_eq(shim_retry_next(&r, &routed, &reused), SHIM_RETRY_GIVE_UP);
        ck_assert_int_eq(shim_retry_next(&r, &routed, &refused), SHIM_RETRY_GIVE_UP);
}
END_TEST

/* A 5xx answer: another node, never a fresh connection to the same one; as it is when there is
 * nowhere else to go. */
START_TEST(test_status_goes_elsewhere) {
        ShimAttemptFailure busy = { .connected = true, .reused = true, .status = true };
        ShimRetryRequest local = { .repeatable = true, .routed = false };
        ShimRetry r;

        shim_retry_init(&r, SHIM_RETRY_DEFAULT);
        shim_retry_target(&r, NODE_A);
        ck_assert_int_eq(shim_retry_next(&r, &routed, &busy), SHIM_RETRY_OTHER_NODE);
        shim_retry_init(&r, SHIM_RETRY_DEFAULT);
        ck_assert_int_eq(shim_retry_next(&r, &local, &busy), SHIM_RETRY_GIVE_UP);
}
END_TEST

/* [router] retries: 0 never retries; more than the nodes a request may try is bounded. */
START_TEST(test_configured_retries) {
        ShimRetry r;

        shim_retry_init(&r, 0);
        shim_retry_target(&r, NODE_A);
        ck_assert_int_eq(shim_retry_next(&r, &routed, &refused), SHIM_RETRY_GIVE_UP);

        shim_retry_init(&r, 1000);
        ck_assert_uint_eq(r.max_retries, SHIM_RETRY_MAX_NODES - 1);
        for (unsigned i = 0; i < SHIM_RETRY_MAX_NODES - 1; i++) {
                char id[NODE_ID_LEN + 1];

                snprintf(id, sizeof(id), "%032x", i + 1);
                shim_retry_target(&r, id);
                ck_assert_int_eq(shim_retry_next(&r, &routed, &refused), SHIM_RETRY_OTHER_NODE);
        }
        shim_retry_target(&r, NODE_C);
        ck_assert_int_eq(shim_retry_next(&r, &routed, &refused), SHIM_RETRY_GIVE_UP);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shim-retry");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_other_node_then_give_up);
        tcase_add_test(tc, test_targets_bounded_and_unique);
        tcase_add_test(tc, test_fresh_connection_once);
        tcase_add_test(tc, test_fresh_connection_only_when_harmless);
        tcase_add_test(tc, test_timeout_after_send_not_retried);
        tcase_add_test(tc, test_unrouted_request);
        tcase_add_test(tc, test_budget);
        tcase_add_test(tc, test_status_goes_elsewhere);
        tcase_add_test(tc, test_configured_retries);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
