/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/routerd/routerd-manager.c without a bus: configuration checks,
 * what ReportOutcome does to the table, Generation, how change signals are coalesced, and the
 * circuit breakers (cooling, half-open on the loop's timer). */
#include <stdio.h>

#include "routerd-manager.h"
#include "unit-test.h"

#define LOCAL_ID "0123456789abcdef0123456789abcdef"
#define PEER_ID "fedcba9876543210fedcba9876543210"

static MyceliaConfig config;
static Manager *m;

static void setup(void) {
        config_init(&config);
        ck_assert_int_eq(config_set(&config, "node", "id", LOCAL_ID), 0);
        ck_assert_int_eq(config_set(&config, "node", "name", "alpha"), 0);
        /* Never polled: manager_start() is not called here. */
        ck_assert_int_eq(config_set(&config, "upstream", "url", "http://127.0.0.1:1"), 0);
        m = NULL;
}

static void teardown(void) {
        manager_free(m);
        config_done(&config);
}

static void new_manager(void) {
        ck_assert_int_eq(manager_new(&config, &m), 0);
}

static void run_for_msec(unsigned ms) {
        struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

        event_base_loopexit(m->base, &tv);
        event_base_dispatch(m->base);
}

START_TEST(test_local_node) {
        RouteNode *n;

        new_manager();
        ck_assert_str_eq(m->local_id, LOCAL_ID);
        ck_assert_uint_eq(m->table.n_nodes, 1);
        n = route_table_find(&m->table, LOCAL_ID);
        ck_assert_ptr_nonnull(n);
        ck_assert(n->local);
        ck_assert(!n->up);
        ck_assert_str_eq(n->name, "alpha");
        ck_assert_str_eq(n->address, "http://127.0.0.1:1");
        ck_assert_uint_eq(m->table.generation, 1);
        ck_assert_int_eq(m->policy, ROUTE_POLICY_GRAVITY);
}
END_TEST

START_TEST(test_hostname_default) {
        ck_assert_int_eq(config_set(&config, "node", "name", ""), 0);
        new_manager();
        ck_assert(!isempty(m->local_name));
        ck_assert_str_eq(m->table.nodes[0].name, m->local_name);
}
END_TEST

START_TEST(test_bad_config) {
        ck_assert_int_eq(config_set(&config, "router", "policy", "fastest"), 0);
        ck_assert_int_eq(manager_new(&config, &m), -EINVAL);
        ck_assert_int_eq(config_set(&config, "router", "policy", "least-loaded"), 0);

        ck_assert_int_eq(config_set(&config, "upstream", "url", "https://127.0.0.1"), 0);
        ck_assert_int_eq(manager_new(&config, &m), -EINVAL);
        ck_assert_int_eq(config_set(&config, "upstream", "url", "http://127.0.0.1:1"), 0);

        ck_assert_int_eq(config_set(&config, "router", "tags_interval", "0"), 0);
        ck_assert_int_eq(manager_new(&config, &m), -EINVAL);
        ck_assert_int_eq(config_set(&config, "router", "tags_interval", "10s"), 0);

        ck_assert_int_eq(config_set(&config, "node", "id", "not-hex"), 0);
        ck_assert_int_lt(manager_new(&config, &m), 0);
        ck_assert_ptr_null(m);
        ck_assert_int_eq(config_set(&config, "node", "id", LOCAL_ID), 0);

        new_manager();
        ck_assert_int_eq(m->policy, ROUTE_POLICY_LEAST_LOADED);
}
END_TEST

START_TEST(test_table_changes) {
        char *models[] = { (char *) "llama3.2:latest", (char *) "mistral" };
        const char *reason;
        RouteNode *n;
        uint64_t g;

        new_manager();
        ck_assert_int_eq(manager_route(m, "llama3.2", "", NULL, &n, &reason), -ENOENT);
        ck_assert_uint_eq(m->n_no_route, 1);

        g = m->table.generation;
        ck_assert_int_eq(manager_node_set_models(m, LOCAL_ID, models, 2), 1);
        ck_assert_uint_eq(m->table.generation, g + 1);
        /* The same list again is no change. */
        ck_assert_int_eq(manager_node_set_models(m, LOCAL_ID, models, 2), 0);
        ck_assert_uint_eq(m->table.generation, g + 1);
        ck_assert_int_eq(manager_node_set_up(m, LOCAL_ID, true), 1);
        ck_assert_int_eq(manager_node_set_up(m, LOCAL_ID, true), 0);
        ck_assert_uint_eq(m->table.generation, g + 2);

        ck_assert_int_eq(manager_route(m, "llama3.2", "", NULL, &n, &reason), 0);
        ck_assert_str_eq(n->id, LOCAL_ID);
        ck_assert_uint_eq(m->n_routed, 1);

        /* A peer slots in beside the local node. */
        ck_assert_int_eq(manager_node_add(m, PEER_ID, "beta", "http://127.0.0.2:11436", false), 0);
        ck_assert_int_eq(manager_node_add(m, PEER_ID, "beta", "http://127.0.0.2:11436", false), -EEXIST);
        ck_assert_int_eq(manager_node_set_models(m, PEER_ID, models, 1), 1);
        ck_assert_int_eq(manager_node_set_up(m, PEER_ID, true), 1);
        ck_assert_uint_eq(m->table.generation, g + 5);
        {
                bool seen_local = false, seen_peer = false;

                for (int i = 0; i < 4; i++) {
                        ck_assert_int_eq(manager_route(m, "llama3.2", "", NULL, &n, &reason), 0);
                        seen_local |= streq(n->id, LOCAL_ID);
                        seen_peer |= streq(n->id, PEER_ID);
                }
                ck_assert(seen_local && seen_peer);
        }
        ck_assert_int_eq(manager_node_set_up(m, "nobody", true), -ENOENT);
        ck_assert_int_eq(manager_node_set_models(m, "nobody", models, 1), -ENOENT);
}
END_TEST

START_TEST(test_report) {
        RouteOutcome outcomes[] = {
                { .node_id = LOCAL_ID, .model = "llama3.2", .ttfb_usec = 100000, .tokens = 10, .http_status = 200, .error = "" },
                { .node_id = LOCAL_ID, .model = "llama3.2", .ttfb_usec = 200000, .tokens = 5, .http_status = 200, .error = "" },
                /* Neither a 4xx nor a failure says anything about speed. */
                { .node_id = LOCAL_ID, .model = "x", .ttfb_usec = 1000, .http_status = 404, .error = "" },
                { .node_id = LOCAL_ID, .model = "llama3.2", .ttfb_usec = 1000, .http_status = 200, .error = "cut off" },
                { .node_id = "nobody", .model = "llama3.2", .ttfb_usec = 1, .http_status = 200, .error = "" },
        };
        InFlightCount in_flight[] = { { LOCAL_ID, 3 }, { "nobody", 7 } };
        const NodeStats *s;
        RouteNode *n;
        uint64_t g;

        new_manager();
        n = &m->table.nodes[0];
        g = m->table.generation;

        ck_assert_int_eq(manager_report(m, outcomes, ELEMENTSOF(outcomes), in_flight, ELEMENTSOF(in_flight)), 0);
        ck_assert_uint_eq(n->ttfb_ewma_usec, 120000);
        ck_assert_uint_eq(n->in_flight, 3);
        ck_assert_uint_eq(m->table.generation, g + 1);
        ck_assert_uint_eq(m->n_unknown_node_reports, 2);
        s = manager_get_stats(m, LOCAL_ID);
        ck_assert_ptr_nonnull(s);
        ck_assert_uint_eq(s->n_outcomes, 4);
        ck_assert_uint_eq(s->n_failures, 1);
        ck_assert_uint_eq(s->n_tokens, 15);
        ck_assert_ptr_null(manager_get_stats(m, "nobody"));

        /* The same in-flight picture and no outcomes: nothing changed, no bump. */
        ck_assert_int_eq(manager_report(m, NULL, 0, in_flight, 1), 0);
        ck_assert_uint_eq(m->table.generation, g + 1);

        /* A node the shim does not list has nothing in flight. */
        ck_assert_int_eq(manager_report(m, NULL, 0, NULL, 0), 0);
        ck_assert_uint_eq(n->in_flight, 0);
        ck_assert_uint_eq(m->table.generation, g + 2);
}
END_TEST

START_TEST(test_load_signals_coalesced) {
        char *models[] = { (char *) "m" };
        uint64_t emits;

        new_manager();
        /* A structural change goes out at once. */
        emits = m->n_emits;
        ck_assert_int_eq(manager_node_set_models(m, LOCAL_ID, models, 1), 1);
        ck_assert_uint_eq(m->n_emits, emits + 1);
        ck_assert(!m->emit_pending);

        /* Load changes right after it wait for the 100 ms window, folded into one. */
        for (unsigned i = 1; i <= 20; i++) {
                InFlightCount c = { LOCAL_ID, i };

                ck_assert_int_eq(manager_report(m, NULL, 0, &c, 1), 0);
        }
        ck_assert_uint_eq(m->n_emits, emits + 1);
        ck_assert(m->emit_pending);
        run_for_msec(150);
        ck_assert_uint_eq(m->n_emits, emits + 2);
        ck_assert(!m->emit_pending);

        /* After a quiet window the first load change goes out at once. */
        run_for_msec(120);
        {
                InFlightCount c = { LOCAL_ID, 0 };

                ck_assert_int_eq(manager_report(m, NULL, 0, &c, 1), 0);
        }
        ck_assert_uint_eq(m->n_emits, emits + 3);

        /* A structural change takes a pending load change along. */
        {
                InFlightCount c = { LOCAL_ID, 5 };

                ck_assert_int_eq(manager_report(m, NULL, 0, &c, 1), 0);
        }
        ck_assert(m->emit_pending);
        ck_assert_int_eq(manager_node_set_up(m, LOCAL_ID, true), 1);
        ck_assert_uint_eq(m->n_emits, emits + 4);
        ck_assert(!m->emit_pending);
        run_for_msec(150);
        ck_assert_uint_eq(m->n_emits, emits + 4);
}
END_TEST

static void report_status(const char *id, unsigned status, const char *error, unsigned times) {
        for (unsigned i = 0; i < times; i++) {
                RouteOutcome o = { .node_id = id, .model = "m", .http_status = status, .error = error };

                ck_assert_int_eq(manager_report(m, &o, 1, NULL, 0), 0);
        }
}

static const char *state_of(const char *id) {
        return manager_node_state(m, route_table_find(&m->table, id));
}

START_TEST(test_breaker) {
        char *models[] = { (char *) "m" };
        const NodeStats *s;
        const char *reason;
        uint64_t g, cooling_emits;
        usec_t rt;
        RouteNode *n;

        new_manager();
        ck_assert_int_eq(manager_node_set_models(m, LOCAL_ID, models, 1), 1);
        ck_assert_int_eq(manager_node_set_up(m, LOCAL_ID, true), 1);
        ck_assert_int_eq(manager_node_set_remote(m, PEER_ID, "beta", "http://127.0.0.2:11438", models, 1, true, 0, 1), 0);
        ck_assert_str_eq(state_of(PEER_ID), "up");

        /* What the client causes never cools a node. */
        cooling_emits = m->n_cooling_emits;
        report_status(PEER_ID, 499, "client disconnected", 10);
        report_status(PEER_ID, 404, "", 10);
        report_status(PEER_ID, 200, "client disconnected", 10);
        ck_assert_str_eq(state_of(PEER_ID), "up");
        ck_assert_uint_eq(m->n_cooling_emits, cooling_emits);

        /* Three failed attempts in a row: cooling, routed around, one Generation, Cooling changed. */
        g = m->table.generation;
        report_status(PEER_ID, 503, "answered with an error status", 2);
        ck_assert_str_eq(state_of(PEER_ID), "up");
        rt = now_realtime_usec();
        report_status(PEER_ID, 0, "connection refused", 1);
        ck_assert_str_eq(state_of(PEER_ID), "cooling");
        ck_assert_uint_eq(m->table.generation, g + 1);
        ck_assert_uint_eq(m->n_cooling_emits, cooling_emits + 1);
        ck_assert_uint_eq(m->n_breaker_opened, 1);
        s = manager_get_stats(m, PEER_ID);
        ck_assert_int_eq(s->breaker.state, NODE_BREAKER_OPEN);
        ck_assert_uint_ge(s->cooling_until_realtime, rt + 900 * USEC_PER_MSEC);
        ck_assert_uint_le(s->cooling_until_realtime, now_realtime_usec() + USEC_PER_SEC);
        /* Gossip still says it is up: only the breaker keeps it out. */
        n = route_table_find(&m->table, PEER_ID);
        ck_assert(n->up);
        for (int i = 0; i < 10; i++) {
                ck_assert_int_eq(manager_route(m, "m", "", NULL, &n, &reason), 0);
                ck_assert_str_eq(n->id, LOCAL_ID);
        }
        /* Excluding the only other candidate leaves none. */
        {
                char *exclude[] = { (char *) LOCAL_ID, NULL };

                ck_assert_int_eq(manager_route(m, "m", "", exclude, &n, &reason), -ENOENT);
        }
        /* Gossip updates while it cools do not bring it back, and late answers change nothing. */
        ck_assert_int_eq(manager_node_set_remote(m, PEER_ID, "beta", "http://127.0.0.2:11438", models, 1, true, 2, 1), 0);
        report_status(PEER_ID, 200, "", 5);
        ck_assert_str_eq(state_of(PEER_ID), "cooling");

        /* The deadline (at most 1 s) turns it half-open: routed to again. */
        g = m->table.generation;
        run_for_msec(1100);
        ck_assert_str_eq(state_of(PEER_ID), "up");
        ck_assert_int_eq(manager_get_stats(m, PEER_ID)->breaker.state, NODE_BREAKER_HALF_OPEN);
        ck_assert_uint_eq(m->table.generation, g + 1);
        ck_assert_uint_eq(m->n_cooling_emits, cooling_emits + 2);

        /* A failure there: cooling again, twice as long. */
        rt = now_realtime_usec();
        report_status(PEER_ID, 502, "", 1);
        ck_assert_str_eq(state_of(PEER_ID), "cooling");
        s = manager_get_stats(m, PEER_ID);
        ck_assert_uint_ge(s->cooling_until_realtime, rt + 1800 * USEC_PER_MSEC);
        ck_assert_uint_eq(m->n_cooling_emits, cooling_emits + 3);

        /* Leaving the table takes the breaker along. */
        ck_assert_int_eq(manager_node_remove(m, PEER_ID), 1);
        ck_assert_uint_eq(m->n_cooling_emits, cooling_emits + 4);
        ck_assert_int_eq(manager_node_set_remote(m, PEER_ID, "beta", "http://127.0.0.2:11438", models, 1, true, 0, 1), 0);
        ck_assert_str_eq(state_of(PEER_ID), "up");
        ck_assert_int_eq(manager_get_stats(m, PEER_ID)->breaker.state, NODE_BREAKER_CLOSED);

        /* The local node too, without touching what its health probe says (and gossip publishes). */
        report_status(LOCAL_ID, 500, "", 3);
        ck_assert_str_eq(state_of(LOCAL_ID), "cooling");
        ck_assert(route_table_find(&m->table, LOCAL_ID)->up);
        /* Down wins over cooling. */
        ck_assert_int_eq(manager_node_set_up(m, LOCAL_ID, false), 1);
        ck_assert_str_eq(state_of(LOCAL_ID), "down");
}
END_TEST

START_TEST(test_breaker_half_open_success_closes) {
        char *models[] = { (char *) "m" };
        uint64_t g, cooling_emits;

        new_manager();
        ck_assert_int_eq(manager_node_set_remote(m, PEER_ID, "beta", "http://127.0.0.2:11438", models, 1, true, 0, 1), 0);
        report_status(PEER_ID, 503, "", 3);
        ck_assert_str_eq(state_of(PEER_ID), "cooling");
        run_for_msec(1100);
        ck_assert_int_eq(manager_get_stats(m, PEER_ID)->breaker.state, NODE_BREAKER_HALF_OPEN);

        /* Half-open to closed changes Cooling, not Nodes. */
        g = m->table.generation;
        cooling_emits = m->n_cooling_emits;
        report_status(PEER_ID, 200, "", 1);
        ck_assert_int_eq(manager_get_stats(m, PEER_ID)->breaker.state, NODE_BREAKER_CLOSED);
        ck_assert_str_eq(state_of(PEER_ID), "up");
        ck_assert_uint_eq(m->table.generation, g);
        ck_assert_uint_eq(m->n_cooling_emits, cooling_emits + 1);
        ck_assert_uint_eq(manager_get_stats(m, PEER_ID)->breaker.openings, 0);
}
END_TEST

static Suite *manager_suite(void) {
        Suite *s = suite_create("routerd-manager");
        TCase *tc = tcase_create("manager");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_local_node);
        tcase_add_test(tc, test_hostname_default);
        tcase_add_test(tc, test_bad_config);
        tcase_add_test(tc, test_table_changes);
        tcase_add_test(tc, test_report);
        tcase_add_test(tc, test_load_signals_coalesced);
        tcase_add_test(tc, test_breaker);
        tcase_add_test(tc, test_breaker_half_open_success_closes);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(manager_suite());
}
