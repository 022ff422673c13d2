/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/routerd/upstream-health.c: the up/down/probe schedule of an
 * upstream, driven by a fake clock, and the TTFB average. */

#include "upstream-health.h"
#include "unit-test.h"

#define S USEC_PER_SEC
#define MS USEC_PER_MSEC
#define T0 (1000 * S)

static UpstreamHealth h;

static void setup(void) {
        upstream_health_init(&h, 10 * S, 1 * S, T0);
}

START_TEST(test_first_fetch_at_once) {
        ck_assert_int_eq(h.state, UPSTREAM_UNKNOWN);
        ck_assert_str_eq(upstream_state_to_string(h.state), "unknown");
        ck_assert(upstream_health_fetch_due(&h, T0));
        ck_assert_uint_eq(upstream_health_next_wakeup(&h), T0);

        upstream_health_fetch_started(&h, T0);
        ck_assert(h.fetching);
        ck_assert(!upstream_health_fetch_due(&h, T0 + 100 * S));
        ck_assert_uint_eq(upstream_health_next_wakeup(&h), USEC_INFINITY);
        ck_assert_uint_eq(h.n_fetches, 1);
}
END_TEST

START_TEST(test_up_refreshes_every_tags_interval) {
        usec_t t = T0;

        for (int i = 0; i < 5; i++) {
                ck_assert(upstream_health_fetch_due(&h, t));
                upstream_health_fetch_started(&h, t);
                /* Only the first success changes the state. */
                ck_assert(upstream_health_fetch_succeeded(&h, t + 5 * MS) == (i == 0));
                ck_assert_int_eq(h.state, UPSTREAM_UP);
                ck_assert_uint_eq(upstream_health_next_wakeup(&h), t + 5 * MS + 10 * S);
                ck_assert(!upstream_health_fetch_due(&h, t + 5 * MS + 10 * S - 1));
                t += 5 * MS + 10 * S;
        }
        ck_assert_uint_eq(h.n_fetches, 5);
        ck_assert_uint_eq(h.n_failures, 0);
}
END_TEST

START_TEST(test_down_probes_every_probe_interval) {
        usec_t t = T0;

        upstream_health_fetch_started(&h, t);
        ck_assert(upstream_health_fetch_succeeded(&h, t));
        t += 10 * S;

        /* The first failure marks it down at once; later ones change nothing. */
        for (unsigned i = 1; i <= 4; i++) {
                ck_assert(upstream_health_fetch_due(&h, t));
                upstream_health_fetch_started(&h, t);
                ck_assert(upstream_health_fetch_failed(&h, t + 5 * S) == (i == 1));
                ck_assert_int_eq(h.state, UPSTREAM_DOWN);
                ck_assert_str_eq(upstream_state_to_string(h.state), "down");
                ck_assert_uint_eq(h.consecutive_failures, i);
                ck_assert_uint_eq(upstream_health_next_wakeup(&h), t + 5 * S + 1 * S);
                t += 6 * S;
        }
        ck_assert_uint_eq(h.last_change, T0 + 10 * S + 5 * S);

        /* It answers: up at once, failures forgotten, back to the slow schedule. */
        upstream_health_fetch_started(&h, t);
        ck_assert(upstream_health_fetch_succeeded(&h, t));
        ck_assert_int_eq(h.state, UPSTREAM_UP);
        ck_assert_uint_eq(h.consecutive_failures, 0);
        ck_assert_uint_eq(h.n_failures, 4);
        ck_assert_uint_eq(upstream_health_next_wakeup(&h), t + 10 * S);
}
END_TEST

START_TEST(test_unknown_to_down) {
        upstream_health_fetch_started(&h, T0);
        ck_assert(upstream_health_fetch_failed(&h, T0 + 1));
        ck_assert_int_eq(h.state, UPSTREAM_DOWN);
        ck_assert_uint_eq(upstream_health_next_wakeup(&h), T0 + 1 + 1 * S);
}
END_TEST

START_TEST(test_report_pulls_probe_forward) {
        upstream_health_fetch_started(&h, T0);
        (void) upstream_health_fetch_succeeded(&h, T0 + 1 * MS);

        /* Next refresh is 10 s away; a failure report 2 s later probes now. */
        ck_assert(upstream_health_report_failure(&h, T0 + 2 * S));
        ck_assert(upstream_health_fetch_due(&h, T0 + 2 * S));
        ck_assert_uint_eq(h.n_report_probes, 1);
        /* Another report before the probe started changes nothing. */
        ck_assert(!upstream_health_report_failure(&h, T0 + 2 * S + 1));
        ck_assert_uint_eq(h.n_report_probes, 1);

        /* While the probe runs, reports are moot: its result will tell. */
        upstream_health_fetch_started(&h, T0 + 2 * S);
        ck_assert(!upstream_health_report_failure(&h, T0 + 2 * S + 10 * MS));
        ck_assert(upstream_health_fetch_failed(&h, T0 + 2 * S + 20 * MS));
        ck_assert_int_eq(h.state, UPSTREAM_DOWN);
}
END_TEST

START_TEST(test_report_probes_are_rate_limited) {
        usec_t start = T0 + 5 * S;

        upstream_health_fetch_started(&h, T0);
        (void) upstream_health_fetch_succeeded(&h, T0);
        ck_assert(upstream_health_report_failure(&h, start));
        upstream_health_fetch_started(&h, start);
        (void) upstream_health_fetch_succeeded(&h, start + 10 * MS);

        /* A report 20 ms after the last probe started waits for the gap to pass. */
        ck_assert(upstream_health_report_failure(&h, start + 20 * MS));
        ck_assert(!upstream_health_fetch_due(&h, start + 20 * MS));
        ck_assert_uint_eq(upstream_health_next_wakeup(&h), start + UPSTREAM_REPORT_PROBE_GAP_USEC);
        ck_assert(upstream_health_fetch_due(&h, start + UPSTREAM_REPORT_PROBE_GAP_USEC));
}
END_TEST

START_TEST(test_report_never_delays) {
        /* Down: the next probe is 1 s out; a report pulls it in but never pushes it back. */
        upstream_health_fetch_started(&h, T0);
        (void) upstream_health_fetch_failed(&h, T0);
        ck_assert(upstream_health_report_failure(&h, T0 + 500 * MS));
        ck_assert_uint_eq(upstream_health_next_wakeup(&h), T0 + 500 * MS);

        /* Already due: nothing to pull in. */
        ck_assert(!upstream_health_report_failure(&h, T0 + 600 * MS));
        ck_assert_uint_eq(upstream_health_next_wakeup(&h), T0 + 500 * MS);

        /* Before any fetch (init: due at once) a report changes nothing either. */
        setup();
        ck_assert(!upstream_health_report_failure(&h, T0));
}
END_TEST

/* The models changed: fetch now; during a fetch (it may predate the change), right after it. */
START_TEST(test_refresh_after_a_model_change) {
        upstream_health_fetch_started(&h, T0);
        ck_assert(upstream_health_fetch_succeeded(&h, T0 + 5 * MS));
        ck_assert_uint_eq(upstream_health_next_wakeup(&h), T0 + 5 * MS + 10 * S);

        ck_assert(upstream_health_refresh(&h, T0 + 2 * S));
        ck_assert(upstream_health_fetch_due(&h, T0 + 2 * S));
        /* Already due: nothing moves. */
        ck_assert(!upstream_health_refresh(&h, T0 + 2 * S));

        upstream_health_fetch_started(&h, T0 + 2 * S);
        ck_assert(!upstream_health_refresh(&h, T0 + 2 * S + 1 * MS));
        ck_assert(h.refresh_pending);
        (void) upstream_health_fetch_succeeded(&h, T0 + 2 * S + 5 * MS);
        ck_assert(!h.refresh_pending);
        ck_assert(upstream_health_fetch_due(&h, T0 + 2 * S + 5 * MS));
        /* The one after that is on the usual schedule again. */
        upstream_health_fetch_started(&h, T0 + 2 * S + 5 * MS);
        (void) upstream_health_fetch_succeeded(&h, T0 + 2 * S + 10 * MS);
        ck_assert_uint_eq(upstream_health_next_wakeup(&h), T0 + 2 * S + 10 * MS + 10 * S);
}
END_TEST

START_TEST(test_outcome_is_failure) {
        ck_assert(upstream_outcome_is_failure(0, ""));
        ck_assert(upstream_outcome_is_failure(0, NULL));
        ck_assert(upstream_outcome_is_failure(0, "connection refused"));
        ck_assert(!upstream_outcome_is_failure(200, ""));
        ck_assert(!upstream_outcome_is_failure(200, NULL));
        ck_assert(!upstream_outcome_is_failure(400, ""));
        ck_assert(!upstream_outcome_is_failure(404, ""));
        ck_assert(!upstream_outcome_is_failure(499, ""));
        ck_assert(upstream_outcome_is_failure(500, ""));
        ck_assert(upstream_outcome_is_failure(502, ""));
        ck_assert(upstream_outcome_is_failure(503, ""));
        ck_assert(upstream_outcome_is_failure(200, "stream ended without done"));
}
END_TEST

START_TEST(test_ttfb_ewma) {
        usec_t e = 0;

        e = ttfb_ewma_update(e, 100 * MS);
        ck_assert_uint_eq(e, 100 * MS);
        e = ttfb_ewma_update(e, 200 * MS);
        ck_assert_uint_eq(e, 120 * MS);
        e = ttfb_ewma_update(e, 20 * MS);
        ck_assert_uint_eq(e, 100 * MS);
        ck_assert_uint_eq(ttfb_ewma_update(e, e), e);
        /* Converges towards a steady value from either side. */
        for (int i = 0; i < 100; i++)
                e = ttfb_ewma_update(e, 50 * MS);
        ck_assert_uint_le(e, 50 * MS + TTFB_EWMA_WEIGHT);
        ck_assert_uint_ge(e, 50 * MS);
        /* No overflow at the extremes. */
        ck_assert_uint_eq(ttfb_ewma_update(1, UINT64_MAX), 1 + (UINT64_MAX - 1) / TTFB_EWMA_WEIGHT);
        ck_assert_uint_eq(ttfb_ewma_update(UINT64_MAX, 0), UINT64_MAX - UINT64_MAX / TTFB_EWMA_WEIGHT);
}
END_TEST

START_TEST(test_no_overflow_at_infinity) {
        upstream_health_init(&h, USEC_INFINITY, USEC_INFINITY, T0);
        upstream_health_fetch_started(&h, T0);
        (void) upstream_health_fetch_succeeded(&h, T0);
        ck_assert_uint_eq(upstream_health_next_wakeup(&h), USEC_INFINITY);
        ck_assert(!upstream_health_fetch_due(&h, UINT64_MAX - 1));
}
END_TEST

static Suite *health_suite(void) {
        Suite *s = suite_create("upstream-health");
        TCase *tc = tcase_create("health");

        tcase_add_checked_fixture(tc, setup, NULL);
        tcase_add_test(tc, test_first_fetch_at_once);
        tcase_add_test(tc, test_up_refreshes_every_tags_interval);
        tcase_add_test(tc, test_down_probes_every_probe_interval);
        tcase_add_test(tc, test_unknown_to_down);
        tcase_add_test(tc, test_report_pulls_probe_forward);
        tcase_add_test(tc, test_report_probes_are_rate_limited);
        tcase_add_test(tc, test_report_never_delays);
        tcase_add_test(tc, test_refresh_after_a_model_change);
        tcase_add_test(tc, test_outcome_is_failure);
        tcase_add_test(tc, test_ttfb_ewma);
        tcase_add_test(tc, test_no_overflow_at_infinity);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(health_suite());
}
