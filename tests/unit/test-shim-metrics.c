/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shimd/shim-metrics.c: HELP/TYPE lines, label and HELP escaping,
 * histogram buckets (cumulative, +Inf, _sum, _count), the size bound, endpoint classes, and the
 * request table's bound. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "shim-metrics.h"
#include "unit-test.h"

START_TEST(test_family_and_samples) {
        MetricsText t;
        MetricLabel l[] = { { "a", "x" }, { "b", "" } };

        metrics_text_init(&t, 4096);
        ck_assert_int_eq(metrics_family(&t, "mycelia_x_total", METRIC_COUNTER, "Things.\nMore \\ text \"q\""), 0);
        ck_assert_int_eq(metrics_sample_u64(&t, "mycelia_x_total", l, 2, 18446744073709551615ULL), 0);
        ck_assert_int_eq(metrics_family(&t, "mycelia_g", METRIC_GAUGE, "G."), 0);
        ck_assert_int_eq(metrics_sample(&t, "mycelia_g", NULL, 0, 0.5), 0);
        ck_assert_int_eq(metrics_sample(&t, "mycelia_g", l, 1, 1.0 / 0.0), 0);
        ck_assert_str_eq(t.buf,
                         "# HELP mycelia_x_total Things.\\nMore \\\\ text \"q\"\n"
                         "# TYPE mycelia_x_total counter\n"
                         "mycelia_x_total{a=\"x\",b=\"\"} 18446744073709551615\n"
                         "# HELP mycelia_g G.\n"
                         "# TYPE mycelia_g gauge\n"
                         "mycelia_g 0.5\n"
                         "mycelia_g{a=\"x\"} +Inf\n");
        metrics_text_done(&t);
}
END_TEST

START_TEST(test_label_escaping) {
        MetricsText t;
        MetricLabel l = { "model", "a\"b\\c\nd{e}=,f" };

        metrics_text_init(&t, 4096);
        ck_assert_int_eq(metrics_sample_u64(&t, "m", &l, 1, 1), 0);
        ck_assert_str_eq(t.buf, "m{model=\"a\\\"b\\\\c\\nd{e}=,f\"} 1\n");
        metrics_text_done(&t);
}
END_TEST

START_TEST(test_histogram) {
        MetricsHistogram h = {};
        MetricsText t;
        MetricLabel l = { "endpoint", "chat" };
        char line[128];
        const char *p;

        metrics_histogram_observe(&h, 0.001);   /* first bucket */
        metrics_histogram_observe(&h, 0.005);   /* le is inclusive */
        metrics_histogram_observe(&h, 3);       /* 5 */
        metrics_histogram_observe(&h, 500);     /* only +Inf */
        metrics_histogram_observe(&h, -1);      /* clamped to 0 */
        ck_assert_uint_eq(h.count, 5);
        ck_assert(h.sum > 503.005 && h.sum < 503.007);

        metrics_text_init(&t, 1 << 16);
        ck_assert_int_eq(metrics_family(&t, "d_seconds", METRIC_HISTOGRAM, "D."), 0);
        ck_assert_int_eq(metrics_histogram(&t, "d_seconds", &l, 1, &h), 0);
        ck_assert_ptr_nonnull(strstr(t.buf, "# TYPE d_seconds histogram\n"));
        ck_assert_ptr_nonnull(strstr(t.buf, "d_seconds_bucket{endpoint=\"chat\",le=\"0.005\"} 3\n"));
        ck_assert_ptr_nonnull(strstr(t.buf, "d_seconds_bucket{endpoint=\"chat\",le=\"2.5\"} 3\n"));
        ck_assert_ptr_nonnull(strstr(t.buf, "d_seconds_bucket{endpoint=\"chat\",le=\"5\"} 4\n"));
        ck_assert_ptr_nonnull(strstr(t.buf, "d_seconds_bucket{endpoint=\"chat\",le=\"120\"} 4\n"));
        ck_assert_ptr_nonnull(strstr(t.buf, "d_seconds_bucket{endpoint=\"chat\",le=\"+Inf\"} 5\n"));
        ck_assert_ptr_nonnull(strstr(t.buf, "d_seconds_sum{endpoint=\"chat\"} 503.006\n"));
        ck_assert_ptr_nonnull(strstr(t.buf, "d_seconds_count{endpoint=\"chat\"} 5\n"));
        /* Buckets in increasing order, +Inf last, each count at least the one before. */
        p = t.buf;
        for (unsigned i = 0, last = 0; (p = strstr(p, "_bucket{")); i++) {
                unsigned v;
                const char *e = strchr(p, '\n');

                ck_assert_ptr_nonnull(e);
                snprintf(line, sizeof(line), "%.*s", (int) (e - p), p);
                ck_assert_int_eq(sscanf(strrchr(line, ' ') + 1, "%u", &v), 1);
                ck_assert_uint_ge(v, last);
                last = v;
                if (i == METRICS_BUCKETS)
                        ck_assert_ptr_nonnull(strstr(line, "le=\"+Inf\""));
                p = e;
        }
        metrics_text_done(&t);
}
END_TEST

START_TEST(test_bound) {
        MetricsText t;

        metrics_text_init(&t, 40);
        ck_assert_int_eq(metrics_sample_u64(&t, "a_fairly_long_metric_name", NULL, 0, 1), 0);
        ck_assert_int_eq(metrics_sample_u64(&t, "a_fairly_long_metric_name", NULL, 0, 2), -ENOBUFS);
        /* The error sticks, even for what would fit. */
        ck_assert_int_eq(metrics_sample_u64(&t, "x", NULL, 0, 3), -ENOBUFS);
        ck_assert_int_eq(t.error, -ENOBUFS);
        ck_assert_uint_lt(t.len, 40);
        metrics_text_done(&t);
}
END_TEST

START_TEST(test_endpoints) {
        ck_assert_int_eq(metrics_endpoint("/api/chat"), METRICS_EP_CHAT);
        ck_assert_int_eq(metrics_endpoint("/api/generate?x=1"), METRICS_EP_GENERATE);
        ck_assert_int_eq(metrics_endpoint("/api/blobs/sha256:00"), METRICS_EP_MANAGE);
        ck_assert_int_eq(metrics_endpoint("/api/copy"), METRICS_EP_MANAGE);
        ck_assert_int_eq(metrics_endpoint("/v1/models/llama3"), METRICS_EP_V1_MODELS);
        ck_assert_int_eq(metrics_endpoint("/v1/chat/completions"), METRICS_EP_V1_CHAT);
        ck_assert_int_eq(metrics_endpoint("/"), METRICS_EP_ROOT);
        ck_assert_int_eq(metrics_endpoint("/api/chatty"), METRICS_EP_OTHER);
        ck_assert_int_eq(metrics_endpoint("/anything/else"), METRICS_EP_OTHER);
        ck_assert_int_eq(metrics_endpoint(NULL), METRICS_EP_OTHER);
        for (int e = 0; e < _METRICS_EP_MAX; e++)
                ck_assert_ptr_nonnull(metrics_endpoint_to_string(e));
        ck_assert_str_eq(metrics_endpoint_to_string(_METRICS_EP_MAX), "other");
}
END_TEST

START_TEST(test_requests_bounded) {
        static MetricsRequests r;
        char model[32], longname[300];

        memset(&r, 0, sizeof(r));
        metrics_requests_add(&r, false, METRICS_EP_CHAT, "m", 200, "a", 5, 0.1, 0.2);
        metrics_requests_add(&r, false, METRICS_EP_CHAT, "m", 200, "a", 7, -1, 0.3);
        ck_assert_uint_eq(r.n_series, 1);
        ck_assert_uint_eq(r.series[0].requests, 2);
        ck_assert_uint_eq(r.series[0].tokens, 12);
        ck_assert_uint_eq(r.ttfb[0][METRICS_EP_CHAT].count, 1);
        ck_assert_uint_eq(r.duration[0][METRICS_EP_CHAT].count, 2);
        /* Another listener, code or node is another series. */
        metrics_requests_add(&r, true, METRICS_EP_CHAT, "m", 200, "a", 0, 0.1, 0.2);
        metrics_requests_add(&r, false, METRICS_EP_CHAT, "m", 502, "a", 0, -1, 0.2);
        ck_assert_uint_eq(r.n_series, 3);
        /* A name longer than the field is "other". */
        memset(longname, 'x', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        metrics_requests_add(&r, false, METRICS_EP_CHAT, longname, 200, "a", 0, -1, 0.2);
        ck_assert_str_eq(r.series[3].key.model, "other");
        /* Past the bound: counted apart, no series changes its labels. */
        for (unsigned i = 0; i < 2 * METRICS_REQUESTS_MAX; i++) {
                snprintf(model, sizeof(model), "m%u", i);
                metrics_requests_add(&r, false, METRICS_EP_GENERATE, model, 200, "a", 1, 0.1, 0.2);
        }
        ck_assert_uint_eq(r.n_series, METRICS_REQUESTS_MAX);
        ck_assert_uint_eq(r.overflowed, 2 * METRICS_REQUESTS_MAX - (METRICS_REQUESTS_MAX - 4));
        ck_assert_str_eq(r.series[0].key.model, "m");
        ck_assert_uint_eq(r.duration[0][METRICS_EP_GENERATE].count, 2 * METRICS_REQUESTS_MAX);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shim-metrics");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_family_and_samples);
        tcase_add_test(tc, test_label_escaping);
        tcase_add_test(tc, test_histogram);
        tcase_add_test(tc, test_bound);
        tcase_add_test(tc, test_endpoints);
        tcase_add_test(tc, test_requests_bounded);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
