/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for common/route-table.c: model name matching, the policies, and the limits
 * of the table that routerd owns and shimd mirrors. */
#include <limits.h>
#include <stdio.h>

#include "route-table.h"
#include "unit-test.h"

static RouteTable t;

static void setup(void) {
        route_table_init(&t);
}

static void teardown(void) {
        route_table_clear(&t);
}

/* Adds node "nodeN" (id padded to 32 hex-ish chars) serving the given models. */
static RouteNode *add_node(unsigned i, bool up, const char *models_csv) {
        char id[NODE_ID_LEN + 1], name[32], address[64], buf[256];
        char *models[16], *save = NULL;
        size_t n = 0;
        RouteNode *node;

        snprintf(id, sizeof(id), "%032x", i);
        snprintf(name, sizeof(name), "node%u", i);
        snprintf(address, sizeof(address), "http://127.0.0.%u:11435", i);
        ck_assert_int_eq(route_table_add(&t, id, name, address, &node), 0);
        snprintf(buf, sizeof(buf), "%s", models_csv);
        for (char *p = strtok_r(buf, ",", &save); p && n < ELEMENTSOF(models); p = strtok_r(NULL, ",", &save))
                models[n++] = p;
        ck_assert_int_eq(route_node_set_models(node, models, n), 0);
        node->up = up;
        return node;
}

static unsigned node_index(const RouteNode *n) {
        return (unsigned) (n - t.nodes);
}

START_TEST(test_model_name_equal) {
        ck_assert(model_name_equal("llama3.2", "llama3.2"));
        ck_assert(model_name_equal("llama3.2", "llama3.2:latest"));
        ck_assert(model_name_equal("llama3.2:latest", "llama3.2"));
        ck_assert(model_name_equal("llama3.2:latest", "llama3.2:latest"));
        /* Ollama compares names case-insensitively, the tag included. */
        ck_assert(model_name_equal("Llama3.2", "llama3.2:LATEST"));
        ck_assert(model_name_equal("LLAMA3.2", "llama3.2"));
        ck_assert(!model_name_equal("llama3.2", "llama3.2:1b"));
        ck_assert(!model_name_equal("llama3.2:1b", "llama3.2:latest"));
        ck_assert(!model_name_equal("llama3.2", "llama3"));
        ck_assert(!model_name_equal("llama3", "llama3.2"));
        ck_assert(!model_name_equal("llama3.2:latest", "llama3.2:lates"));
        ck_assert(!model_name_equal("a:latest:latest", "a"));
        ck_assert(!model_name_equal(":latest", ""));
        ck_assert(model_name_equal("", ""));
        ck_assert(!model_name_equal(NULL, "a"));
        ck_assert(!model_name_equal("a", NULL));
        ck_assert(!model_name_equal(NULL, NULL));
        ck_assert(model_name_equal("registry.ollama.ai/library/llama3.2:latest",
                                   "registry.ollama.ai/library/llama3.2"));
}
END_TEST

START_TEST(test_policy_names) {
        ck_assert_int_eq(route_policy_from_string("round-robin"), ROUTE_POLICY_ROUND_ROBIN);
        ck_assert_int_eq(route_policy_from_string("least-loaded"), ROUTE_POLICY_LEAST_LOADED);
        ck_assert_int_eq(route_policy_from_string("gravity"), ROUTE_POLICY_GRAVITY);
        ck_assert_int_eq(route_policy_from_string("latency"), ROUTE_POLICY_LATENCY);
        ck_assert_int_eq(route_policy_from_string("local-first"), ROUTE_POLICY_LOCAL_FIRST);
        ck_assert_int_lt(route_policy_from_string("random"), 0);
        ck_assert_int_lt(route_policy_from_string(""), 0);
        ck_assert_int_lt(route_policy_from_string(NULL), 0);
        ck_assert_str_eq(route_policy_to_string(ROUTE_POLICY_ROUND_ROBIN), "round-robin");
        ck_assert_str_eq(route_policy_to_string(ROUTE_POLICY_LEAST_LOADED), "least-loaded");
        ck_assert_ptr_null(route_policy_to_string(_ROUTE_POLICY_MAX));
        ck_assert_ptr_null(route_policy_to_string(_ROUTE_POLICY_INVALID));
}
END_TEST

START_TEST(test_serves) {
        RouteNode *n = add_node(1, true, "llama3.2:latest,qwen2.5:7b");

        ck_assert(route_node_serves(n, "llama3.2"));
        ck_assert(route_node_serves(n, "llama3.2:latest"));
        ck_assert(route_node_serves(n, "qwen2.5:7b"));
        ck_assert(!route_node_serves(n, "qwen2.5"));
        ck_assert(!route_node_serves(n, "mistral"));
}
END_TEST

START_TEST(test_round_robin_fairness) {
        unsigned counts[4] = {}, last = UINT_MAX;
        const char *reason;
        RouteNode *n;

        for (unsigned i = 0; i < 4; i++)
                add_node(i, true, "llama3.2");

        for (unsigned k = 0; k < 400; k++) {
                ck_assert_int_eq(route_table_pick(&t, ROUTE_POLICY_ROUND_ROBIN, "llama3.2:latest", "", NULL, &n, &reason), 0);
                ck_assert_str_eq(reason, "round-robin");
                /* Strict rotation: never the same node twice in a row. */
                ck_assert_uint_ne(node_index(n), last);
                last = node_index(n);
                counts[last]++;
        }
        for (unsigned i = 0; i < 4; i++)
                ck_assert_uint_eq(counts[i], 100);
}
END_TEST

START_TEST(test_round_robin_only_candidates) {
        unsigned counts[5] = {};
        const char *reason;
        RouteNode *n;

        add_node(0, true, "llama3.2");
        add_node(1, false, "llama3.2");         /* down */
        add_node(2, true, "mistral");           /* other model */
        add_node(3, true, "llama3.2,mistral");
        add_node(4, true, "llama3.2:1b");       /* other tag */

        for (unsigned k = 0; k < 100; k++) {
                ck_assert_int_eq(route_table_pick(&t, ROUTE_POLICY_ROUND_ROBIN, "llama3.2", NULL, NULL, &n, &reason), 0);
                counts[node_index(n)]++;
        }
        ck_assert_uint_eq(counts[0], 50);
        ck_assert_uint_eq(counts[1], 0);
        ck_assert_uint_eq(counts[2], 0);
        ck_assert_uint_eq(counts[3], 50);
        ck_assert_uint_eq(counts[4], 0);

        /* A node going down drops out at once; coming back joins the rotation again. */
        t.nodes[0].up = false;
        for (unsigned k = 0; k < 10; k++) {
                ck_assert_int_eq(route_table_pick(&t, ROUTE_POLICY_ROUND_ROBIN, "llama3.2", NULL, NULL, &n, &reason), 0);
                ck_assert_uint_eq(node_index(n), 3);
                ck_assert_str_eq(reason, "only live node serving the model");
        }
        t.nodes[1].up = true;
        memset(counts, 0, sizeof(counts));
        for (unsigned k = 0; k < 10; k++) {
                ck_assert_int_eq(route_table_pick(&t, ROUTE_POLICY_ROUND_ROBIN, "llama3.2", NULL, NULL, &n, &reason), 0);
                counts[node_index(n)]++;
        }
        ck_assert_uint_eq(counts[1], 5);
        ck_assert_uint_eq(counts[3], 5);
}
END_TEST

START_TEST(test_least_loaded) {
        const char *reason;
        RouteNode *n, *a, *b, *c;

        /* Adding may move the array: take the pointers once all are in. */
        add_node(0, true, "m");
        add_node(1, true, "m");
        add_node(2, true, "m");
        a = &t.nodes[0];
        b = &t.nodes[1];
        c = &t.nodes[2];

        a->in_flight = 3;
        b->in_flight = 1;
        c->in_flight = 2;
        ck_assert_int_eq(route_table_pick(&t, ROUTE_POLICY_LEAST_LOADED, "m", NULL, NULL, &n, &reason), 0);
        ck_assert_ptr_eq(n, &t.nodes[1]);
        ck_assert_str_eq(reason, "least loaded");

        /* Load is relative to capacity: 3 of 8 beats 1 of 1. */
        a->capacity = 8;
        b->capacity = 1;
        c->capacity = 0;        /* unknown counts as 1 */
        ck_assert_int_eq(route_table_pick(&t, ROUTE_POLICY_LEAST_LOADED, "m", NULL, NULL, &n, &reason), 0);
        ck_assert_ptr_eq(n, &t.nodes[0]);

        /* Equal load: the faster first byte wins. */
        a->capacity = b->capacity = c->capacity = 0;
        a->in_flight = b->in_flight = c->in_flight = 0;
        a->ttfb_ewma_usec = 300;
        b->ttfb_ewma_usec = 200;
        c->ttfb_ewma_usec = 100;
        ck_assert_int_eq(route_table_pick(&t, ROUTE_POLICY_LEAST_LOADED, "m", NULL, NULL, &n, &reason), 0);
        ck_assert_ptr_eq(n, &t.nodes[2]);

        /* The least loaded node that is down or excluded is not chosen. */
        c->up = false;
        ck_assert_int_eq(route_table_pick(&t, ROUTE_POLICY_LEAST_LOADED, "m", NULL, NULL, &n, &reason), 0);
        ck_assert_ptr_eq(n, &t.nodes[1]);
        {
                char *exclude[] = { t.nodes[1].id, NULL };

                ck_assert_int_eq(route_table_pick(&t, ROUTE_POLICY_LEAST_LOADED, "m", NULL, exclude, &n, &reason), 0);
                ck_assert_ptr_eq(n, &t.nodes[0]);
                ck_assert_str_eq(reason, "only live node serving the model");
        }
}
END_TEST

START_TEST(test_exclude) {
        const char *reason;
        RouteNode *n;

        add_node(0, true, "m");
        add_node(1, true, "m");
        add_node(2, true, "m");

        {
                char *exclude[] = { t.nodes[0].id, t.nodes[2].id, NULL };

                for (unsigned k = 0; k < 6; k++) {
                        ck_assert_int_eq(route_table_pick(&t, ROUTE_POLICY_ROUND_ROBIN, "m", NULL, exclude, &n, &reason), 0);
                        ck_assert_ptr_eq(n, &t.nodes[1]);
                }
        }
        {
                char *exclude[] = { t.nodes[0].id, t.nodes[1].id, t.nodes[2].id, NULL };

                n = NULL;
                for (int p = 0; p < _ROUTE_POLICY_MAX; p++) {
                        ck_assert_int_eq(route_table_pick(&t, (RoutePolicy) p, "m", NULL, exclude, &n, &reason), -ENOENT);
                        ck_assert_ptr_null(n);
                        ck_assert_ptr_nonnull(reason);
                }
        }
        {
                /* Ids not in the table are harmless. */
                char *exclude[] = { (char *) "ffffffffffffffffffffffffffffffff", (char *) "", NULL };

                ck_assert_int_eq(route_table_pick(&t, ROUTE_POLICY_ROUND_ROBIN, "m", NULL, exclude, &n, &reason), 0);
        }
}
END_TEST

START_TEST(test_no_route) {
        const char *reason = NULL;
        RouteNode *n = NULL;

        /* Empty table. */
        ck_assert_int_eq(route_table_pick(&t, ROUTE_POLICY_ROUND_ROBIN, "m", NULL, NULL, &n, &reason), -ENOENT);
        ck_assert_str_eq(reason, "no live node serves the model");

        /* Only down nodes, or nobody with the model. */
        add_node(0, false, "m");
        add_node(1, true, "other");
        for (int p = 0; p < _ROUTE_POLICY_MAX; p++) {
                ck_assert_int_eq(route_table_pick(&t, (RoutePolicy) p, "m", NULL, NULL, &n, &reason), -ENOENT);
                ck_assert_int_eq(route_table_pick(&t, (RoutePolicy) p, "", NULL, NULL, &n, &reason), -ENOENT);
                ck_assert_int_eq(route_table_pick(&t, (RoutePolicy) p, NULL, NULL, NULL, &n, &reason), -ENOENT);
        }
        ck_assert_ptr_null(n);
}
END_TEST

START_TEST(test_find_and_add) {
        RouteNode *n;

        ck_assert_ptr_null(route_table_find(&t, "00000000000000000000000000000001"));
        add_node(1, true, "m");
        n = route_table_find(&t, "00000000000000000000000000000001");
        ck_assert_ptr_nonnull(n);
        ck_assert_str_eq(n->name, "node1");
        ck_assert_str_eq(n->address, "http://127.0.0.1:11435");
        ck_assert(!n->local);
        ck_assert_uint_eq(n->in_flight, 0);

        /* NULL name and address become "". */
        ck_assert_int_eq(route_table_add(&t, "abc", NULL, NULL, &n), 0);
        ck_assert_str_eq(n->name, "");
        ck_assert_str_eq(n->address, "");
        ck_assert_uint_eq(n->n_models, 0);
        ck_assert_int_eq(route_table_add(&t, "def", "x", "y", NULL), 0);
        ck_assert_uint_eq(t.n_nodes, 3);
}
END_TEST

START_TEST(test_limits) {
        char *models[ROUTE_MAX_MODELS + 1];
        char long_id[NODE_ID_LEN + 2];
        const char *reason;
        RouteNode *n;

        memset(long_id, 'a', sizeof(long_id) - 1);
        long_id[sizeof(long_id) - 1] = '\0';
        ck_assert_int_eq(route_table_add(&t, long_id, "x", "y", &n), -EINVAL);
        long_id[NODE_ID_LEN] = '\0';
        ck_assert_int_eq(route_table_add(&t, long_id, "x", "y", &n), 0);
        ck_assert_str_eq(n->id, long_id);

        for (size_t i = 0; i < ELEMENTSOF(models); i++)
                models[i] = (char *) "m";
        ck_assert_int_eq(route_node_set_models(n, models, ROUTE_MAX_MODELS + 1), -E2BIG);
        ck_assert_uint_eq(n->n_models, 0);
        ck_assert_int_eq(route_node_set_models(n, models, ROUTE_MAX_MODELS), 0);
        ck_assert_uint_eq(n->n_models, ROUTE_MAX_MODELS);
        /* Replacing frees the old list (valgrind); an empty list is fine. */
        ck_assert_int_eq(route_node_set_models(n, models, 1), 0);
        ck_assert_uint_eq(n->n_models, 1);
        ck_assert_int_eq(route_node_set_models(n, NULL, 0), 0);
        ck_assert_uint_eq(n->n_models, 0);
        route_table_clear(&t);

        for (unsigned i = 0; i < ROUTE_MAX_NODES; i++) {
                char id[NODE_ID_LEN + 1];

                snprintf(id, sizeof(id), "%032x", i);
                ck_assert_int_eq(route_table_add(&t, id, "n", "a", NULL), 0);
        }
        ck_assert_int_eq(route_table_add(&t, "overflow", "n", "a", NULL), -E2BIG);
        ck_assert_uint_eq(t.n_nodes, ROUTE_MAX_NODES);

        /* A full table still routes. */
        t.nodes[ROUTE_MAX_NODES - 1].up = true;
        models[0] = (char *) "m";
        ck_assert_int_eq(route_node_set_models(&t.nodes[ROUTE_MAX_NODES - 1], models, 1), 0);
        ck_assert_int_eq(route_table_pick(&t, ROUTE_POLICY_ROUND_ROBIN, "m", NULL, NULL, &n, &reason), 0);
        ck_assert_ptr_eq(n, &t.nodes[ROUTE_MAX_NODES - 1]);
}
END_TEST

static RouteNode *pick_for(RoutePolicy policy, const char *holder, uint64_t anchor, uint64_t random) {
        RoutePick pick = { .model = "m", .policy = policy, .holder = holder, .anchor = anchor, .random = random };
        const char *reason;
        RouteNode *n;

        ck_assert_int_eq(route_table_pick_for(&t, &pick, &n, &reason), 0);
        ck_assert_ptr_nonnull(reason);
        return n;
}

/* The holder of a context gets its requests while it stays within (1 + eps) of the mean load;
 * then the rendezvous choice takes over. */
START_TEST(test_gravity_holder_and_bound) {
        RouteNode *a, *b, *c;
        uint64_t anchor = 0x1234567;

        add_node(0, true, "m");
        add_node(1, true, "m");
        add_node(2, true, "m");
        a = &t.nodes[0];
        b = &t.nodes[1];
        c = &t.nodes[2];

        ck_assert_ptr_eq(pick_for(ROUTE_POLICY_GRAVITY, b->id, anchor, 1), b);
        /* 2 in flight on b, none elsewhere: ceil(1.25 * 3 / 3) = 2 < 3: b is over. */
        b->in_flight = 2;
        ck_assert_ptr_ne(pick_for(ROUTE_POLICY_GRAVITY, b->id, anchor, 1), b);
        /* With the others busy too, b is within the bound again. */
        a->in_flight = 2;
        c->in_flight = 2;
        ck_assert_ptr_eq(pick_for(ROUTE_POLICY_GRAVITY, b->id, anchor, 1), b);
        /* Busy beyond its share, but with a free slot (capacity 4): it keeps the context. */
        a->in_flight = c->in_flight = 0;
        b->capacity = 4;
        ck_assert_ptr_eq(pick_for(ROUTE_POLICY_GRAVITY, b->id, anchor, 1), b);
        b->in_flight = 4;
        ck_assert_ptr_ne(pick_for(ROUTE_POLICY_GRAVITY, b->id, anchor, 1), b);
        /* A holder that does not serve the model, or is down, is no holder. */
        b->up = false;
        ck_assert_ptr_ne(pick_for(ROUTE_POLICY_GRAVITY, b->id, anchor, 1), b);
}
END_TEST

/* Without a holder, every entry node places a context the same way (rendezvous on its anchor),
 * whatever the order of its table; different anchors spread. */
START_TEST(test_gravity_rendezvous_agrees_and_spreads) {
        unsigned count[5] = {}, order[5] = { 3, 1, 4, 0, 2 };
        char first[1000][NODE_ID_LEN + 1];
        RouteTable saved;

        for (unsigned i = 0; i < 5; i++)
                add_node(i, true, "m");
        for (unsigned k = 0; k < 1000; k++) {
                RouteNode *n = pick_for(ROUTE_POLICY_GRAVITY, NULL, 1000 + k * 7919, k);

                snprintf(first[k], sizeof(first[k]), "%s", n->id);
                count[node_index(n)]++;
        }
        for (unsigned i = 0; i < 5; i++)
                ck_assert_msg(count[i] > 150 && count[i] < 250, "node %u got %u of 1000", i, count[i]);

        /* Another node's table: the same nodes in another order. */
        saved = t;
        route_table_init(&t);
        for (unsigned i = 0; i < 5; i++)
                add_node(order[i], true, "m");
        for (unsigned k = 0; k < 1000; k++)
                ck_assert_str_eq(pick_for(ROUTE_POLICY_GRAVITY, NULL, 1000 + k * 7919, k + 3)->id, first[k]);
        route_table_clear(&t);
        t = saved;
}
END_TEST

/* When a node leaves, only its contexts move; when one joins, contexts move only to it. */
START_TEST(test_gravity_minimal_movement) {
        char before[2000][NODE_ID_LEN + 1];
        unsigned moved = 0;

        for (unsigned i = 0; i < 4; i++)
                add_node(i, true, "m");
        for (unsigned k = 0; k < 2000; k++)
                snprintf(before[k], sizeof(before[k]), "%s", pick_for(ROUTE_POLICY_GRAVITY, NULL, 77 + k * 104729, k)->id);

        t.nodes[2].up = false;
        for (unsigned k = 0; k < 2000; k++) {
                const char *now = pick_for(ROUTE_POLICY_GRAVITY, NULL, 77 + k * 104729, k)->id;

                if (!streq(before[k], t.nodes[2].id))
                        ck_assert_str_eq(now, before[k]);
                else
                        moved++;
        }
        ck_assert_uint_gt(moved, 300);

        t.nodes[2].up = true;
        add_node(4, true, "m");
        moved = 0;
        for (unsigned k = 0; k < 2000; k++) {
                const char *now = pick_for(ROUTE_POLICY_GRAVITY, NULL, 77 + k * 104729, k)->id;

                if (!streq(now, before[k])) {
                        ck_assert_str_eq(now, t.nodes[4].id);
                        moved++;
                }
        }
        /* About a fifth moves to the new node. */
        ck_assert_msg(moved > 300 && moved < 500, "%u of 2000 moved", moved);
}
END_TEST

/* 30 conversations placed one after another, each staying in flight: no node ends above
 * (1 + eps) times the mean plus one, even when most anchors prefer one node. */
START_TEST(test_gravity_bounded_load) {
        unsigned max = 0;

        for (unsigned i = 0; i < 3; i++)
                add_node(i, true, "m");
        for (unsigned k = 0; k < 30; k++) {
                /* Every conversation's holder is node 0. */
                RouteNode *n = pick_for(ROUTE_POLICY_GRAVITY, t.nodes[0].id, 5 + k, k);

                n->in_flight++;
        }
        for (unsigned i = 0; i < 3; i++)
                max = MAX(max, t.nodes[i].in_flight);
        ck_assert_uint_le(max, (unsigned) (1.25 * 10) + 1);
        ck_assert_uint_ge(t.nodes[0].in_flight, 10);
}
END_TEST

START_TEST(test_latency_and_local_first) {
        unsigned fast = 0;
        RouteNode *a, *b, *c;

        add_node(0, true, "m");
        add_node(1, true, "m");
        add_node(2, true, "m");
        a = &t.nodes[0];
        b = &t.nodes[1];
        c = &t.nodes[2];
        a->ttfb_ewma_usec = 50000;
        b->ttfb_ewma_usec = 400000;
        c->ttfb_ewma_usec = 400000;
        /* Two of three drawn: the fast one wins whenever it is drawn (2 of 3 times). */
        for (unsigned k = 0; k < 300; k++)
                if (pick_for(ROUTE_POLICY_LATENCY, NULL, 0, k * UINT64_C(0x9e3779b97f4a7c15)) == a)
                        fast++;
        ck_assert_msg(fast > 170 && fast < 230, "fast node %u of 300", fast);

        b->local = true;
        ck_assert_ptr_eq(pick_for(ROUTE_POLICY_LOCAL_FIRST, NULL, 0, 1), b);
        b->in_flight = 1;       /* at its capacity (unknown: 1) */
        ck_assert_ptr_ne(pick_for(ROUTE_POLICY_LOCAL_FIRST, NULL, 0, 1), b);
        b->capacity = 4;
        ck_assert_ptr_eq(pick_for(ROUTE_POLICY_LOCAL_FIRST, NULL, 0, 1), b);
}
END_TEST

/* Equal nodes share least-loaded picks instead of the first one taking them all. */
START_TEST(test_least_loaded_ties_spread) {
        unsigned count[3] = {};

        for (unsigned i = 0; i < 3; i++)
                add_node(i, true, "m");
        for (unsigned k = 0; k < 300; k++)
                count[node_index(pick_for(ROUTE_POLICY_LEAST_LOADED, NULL, 0, k * UINT64_C(0x9e3779b97f4a7c15)))]++;
        for (unsigned i = 0; i < 3; i++)
                ck_assert_msg(count[i] > 60, "node %u got %u of 300", i, count[i]);
}
END_TEST

/* X-Mycelia-Node: only the named node (by id or name) is a candidate. */
START_TEST(test_only_one_node) {
        RoutePick pick = { .model = "m", .policy = ROUTE_POLICY_ROUND_ROBIN };
        const char *reason;
        RouteNode *n;

        add_node(0, true, "m");
        add_node(1, true, "m");
        add_node(2, true, "other");
        ck_assert_ptr_eq(route_table_find_by_id_or_name(&t, "node1"), &t.nodes[1]);
        ck_assert_ptr_eq(route_table_find_by_id_or_name(&t, t.nodes[2].id), &t.nodes[2]);
        ck_assert_ptr_null(route_table_find_by_id_or_name(&t, "node9"));
        ck_assert_ptr_null(route_table_find_by_id_or_name(&t, ""));

        pick.only = "node1";
        for (unsigned k = 0; k < 5; k++) {
                ck_assert_int_eq(route_table_pick_for(&t, &pick, &n, &reason), 0);
                ck_assert_ptr_eq(n, &t.nodes[1]);
        }
        pick.only = t.nodes[0].id;
        ck_assert_int_eq(route_table_pick_for(&t, &pick, &n, &reason), 0);
        ck_assert_ptr_eq(n, &t.nodes[0]);
        /* The named node does not serve the model: no route, not another node. */
        pick.only = "node2";
        ck_assert_int_eq(route_table_pick_for(&t, &pick, &n, &reason), -ENOENT);
}
END_TEST

/* No node serving the model is up, some are cooling down: one of those, not no route. */
START_TEST(test_cooling_last_resort) {
        RoutePick pick = { .model = "m", .policy = ROUTE_POLICY_GRAVITY };
        const char *reason;
        RouteNode *n;

        add_node(0, true, "m");
        add_node(1, false, "m");
        add_node(2, false, "other");
        t.nodes[1].cooling = true;
        t.nodes[2].cooling = true;
        ck_assert_int_eq(route_table_pick_for(&t, &pick, &n, &reason), 0);
        ck_assert_ptr_eq(n, &t.nodes[0]);
        t.nodes[0].up = false;
        ck_assert_int_eq(route_table_pick_for(&t, &pick, &n, &reason), 0);
        ck_assert_ptr_eq(n, &t.nodes[1]);
        ck_assert_str_eq(reason, "every node serving the model is cooling down: the first to recover");
        /* Several cooling: the one whose cooling ends first, whatever the random draw. */
        ck_assert_int_eq(route_node_set_models(&t.nodes[2], (char *[]) { (char *) "m" }, 1), 0);
        t.nodes[1].cooling_until = 9000000;
        t.nodes[2].cooling_until = 5000000;
        for (unsigned k = 0; k < 8; k++) {
                pick.random = k * UINT64_C(0x9e3779b97f4a7c15);
                ck_assert_int_eq(route_table_pick_for(&t, &pick, &n, &reason), 0);
                ck_assert_ptr_eq(n, &t.nodes[2]);
        }
        /* Half-open (0: tried now) beats any deadline. */
        t.nodes[1].cooling_until = 0;
        ck_assert_int_eq(route_table_pick_for(&t, &pick, &n, &reason), 0);
        ck_assert_ptr_eq(n, &t.nodes[1]);
        /* Down and not cooling: nothing. */
        t.nodes[1].cooling = false;
        t.nodes[2].cooling = false;
        ck_assert_int_eq(route_table_pick_for(&t, &pick, &n, &reason), -ENOENT);
}
END_TEST

/* A service time per (node, model) from the caller. */
static usec_t service_time_of(const RouteNode *n, const char *model, void *userdata) {
        const usec_t *times = userdata;

        ck_assert_str_eq(model, "m");
        return times[n - t.nodes];
}

/* Latency with the caller's estimate: time to first byte alone no longer decides (a node that
 * answers its first token soon but streams slowly loses); unknown estimates fall back to it;
 * the queue scales the estimate. */
START_TEST(test_latency_service_time) {
        usec_t times[3] = { 2000000, 500000, 0 };
        RoutePick pick = { .model = "m", .policy = ROUTE_POLICY_LATENCY, .service_time = service_time_of,
                           .service_time_userdata = times };
        unsigned wins[3] = {};
        const char *reason;
        RouteNode *n;

        for (unsigned i = 0; i < 3; i++)
                add_node(i, true, "m");
        t.nodes[0].ttfb_ewma_usec = 10000;      /* first token fast, the whole answer slow */
        t.nodes[1].ttfb_ewma_usec = 100000;
        t.nodes[2].ttfb_ewma_usec = 1000000;    /* no estimate: this counts */
        for (unsigned k = 0; k < 300; k++) {
                pick.random = k * UINT64_C(0x9e3779b97f4a7c15);
                ck_assert_int_eq(route_table_pick_for(&t, &pick, &n, &reason), 0);
                wins[n - t.nodes]++;
        }
        /* Node 1 wins whenever drawn (2 of 3), node 2 beats node 0 when those two are drawn. */
        ck_assert_msg(wins[1] > 170 && wins[1] < 230, "node 1 won %u of 300", wins[1]);
        ck_assert_msg(wins[0] == 0, "node 0 won %u of 300", wins[0]);
        /* Two in flight on one slot triple node 1's cost (1.5 s): node 2 (1 s) now beats it. */
        t.nodes[1].in_flight = 2;
        wins[1] = wins[2] = 0;
        for (unsigned k = 0; k < 300; k++) {
                pick.random = k * UINT64_C(0x9e3779b97f4a7c15);
                ck_assert_int_eq(route_table_pick_for(&t, &pick, &n, &reason), 0);
                wins[n - t.nodes]++;
        }
        ck_assert_msg(wins[2] > 170, "node 2 won %u of 300", wins[2]);
}
END_TEST

static Suite *route_table_suite(void) {
        Suite *s = suite_create("route-table");
        TCase *tc = tcase_create("route-table");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_model_name_equal);
        tcase_add_test(tc, test_policy_names);
        tcase_add_test(tc, test_serves);
        tcase_add_test(tc, test_round_robin_fairness);
        tcase_add_test(tc, test_round_robin_only_candidates);
        tcase_add_test(tc, test_least_loaded);
        tcase_add_test(tc, test_exclude);
        tcase_add_test(tc, test_no_route);
        tcase_add_test(tc, test_find_and_add);
        tcase_add_test(tc, test_limits);
        tcase_add_test(tc, test_gravity_holder_and_bound);
        tcase_add_test(tc, test_gravity_rendezvous_agrees_and_spreads);
        tcase_add_test(tc, test_gravity_minimal_movement);
        tcase_add_test(tc, test_gravity_bounded_load);
        tcase_add_test(tc, test_latency_and_local_first);
        tcase_add_test(tc, test_least_loaded_ties_spread);
        tcase_add_test(tc, test_only_one_node);
        tcase_add_test(tc, test_cooling_last_resort);
        tcase_add_test(tc, test_latency_service_time);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(route_table_suite());
}
