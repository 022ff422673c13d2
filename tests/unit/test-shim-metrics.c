/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shimd/shim-metrics.c: HELP/TYPE lines, label and HELP escaping,
 * histogram buckets (cumulative, +Inf, _sum, _count), the size bound, endpoint classes, the
 * request table's bound, routing decisions by policy and reason (through common/route-table.c's
 * own reasons), and the per-node counters bounded by the routing table. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "route-table.h"
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

static RouteNode *add_node(RouteTable *t, unsigned i, const char *name, const char *model) {
        char id[NODE_ID_LEN + 1], address[64];
        char *models[] = { (char *) model };
        RouteNode *node;

        snprintf(id, sizeof(id), "%032x", i);
        snprintf(address, sizeof(address), "http://127.0.0.%u:11438", i);
        ck_assert_int_eq(route_table_add(t, id, name, address, &node), 0);
        ck_assert_int_eq(route_node_set_models(node, models, 1), 0);
        node->up = true;
        node->capacity = 1;
        return node;
}

/* The reasons route_table_pick_for() gives, each mapped to its own label: a reason reworded in
 * route-table.c fails here rather than turn into "other" in production. */
static MetricsPickReason pick(RouteTable *t, RoutePolicy policy, const char *holder, uint64_t anchor) {
        RoutePick p = { .model = "m", .policy = policy, .holder = holder, .anchor = anchor, .random = 7 };
        const char *reason = NULL;
        RouteNode *n;

        (void) route_table_pick_for(t, &p, &n, &reason);
        ck_assert_ptr_nonnull(reason);
        return metrics_pick_reason(reason);
}

START_TEST(test_pick_reasons) {
        RouteTable t;
        RouteNode *a, *b;

        route_table_init(&t);
        ck_assert_int_eq(pick(&t, ROUTE_POLICY_ROUND_ROBIN, NULL, 0), METRICS_PICK_NO_NODE);
        a = add_node(&t, 1, "a", "m");
        ck_assert_int_eq(pick(&t, ROUTE_POLICY_ROUND_ROBIN, NULL, 0), METRICS_PICK_ONLY_NODE);
        b = add_node(&t, 2, "b", "m");
        a = &t.nodes[0];        /* the table grew: a moved */
        ck_assert_int_eq(pick(&t, ROUTE_POLICY_ROUND_ROBIN, NULL, 0), METRICS_PICK_ROUND_ROBIN);
        ck_assert_int_eq(pick(&t, ROUTE_POLICY_LEAST_LOADED, NULL, 0), METRICS_PICK_LEAST_LOADED);
        ck_assert_int_eq(pick(&t, ROUTE_POLICY_LATENCY, NULL, 0), METRICS_PICK_FASTER_OF_TWO);
        ck_assert_int_eq(pick(&t, ROUTE_POLICY_GRAVITY, NULL, 0), METRICS_PICK_NO_CONTEXT);
        ck_assert_int_eq(pick(&t, ROUTE_POLICY_GRAVITY, NULL, 42), METRICS_PICK_RENDEZVOUS);
        ck_assert_int_eq(pick(&t, ROUTE_POLICY_GRAVITY, a->id, 42), METRICS_PICK_GRAVITY_HIT);
        /* The holder busy past its bounded share: rendezvous, "overloaded". */
        a->in_flight = 10;
        ck_assert_int_eq(pick(&t, ROUTE_POLICY_GRAVITY, a->id, 42), METRICS_PICK_OVERLOADED);
        ck_assert_int_eq(pick(&t, ROUTE_POLICY_LOCAL_FIRST, NULL, 0), METRICS_PICK_LOCAL_BUSY);
        b->local = true;
        ck_assert_int_eq(pick(&t, ROUTE_POLICY_LOCAL_FIRST, NULL, 0), METRICS_PICK_LOCAL);
        a->up = b->up = false;
        a->cooling = b->cooling = true;
        ck_assert_int_eq(pick(&t, ROUTE_POLICY_ROUND_ROBIN, NULL, 0), METRICS_PICK_ALL_COOLING);
        ck_assert_int_eq(metrics_pick_reason("something new"), METRICS_PICK_OTHER);
        ck_assert_int_eq(metrics_pick_reason(NULL), METRICS_PICK_OTHER);
        for (int r = 0; r < _METRICS_PICK_MAX; r++)
                ck_assert_ptr_nonnull(metrics_pick_reason_to_string(r));
        ck_assert_str_eq(metrics_pick_reason_to_string(_METRICS_PICK_MAX), "other");
        route_table_clear(&t);
}
END_TEST

START_TEST(test_picks_render) {
        MetricsPicks p = {};
        MetricsText t;

        metrics_picks_add(&p, ROUTE_POLICY_GRAVITY, "holds the context");
        metrics_picks_add(&p, ROUTE_POLICY_GRAVITY, "holds the context");
        metrics_picks_add(&p, ROUTE_POLICY_ROUND_ROBIN, "a reason nobody knows");
        metrics_picks_add(&p, _ROUTE_POLICY_MAX, "round-robin");       /* not counted */
        metrics_picks_add(&p, _ROUTE_POLICY_INVALID, "round-robin");
        metrics_text_init(&t, 1 << 16);
        ck_assert_int_eq(metrics_picks_render(&t, &p), 0);
        ck_assert_ptr_nonnull(strstr(t.buf, "# TYPE mycelia_route_picks_total counter\n"));
        ck_assert_ptr_nonnull(strstr(t.buf, "mycelia_route_picks_total{policy=\"gravity\",reason=\"gravity_hit\"} 2\n"));
        ck_assert_ptr_nonnull(strstr(t.buf, "mycelia_route_picks_total{policy=\"round-robin\",reason=\"other\"} 1\n"));
        /* Every reason a policy can give is there from the start; one it cannot give is not. */
        ck_assert_ptr_nonnull(strstr(t.buf, "mycelia_route_picks_total{policy=\"gravity\",reason=\"overloaded\"} 0\n"));
        ck_assert_ptr_nonnull(strstr(t.buf, "mycelia_route_picks_total{policy=\"latency\",reason=\"only_node\"} 0\n"));
        ck_assert_ptr_nonnull(strstr(t.buf, "mycelia_route_picks_total{policy=\"round-robin\",reason=\"round_robin\"} 0\n"));
        ck_assert_ptr_null(strstr(t.buf, "policy=\"round-robin\",reason=\"gravity_hit\""));
        ck_assert_ptr_null(strstr(t.buf, "policy=\"gravity\",reason=\"other\""));
        metrics_text_done(&t);
}
END_TEST

START_TEST(test_nodes) {
        MetricsNodes n = {};
        MetricsIdCount cooldowns[2] = {};
        RouteTable t;
        RouteNode *a, *b;
        MetricsText text;

        route_table_init(&t);
        (void) add_node(&t, 1, "a", "m");
        b = add_node(&t, 2, "b\"x", "m");
        a = &t.nodes[0];        /* the table grew: a moved */
        ck_assert_int_eq(metrics_nodes_add(&n, &t, a->id, METRICS_NODE_RETRY), 0);
        ck_assert_int_eq(metrics_nodes_add(&n, &t, a->id, METRICS_NODE_RETRY), 0);
        ck_assert_int_eq(metrics_nodes_add(&n, &t, a->id, METRICS_NODE_FAILOVER_STATUS), 0);
        ck_assert_int_eq(metrics_nodes_add(&n, &t, b->id, METRICS_NODE_FAILOVER_FAILURE), 0);
        /* Only nodes of the table: a remote party cannot make series by naming nodes. */
        ck_assert_int_eq(metrics_nodes_add(&n, &t, "ffffffffffffffffffffffffffffffff", METRICS_NODE_RETRY), -ENOENT);
        ck_assert_int_eq(metrics_nodes_add(&n, &t, "", METRICS_NODE_RETRY), -ENOENT);
        ck_assert_int_eq(metrics_nodes_add(&n, &t, a->id, _METRICS_NODE_EVENT_MAX), -ENOENT);
        ck_assert_uint_eq(n.n, 2);
        ck_assert_uint_eq(metrics_nodes_find(&n, a->id)->n[METRICS_NODE_RETRY], 2);

        snprintf(cooldowns[0].id, sizeof(cooldowns[0].id), "%s", b->id);
        cooldowns[0].count = 3;
        snprintf(cooldowns[1].id, sizeof(cooldowns[1].id), "%s", "not-in-the-table");
        cooldowns[1].count = 9;
        metrics_text_init(&text, 1 << 16);
        ck_assert_int_eq(metrics_nodes_render(&text, &t, &n, cooldowns, 2), 0);
        ck_assert_ptr_nonnull(strstr(text.buf, "# TYPE mycelia_route_node_retries_total counter\n"));
        ck_assert_ptr_nonnull(strstr(text.buf, "mycelia_route_node_retries_total{node=\"a\",node_id=\"00000000000000000000000000000001\"} 2\n"));
        ck_assert_ptr_nonnull(strstr(text.buf, "mycelia_route_node_retries_total{node=\"b\\\"x\",node_id=\"00000000000000000000000000000002\"} 0\n"));
        ck_assert_ptr_nonnull(strstr(text.buf, "mycelia_route_node_failovers_total{node=\"a\",node_id=\"00000000000000000000000000000001\",reason=\"status\"} 1\n"));
        ck_assert_ptr_nonnull(strstr(text.buf, "mycelia_route_node_failovers_total{node=\"a\",node_id=\"00000000000000000000000000000001\",reason=\"failure\"} 0\n"));
        ck_assert_ptr_nonnull(strstr(text.buf, "mycelia_route_node_failovers_total{node=\"b\\\"x\",node_id=\"00000000000000000000000000000002\",reason=\"failure\"} 1\n"));
        ck_assert_ptr_nonnull(strstr(text.buf, "mycelia_route_node_cooldowns_total{node=\"a\",node_id=\"00000000000000000000000000000001\"} 0\n"));
        ck_assert_ptr_nonnull(strstr(text.buf, "mycelia_route_node_cooldowns_total{node=\"b\\\"x\",node_id=\"00000000000000000000000000000002\"} 3\n"));
        ck_assert_ptr_null(strstr(text.buf, "not-in-the-table"));
        metrics_text_done(&text);

        /* routerd did not answer: no cooldowns family at all, rather than zeros. */
        metrics_text_init(&text, 1 << 16);
        ck_assert_int_eq(metrics_nodes_render(&text, &t, &n, NULL, 0), 0);
        ck_assert_ptr_null(strstr(text.buf, "cooldowns"));
        ck_assert_ptr_nonnull(strstr(text.buf, "mycelia_route_node_retries_total"));
        metrics_text_done(&text);

        metrics_nodes_done(&n);
        route_table_clear(&t);
}
END_TEST

/* The entries are bounded by the table's bound; once taken, those of nodes that left go. */
START_TEST(test_nodes_bounded) {
        static RouteTable t;
        MetricsNodes n = {};
        char id[NODE_ID_LEN + 1];

        route_table_init(&t);
        for (unsigned i = 0; i < ROUTE_MAX_NODES; i++) {
                RouteNode *node = add_node(&t, i + 1, "n", "m");

                ck_assert_int_eq(metrics_nodes_add(&n, &t, node->id, METRICS_NODE_RETRY), 0);
        }
        ck_assert_uint_eq(n.n, ROUTE_MAX_NODES);
        ck_assert_uint_le(n.allocated, ROUTE_MAX_NODES);
        /* Node 1 leaves, a new one comes: its entry is reused. */
        route_node_done(&t.nodes[0]);
        memmove(&t.nodes[0], &t.nodes[1], (t.n_nodes - 1) * sizeof(RouteNode));
        t.n_nodes--;
        add_node(&t, 5000, "new", "m");
        snprintf(id, sizeof(id), "%032x", 5000);
        ck_assert_int_eq(metrics_nodes_add(&n, &t, id, METRICS_NODE_FAILOVER_FAILURE), 0);
        ck_assert_uint_eq(n.n, ROUTE_MAX_NODES);
        ck_assert_ptr_null(metrics_nodes_find(&n, "00000000000000000000000000000001"));
        ck_assert_uint_eq(metrics_nodes_find(&n, id)->n[METRICS_NODE_FAILOVER_FAILURE], 1);
        ck_assert_uint_eq(metrics_nodes_find(&n, "00000000000000000000000000000002")->n[METRICS_NODE_RETRY], 1);
        metrics_nodes_done(&n);
        route_table_clear(&t);
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
        tcase_add_test(tc, test_pick_reasons);
        tcase_add_test(tc, test_picks_render);
        tcase_add_test(tc, test_nodes);
        tcase_add_test(tc, test_nodes_bounded);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
