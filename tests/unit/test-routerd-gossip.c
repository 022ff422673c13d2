/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/routerd/routerd-gossip.c's table side without a bus: add, update,
 * suspect, remove, sweep, one Generation per event, peers' loads. */
#include <stdio.h>

#include "gossip-member-fixture.h"
#include "gossip-members.h"
#include "routerd-manager.h"
#include "unit-test.h"

#define LOCAL_ID "0123456789abcdef0123456789abcdef"
#define PEER_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define PEER_C "cccccccccccccccccccccccccccccccc"

/* ---- the manager's table ---- */

static MyceliaConfig config;
static Manager *m;

static void setup(void) {
        config_init(&config);
        ck_assert_int_eq(config_set(&config, "node", "id", LOCAL_ID), 0);
        ck_assert_int_eq(config_set(&config, "node", "name", "alpha"), 0);
        ck_assert_int_eq(config_set(&config, "upstream", "url", "http://127.0.0.1:1"), 0);
        ck_assert_int_eq(manager_new(&config, &m), 0);
}

static void teardown(void) {
        manager_free(m);
        config_done(&config);
}

/* One event as the signal callback applies it. */
static int apply(const GossipMember *g, bool removed) {
        int r;

        manager_batch_begin(m);
        r = router_gossip_apply(m, g, removed);
        manager_batch_end(m);
        return r;
}

START_TEST(test_table_join_update_leave) {
        GossipMember g = member(PEER_B, "alive", "127.0.0.1:40000", "0.0.0.0:40001", "llama3.2,qwen");
        uint64_t gen = m->table.generation;
        RouteNode *n, *picked;
        const char *reason;

        ck_assert_int_eq(apply(&g, false), 1);
        ck_assert_uint_eq(m->table.generation, gen + 1);        /* one event, one bump */
        ck_assert_uint_eq(m->table.n_nodes, 2);
        n = route_table_find(&m->table, PEER_B);
        ck_assert_ptr_nonnull(n);
        ck_assert(!n->local);
        ck_assert(n->up);
        ck_assert_str_eq(n->name, "peer");
        ck_assert_str_eq(n->address, "http://127.0.0.1:40001");
        ck_assert_uint_eq(n->n_models, 2);
        ck_assert_int_eq(manager_route(m, "qwen:latest", "", NULL, &picked, &reason), 0);
        ck_assert_str_eq(picked->id, PEER_B);

        /* The same again changes nothing. */
        gen = m->table.generation;
        ck_assert_int_eq(apply(&g, false), 1);
        ck_assert_uint_eq(m->table.generation, gen);

        /* Suspect: kept, down, routed around. */
        g.state = "suspect";
        ck_assert_int_eq(apply(&g, false), 1);
        ck_assert_uint_eq(m->table.generation, gen + 1);
        n = route_table_find(&m->table, PEER_B);
        ck_assert(!n->up);
        ck_assert_int_eq(manager_route(m, "qwen", "", NULL, &picked, &reason), -ENOENT);

        /* Refuted, with new models, a new address and a new name: one bump. */
        g = member(PEER_B, "alive", "127.0.0.1:40000", "127.0.0.1:40002", "mistral");
        g.name = "bravo";
        gen = m->table.generation;
        ck_assert_int_eq(apply(&g, false), 1);
        ck_assert_uint_eq(m->table.generation, gen + 1);
        n = route_table_find(&m->table, PEER_B);
        ck_assert(n->up);
        ck_assert_str_eq(n->name, "bravo");
        ck_assert_str_eq(n->address, "http://127.0.0.1:40002");
        ck_assert_uint_eq(n->n_models, 1);
        ck_assert_str_eq(n->models[0], "mistral");

        /* MemberFailed: out. */
        gen = m->table.generation;
        g.state = "dead";
        ck_assert_int_eq(apply(&g, true), 0);
        ck_assert_uint_eq(m->table.generation, gen + 1);
        ck_assert_ptr_null(route_table_find(&m->table, PEER_B));
        ck_assert_ptr_null(manager_get_stats(m, PEER_B));
        ck_assert_uint_eq(m->table.n_nodes, 1);

        /* Rejoin; then an update that is "left" removes it too. */
        g = member(PEER_B, "alive", "127.0.0.1:40000", "127.0.0.1:40002", "mistral");
        ck_assert_int_eq(apply(&g, false), 1);
        g.state = "left";
        ck_assert_int_eq(apply(&g, false), 0);
        ck_assert_ptr_null(route_table_find(&m->table, PEER_B));

        /* Losing its mesh metadata takes it out as well. */
        g = member(PEER_B, "alive", "127.0.0.1:40000", "127.0.0.1:40002", "mistral");
        ck_assert_int_eq(apply(&g, false), 1);
        g = member(PEER_B, "alive", "127.0.0.1:40000", NULL, "mistral");
        ck_assert_int_eq(apply(&g, false), 0);
        ck_assert_ptr_null(route_table_find(&m->table, PEER_B));

        /* Removing what is not there changes nothing. */
        gen = m->table.generation;
        ck_assert_int_eq(apply(&g, true), 0);
        ck_assert_uint_eq(m->table.generation, gen);
}
END_TEST

START_TEST(test_table_local_skipped) {
        GossipMember g = member(LOCAL_ID, "alive", "127.0.0.1:40000", "127.0.0.1:40001", "other");
        uint64_t gen = m->table.generation;
        RouteNode *n;

        ck_assert_int_eq(apply(&g, false), 0);
        ck_assert_int_eq(apply(&g, true), 0);
        ck_assert_uint_eq(m->table.generation, gen);
        n = route_table_find(&m->table, LOCAL_ID);
        ck_assert_ptr_nonnull(n);
        ck_assert_str_eq(n->address, "http://127.0.0.1:1");
        ck_assert_uint_eq(n->n_models, 0);
        ck_assert_int_eq(manager_node_remove(m, LOCAL_ID), -EPERM);
}
END_TEST

START_TEST(test_table_sync_sweep) {
        GossipMember b = member(PEER_B, "alive", "127.0.0.1:40000", "127.0.0.1:40001", "a");
        GossipMember c = member(PEER_C, "suspect", "127.0.0.1:40010", "127.0.0.1:40011", "a");
        char seen[2][NODE_ID_LEN + 1];
        uint64_t gen;

        ck_assert_int_eq(apply(&b, false), 1);
        ck_assert_int_eq(apply(&c, false), 1);
        ck_assert_uint_eq(m->table.n_nodes, 3);

        /* A full read listing only C: B goes, all in one bump. */
        gen = m->table.generation;
        manager_batch_begin(m);
        c.state = "alive";
        ck_assert_int_eq(router_gossip_apply(m, &c, false), 1);
        snprintf(seen[0], sizeof(seen[0]), "%s", PEER_C);
        router_gossip_sweep(m, seen, 1);
        manager_batch_end(m);
        ck_assert_uint_eq(m->table.generation, gen + 1);
        ck_assert_uint_eq(m->table.n_nodes, 2);
        ck_assert_ptr_null(route_table_find(&m->table, PEER_B));
        ck_assert(route_table_find(&m->table, PEER_C)->up);
        ck_assert_ptr_nonnull(route_table_find(&m->table, LOCAL_ID));

        /* An empty read keeps only the local node. */
        manager_batch_begin(m);
        router_gossip_sweep(m, seen, 0);
        manager_batch_end(m);
        ck_assert_uint_eq(m->table.n_nodes, 1);
        ck_assert(m->table.nodes[0].local);
}
END_TEST

START_TEST(test_table_load) {
        GossipMember g = member(PEER_B, "alive", "127.0.0.1:40000", "127.0.0.1:40001", "a");
        InFlightCount counts[1] = { { PEER_B, 2 } };
        RouteNode *n;

        g.meta_keys[g.n_meta] = "in_flight";
        g.meta_values[g.n_meta++] = "5";
        g.meta_keys[g.n_meta] = "capacity";
        g.meta_values[g.n_meta++] = "8";
        ck_assert_int_eq(apply(&g, false), 1);
        n = route_table_find(&m->table, PEER_B);
        ck_assert_uint_eq(n->in_flight, 5);
        ck_assert_uint_eq(n->capacity, 8);

        /* The shim's own count wins when it is higher, gossip's when that is. */
        counts[0].count = 7;
        ck_assert_int_eq(manager_report(m, NULL, 0, counts, 1), 0);
        n = route_table_find(&m->table, PEER_B);
        ck_assert_uint_eq(n->in_flight, 7);
        counts[0].count = 2;
        ck_assert_int_eq(manager_report(m, NULL, 0, counts, 1), 0);
        ck_assert_uint_eq(route_table_find(&m->table, PEER_B)->in_flight, 5);
        manager_clear_in_flight(m);
        ck_assert_uint_eq(route_table_find(&m->table, PEER_B)->in_flight, 5);

        g.meta_values[g.n_meta - 2] = "0";
        ck_assert_int_eq(apply(&g, false), 1);
        ck_assert_uint_eq(route_table_find(&m->table, PEER_B)->in_flight, 0);
}
END_TEST

/* Loads from Gossip1.Loads and LoadsChanged: they set in_flight and capacity, win over metadata
 * (nodes of earlier versions), survive member updates and go with the member. */
START_TEST(test_table_loads_heard) {
        GossipMember g = member(PEER_B, "alive", "127.0.0.1:40000", "127.0.0.1:40001", "a");
        InFlightCount counts[1] = { { PEER_B, 2 } };
        uint64_t gen;
        RouteNode *n;

        /* Heard before the member is routable: kept. */
        ck_assert_int_eq(router_gossip_apply_load(m, PEER_B, 4, 8), 1);
        ck_assert_ptr_null(route_table_find(&m->table, PEER_B));
        g.meta_keys[g.n_meta] = "in_flight";
        g.meta_values[g.n_meta++] = "9";
        ck_assert_int_eq(apply(&g, false), 1);
        n = route_table_find(&m->table, PEER_B);
        ck_assert_uint_eq(n->in_flight, 4);
        ck_assert_uint_eq(n->capacity, 8);

        /* A change: one Generation, nothing else about the node changes. */
        gen = m->table.generation;
        manager_batch_begin(m);
        ck_assert_int_eq(router_gossip_apply_load(m, PEER_B, 1, 8), 1);
        manager_batch_end(m);
        ck_assert_uint_eq(m->table.generation, gen + 1);
        n = route_table_find(&m->table, PEER_B);
        ck_assert_uint_eq(n->in_flight, 1);
        ck_assert_str_eq(n->address, "http://127.0.0.1:40001");
        ck_assert_str_eq(n->models[0], "a");
        ck_assert(n->up);
        /* The same again changes nothing. */
        gen = m->table.generation;
        ck_assert_int_eq(router_gossip_apply_load(m, PEER_B, 1, 8), 0);
        ck_assert_uint_eq(m->table.generation, gen);

        /* A member update (metadata in_flight from an older node, or none) keeps the load heard. */
        g.name = "bravo";
        ck_assert_int_eq(apply(&g, false), 1);
        n = route_table_find(&m->table, PEER_B);
        ck_assert_str_eq(n->name, "bravo");
        ck_assert_uint_eq(n->in_flight, 1);
        ck_assert_uint_eq(n->capacity, 8);

        /* This node's shim's own count still wins when higher. */
        counts[0].count = 6;
        ck_assert_int_eq(manager_report(m, NULL, 0, counts, 1), 0);
        ck_assert_uint_eq(route_table_find(&m->table, PEER_B)->in_flight, 6);
        counts[0].count = 0;
        ck_assert_int_eq(manager_report(m, NULL, 0, counts, 1), 0);
        ck_assert_uint_eq(route_table_find(&m->table, PEER_B)->in_flight, 1);

        /* The local node's own load is not taken from anyone. */
        gen = m->table.generation;
        ck_assert_int_eq(router_gossip_apply_load(m, LOCAL_ID, 50, 50), 0);
        ck_assert_int_eq(router_gossip_apply_load(m, "", 50, 50), 0);
        ck_assert_uint_eq(route_table_find(&m->table, LOCAL_ID)->in_flight, 0);
        ck_assert_uint_eq(m->table.generation, gen);

        /* Absurd values are clamped. */
        ck_assert_int_eq(router_gossip_apply_load(m, PEER_B, UINT32_MAX, UINT32_MAX), 1);
        ck_assert_uint_eq(route_table_find(&m->table, PEER_B)->in_flight, GOSSIP_LOAD_MAX);
        ck_assert_uint_eq(route_table_find(&m->table, PEER_B)->capacity, GOSSIP_LOAD_MAX);

        /* Gone: the load goes too; back without a load heard, metadata it is again. */
        ck_assert_int_eq(router_gossip_apply_load(m, PEER_B, 3, 8), 1);
        g.state = "dead";
        ck_assert_int_eq(apply(&g, true), 0);
        ck_assert_ptr_null(gossip_loads_find(&m->gossip.loads, PEER_B));
        g.state = "alive";
        ck_assert_int_eq(apply(&g, false), 1);
        ck_assert_uint_eq(route_table_find(&m->table, PEER_B)->in_flight, 9);
        ck_assert_uint_eq(route_table_find(&m->table, PEER_B)->capacity, 0);

        /* Out of the table in a sweep: its load too. */
        ck_assert_int_eq(router_gossip_apply_load(m, PEER_B, 3, 8), 1);
        manager_batch_begin(m);
        router_gossip_sweep(m, NULL, 0);
        manager_batch_end(m);
        ck_assert_ptr_null(route_table_find(&m->table, PEER_B));
        ck_assert_ptr_null(gossip_loads_find(&m->gossip.loads, PEER_B));
}
END_TEST

static Suite *routerd_gossip_suite(void) {
        Suite *s = suite_create("routerd-gossip");
        TCase *tt = tcase_create("table");

        tcase_add_checked_fixture(tt, setup, teardown);
        tcase_add_test(tt, test_table_join_update_leave);
        tcase_add_test(tt, test_table_local_skipped);
        tcase_add_test(tt, test_table_sync_sweep);
        tcase_add_test(tt, test_table_load);
        tcase_add_test(tt, test_table_loads_heard);
        suite_add_tcase(s, tt);
        return s;
}

int main(void) {
        return unit_test_run(routerd_gossip_suite());
}
