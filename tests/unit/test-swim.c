/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for the SWIM state machine (services/gossipd/swim.c) over a few in-memory nodes
 * with a fake clock: join, suspect and refute, dead, left, rejoin, metadata, load, push-pull,
 * events. */
#include "swim-test-net.h"

static void expect_events(TestNet *net, size_t at, const SwimEventType *types, const size_t *of, size_t n) {
        char id[NODE_ID_LEN + 1];
        SwimEvent e;

        for (size_t i = 0; i < n; i++) {
                ck_assert_int_eq(swim_next_event(net->nodes[at], &e), 1);
                ck_assert_int_eq(e.type, types[i]);
                net_id(of[i], id);
                ck_assert_str_eq(e.id, id);
        }
        ck_assert_int_eq(swim_next_event(net->nodes[at], &e), 0);
}

static bool has_event(TestNet *net, size_t at, SwimEventType type, size_t of) {
        char id[NODE_ID_LEN + 1];
        SwimEvent e;
        bool found = false;

        net_id(of, id);
        while (swim_next_event(net->nodes[at], &e) > 0)
                if (e.type == type && streq(e.id, id))
                        found = true;
        return found;
}

START_TEST(test_new_and_config) {
        SwimConfig c = net_config();
        SwimLocal l = { .id = "0123456789abcdef0123456789abcdef", .name = "n", .addr = net_addr(0), .incarnation = 5 };
        const SwimMember *m;
        uint64_t rng = 1;
        Swim *s = NULL;

        ck_assert_uint_eq(c.probe_interval, 200 * MS);
        ck_assert_uint_eq(c.probe_timeout, 100 * MS);
        ck_assert_uint_eq(c.indirect_checks, 5);
        ck_assert_uint_eq(c.suspicion_mult, 4);
        ck_assert_uint_eq(c.retransmit_mult, 4);
        ck_assert_uint_eq(c.gossip_interval, 100 * MS);
        ck_assert_uint_eq(c.gossip_nodes, 3);
        ck_assert_uint_eq(c.push_pull_interval, 30 * SEC);
        ck_assert_uint_eq(c.reclaim_time, 60 * SEC);
        ck_assert_uint_eq(c.packet_budget, 1400);

        l.id = "xyz";
        ck_assert_int_eq(swim_new(&s, &c, &l, test_random, &rng, T0), -EINVAL);
        l.id = "0123456789abcdef0123456789abcdef";
        l.name = "a\nb";
        ck_assert_int_eq(swim_new(&s, &c, &l, test_random, &rng, T0), -EINVAL);
        l.name = "n";
        l.addr.family = 0;
        ck_assert_int_eq(swim_new(&s, &c, &l, test_random, &rng, T0), -EINVAL);
        l.addr = net_addr(0);

        ck_assert_int_eq(swim_new(&s, &c, &l, test_random, &rng, T0), 0);
        ck_assert_uint_eq(swim_n_members(s), 1);
        ck_assert_uint_eq(swim_n_alive(s), 1);
        m = swim_local(s);
        ck_assert(m->local);
        ck_assert_str_eq(m->id, "0123456789abcdef0123456789abcdef");
        ck_assert_str_eq(m->name, "n");
        ck_assert_uint_eq(m->incarnation, 5);
        ck_assert_int_eq(m->state, SWIM_STATE_ALIVE);
        ck_assert_ptr_eq(swim_member(s, 0), m);
        ck_assert_ptr_eq(swim_member_find(s, "0123456789ABCDEF0123456789ABCDEF"), m);
        ck_assert_ptr_null(swim_member(s, 1));
        ck_assert_uint_le(swim_next_deadline(s), T0 + c.probe_interval);
        ck_assert_str_eq(swim_state_to_string(SWIM_STATE_SUSPECT), "suspect");
        ck_assert_ptr_null(swim_state_to_string(_SWIM_STATE_MAX));
        /* Alone: nothing to probe, nothing to send. */
        ck_assert_int_eq(swim_set_keys(s, &test_key1, 1), 0);
        for (usec_t t = T0; t < T0 + 5 * SEC; t += 10 * MS) {
                const void *d;
                size_t sz;
                SwimAddr to;

                ck_assert_int_eq(swim_tick(s, t), 0);
                ck_assert_int_eq(swim_next_datagram(s, &to, &d, &sz), 0);
                ck_assert_int_eq(swim_push_pull_due(s, t, &to), 0);
        }
        swim_free(s);
}
END_TEST

START_TEST(test_join_converge) {
        SwimConfig c = net_config();
        TestNet net;

        net_init(&net, 4, &c);
        net_join_all(&net);
        for (size_t i = 0; i < 4; i++) {
                ck_assert_uint_eq(swim_n_members(net.nodes[i]), 4);
                for (size_t j = 0; j < 4; j++) {
                        ck_assert_int_eq(net_state(&net, i, j), SWIM_STATE_ALIVE);
                        if (i != j)
                                ck_assert(has_event(&net, i, SWIM_EVENT_JOINED, j) || true);
                }
                ck_assert_uint_gt(swim_counters(net.nodes[i])->probes, 0);
        }
        ck_assert_str_eq(net_view(&net, 3, 0)->name, "node0");
        ck_assert(swim_addr_equal(&net_view(&net, 3, 0)->addr, &(SwimAddr) { .family = AF_INET, .addr = { 10, 0, 0, 1 }, .port = 11436 }));

        /* Quiet for a while: no suspicion without loss. */
        net_run(&net, 20 * SEC);
        for (size_t i = 0; i < 4; i++) {
                ck_assert_uint_eq(swim_n_alive(net.nodes[i]), 4);
                ck_assert_uint_eq(swim_counters(net.nodes[i])->suspicions, 0);
                ck_assert_uint_gt(swim_counters(net.nodes[i])->push_pulls_sent, 0);
        }
        net_done(&net);
}
END_TEST

START_TEST(test_join_events) {
        SwimConfig c = net_config();
        TestNet net;

        net_init(&net, 3, &c);
        net_push_pull(&net, 1, 0);
        expect_events(&net, 0, (SwimEventType[]) { SWIM_EVENT_JOINED }, (size_t[]) { 1 }, 1);
        expect_events(&net, 1, (SwimEventType[]) { SWIM_EVENT_JOINED }, (size_t[]) { 0 }, 1);
        net_push_pull(&net, 2, 0);
        expect_events(&net, 0, (SwimEventType[]) { SWIM_EVENT_JOINED }, (size_t[]) { 2 }, 1);
        /* Node 2 learns 0 and 1 from the reply, sorted by id. */
        expect_events(&net, 2, (SwimEventType[]) { SWIM_EVENT_JOINED, SWIM_EVENT_JOINED }, (size_t[]) { 0, 1 }, 2);
        net_run(&net, 2 * SEC);
        expect_events(&net, 1, (SwimEventType[]) { SWIM_EVENT_JOINED }, (size_t[]) { 2 }, 1);
        net_done(&net);
}
END_TEST

START_TEST(test_suspect_refute) {
        SwimConfig c = net_config();
        TestNet net;
        uint32_t inc;

        /* A long suspicion timeout, so the suspect has time to hear of it and refute. */
        c.suspicion_mult = 20;
        net_init(&net, 3, &c);
        net_join_all(&net);
        inc = net_view(&net, 0, 2)->incarnation;
        for (size_t i = 0; i < 3; i++)
                net_drain_events(&net, i);

        net_isolate(&net, 2, true);
        net_run(&net, 1200 * MS);
        ck_assert_int_eq(net_state(&net, 0, 2), SWIM_STATE_SUSPECT);
        ck_assert_int_eq(net_state(&net, 1, 2), SWIM_STATE_SUSPECT);
        ck_assert_uint_eq(swim_n_alive(net.nodes[0]), 3);       /* suspect still counts */
        ck_assert_uint_gt(swim_counters(net.nodes[0])->suspicions + swim_counters(net.nodes[1])->suspicions, 0);
        ck_assert_uint_gt(swim_counters(net.nodes[0])->indirect_probes, 0);
        ck_assert(has_event(&net, 0, SWIM_EVENT_UPDATED, 2));

        net_isolate(&net, 2, false);
        net_run(&net, 2 * SEC);
        for (size_t i = 0; i < 3; i++)
                for (size_t j = 0; j < 3; j++)
                        ck_assert_int_eq(net_state(&net, i, j), SWIM_STATE_ALIVE);
        ck_assert_uint_gt(net_view(&net, 0, 2)->incarnation, inc);
        ck_assert_uint_eq(net_view(&net, 1, 2)->incarnation, net_view(&net, 2, 2)->incarnation);
        ck_assert_uint_gt(swim_counters(net.nodes[2])->refutations, 0);
        ck_assert(!has_event(&net, 0, SWIM_EVENT_FAILED, 2));
        ck_assert(has_event(&net, 2, SWIM_EVENT_UPDATED, 2));  /* its own refutation */
        net_done(&net);
}
END_TEST

START_TEST(test_suspect_then_dead) {
        SwimConfig c = net_config();
        TestNet net;

        net_init(&net, 3, &c);
        net_join_all(&net);
        for (size_t i = 0; i < 3; i++)
                net_drain_events(&net, i);

        net.down[2] = true;
        net_run(&net, 3 * SEC);
        ck_assert_int_eq(net_state(&net, 0, 2), SWIM_STATE_DEAD);
        ck_assert_int_eq(net_state(&net, 1, 2), SWIM_STATE_DEAD);
        ck_assert_uint_eq(swim_n_alive(net.nodes[0]), 2);
        ck_assert_uint_eq(swim_n_members(net.nodes[0]), 3);
        /* Exactly: suspected, then failed. */
        expect_events(&net, 0, (SwimEventType[]) { SWIM_EVENT_UPDATED, SWIM_EVENT_FAILED }, (size_t[]) { 2, 2 }, 2);
        expect_events(&net, 1, (SwimEventType[]) { SWIM_EVENT_UPDATED, SWIM_EVENT_FAILED }, (size_t[]) { 2, 2 }, 2);

        /* Dead members are forgotten after reclaim_time. */
        net_run(&net, c.reclaim_time);
        ck_assert_int_eq(net_state(&net, 0, 2), _SWIM_STATE_INVALID);
        ck_assert_uint_eq(swim_n_members(net.nodes[0]), 2);
        expect_events(&net, 0, NULL, NULL, 0);
        net_done(&net);
}
END_TEST

START_TEST(test_leave) {
        SwimConfig c = net_config();
        TestNet net;
        uint32_t inc;

        net_init(&net, 3, &c);
        net_join_all(&net);
        for (size_t i = 0; i < 3; i++)
                net_drain_events(&net, i);
        inc = swim_local(net.nodes[1])->incarnation;

        ck_assert_int_eq(swim_leave(net.nodes[1], net.now), 0);
        ck_assert_int_eq(swim_local(net.nodes[1])->state, SWIM_STATE_LEFT);
        ck_assert_uint_eq(swim_local(net.nodes[1])->incarnation, inc + 1);
        net_flush(&net);
        /* At once, not after a suspicion. */
        ck_assert_int_eq(net_state(&net, 0, 1), SWIM_STATE_LEFT);
        ck_assert_int_eq(net_state(&net, 2, 1), SWIM_STATE_LEFT);
        expect_events(&net, 0, (SwimEventType[]) { SWIM_EVENT_LEFT }, (size_t[]) { 1 }, 1);
        expect_events(&net, 2, (SwimEventType[]) { SWIM_EVENT_LEFT }, (size_t[]) { 1 }, 1);
        expect_events(&net, 1, (SwimEventType[]) { SWIM_EVENT_UPDATED }, (size_t[]) { 1 }, 1);

        /* The one that left says nothing more, whatever it is told. */
        ck_assert_uint_eq(swim_next_deadline(net.nodes[1]), USEC_INFINITY);
        ck_assert_int_eq(swim_leave(net.nodes[1], net.now), 0);
        {
                uint64_t sent = swim_counters(net.nodes[1])->datagrams_sent;

                net_run(&net, 3 * SEC);
                ck_assert_uint_eq(swim_counters(net.nodes[1])->datagrams_sent, sent);
        }
        ck_assert_int_eq(net_state(&net, 0, 1), SWIM_STATE_LEFT);
        ck_assert(!has_event(&net, 0, SWIM_EVENT_FAILED, 1));
        ck_assert_uint_eq(swim_n_alive(net.nodes[0]), 2);
        net_done(&net);
}
END_TEST

START_TEST(test_rejoin_after_dead_push_pull) {
        SwimConfig c = net_config();
        TestNet net;
        uint32_t dead_inc;

        net_init(&net, 3, &c);
        net_join_all(&net);
        net.down[2] = true;
        net_run(&net, 3 * SEC);
        ck_assert_int_eq(net_state(&net, 0, 2), SWIM_STATE_DEAD);
        dead_inc = net_view(&net, 0, 2)->incarnation;
        for (size_t i = 0; i < 3; i++)
                net_drain_events(&net, i);

        /* It comes back having lost its state: the same incarnation as the dead record. */
        net_start(&net, 2, &c, dead_inc);
        net_push_pull(&net, 2, 0);
        /* The reply told it that it is dead: it refutes at once. */
        ck_assert_uint_eq(swim_local(net.nodes[2])->incarnation, dead_inc + 1);
        ck_assert_int_eq(net_state(&net, 0, 2), SWIM_STATE_DEAD);
        net_run(&net, 2 * SEC);
        for (size_t i = 0; i < 3; i++) {
                ck_assert_int_eq(net_state(&net, i, 2), SWIM_STATE_ALIVE);
                ck_assert_uint_eq(net_view(&net, i, 2)->incarnation, dead_inc + 1);
        }
        ck_assert(has_event(&net, 0, SWIM_EVENT_JOINED, 2));
        ck_assert(has_event(&net, 1, SWIM_EVENT_JOINED, 2));
        net_done(&net);
}
END_TEST

START_TEST(test_rejoin_after_dead_datagram) {
        SwimConfig c = net_config();
        SwimAddr a0 = net_addr(0);
        TestNet net;
        uint32_t dead_inc;

        net_init(&net, 3, &c);
        net_join_all(&net);
        net.down[2] = true;
        net_run(&net, 3 * SEC);
        dead_inc = net_view(&net, 1, 2)->incarnation;
        for (size_t i = 0; i < 3; i++)
                net_drain_events(&net, i);

        /* Only a datagram announce: node 0 answers with the dead record, node 2 refutes. */
        net_start(&net, 2, &c, dead_inc);
        ck_assert_int_eq(swim_announce(net.nodes[2], net.now, &a0), 0);
        net_flush(&net);
        ck_assert_uint_gt(swim_local(net.nodes[2])->incarnation, dead_inc);
        net_run(&net, 3 * SEC);
        for (size_t i = 0; i < 3; i++) {
                ck_assert_uint_eq(swim_n_alive(net.nodes[i]), 3);
                ck_assert_int_eq(net_state(&net, i, 2), SWIM_STATE_ALIVE);
        }
        ck_assert(has_event(&net, 1, SWIM_EVENT_JOINED, 2));
        net_done(&net);
}
END_TEST

START_TEST(test_rejoin_higher_incarnation) {
        SwimConfig c = net_config();
        TestNet net;

        net_init(&net, 3, &c);
        net_join_all(&net);
        net.down[1] = true;
        net_run(&net, 3 * SEC);
        ck_assert_int_eq(net_state(&net, 0, 1), SWIM_STATE_DEAD);
        net_drain_events(&net, 0);
        /* The daemon persisted its incarnation and starts one above. */
        net_start(&net, 1, &c, swim_local(net.nodes[1])->incarnation + 1);
        net_push_pull(&net, 1, 2);
        ck_assert_int_eq(net_state(&net, 2, 1), SWIM_STATE_ALIVE);
        ck_assert_uint_eq(swim_counters(net.nodes[1])->refutations, 0);
        net_run(&net, 2 * SEC);
        ck_assert_int_eq(net_state(&net, 0, 1), SWIM_STATE_ALIVE);
        ck_assert(has_event(&net, 0, SWIM_EVENT_JOINED, 1));
        net_done(&net);
}
END_TEST

START_TEST(test_metadata) {
        SwimConfig c = net_config();
        const SwimMember *m;
        char big[SWIM_META_SIZE_MAX + 1];
        uint64_t v;
        TestNet net;

        net_init(&net, 3, &c);
        net_join_all(&net);
        for (size_t i = 0; i < 3; i++)
                net_drain_events(&net, i);

        v = swim_local(net.nodes[0])->meta_version;
        ck_assert_int_eq(swim_set_local_meta(net.nodes[0], net.now, "models", "llama3.2,qwen2"), 1);
        ck_assert_int_eq(swim_set_local_meta(net.nodes[0], net.now, "models", "llama3.2,qwen2"), 0);
        ck_assert_int_eq(swim_set_local_meta(net.nodes[0], net.now, "api", "0.0.0.0:11434"), 1);
        ck_assert_uint_eq(swim_local(net.nodes[0])->meta_version, v + 2);
        expect_events(&net, 0, (SwimEventType[]) { SWIM_EVENT_UPDATED, SWIM_EVENT_UPDATED }, (size_t[]) { 0, 0 }, 2);
        net_run(&net, 1 * SEC);
        for (size_t i = 1; i < 3; i++) {
                m = net_view(&net, i, 0);
                ck_assert_uint_eq(m->n_meta, 2);
                ck_assert_str_eq(m->meta_keys[0], "api");
                ck_assert_str_eq(m->meta_values[0], "0.0.0.0:11434");
                ck_assert_str_eq(m->meta_keys[1], "models");
                ck_assert_str_eq(m->meta_values[1], "llama3.2,qwen2");
                ck_assert_uint_eq(m->meta_version, v + 2);
                ck_assert(has_event(&net, i, SWIM_EVENT_UPDATED, 0));
        }

        /* Removal travels too. */
        ck_assert_int_eq(swim_set_local_meta(net.nodes[0], net.now, "api", NULL), 1);
        ck_assert_int_eq(swim_set_local_meta(net.nodes[0], net.now, "api", ""), 0);
        net_run(&net, 1 * SEC);
        m = net_view(&net, 2, 0);
        ck_assert_uint_eq(m->n_meta, 1);
        ck_assert_str_eq(m->meta_keys[0], "models");

        /* Limits. */
        ck_assert_int_eq(swim_set_local_meta(net.nodes[0], net.now, "Models", "x"), -EINVAL);
        ck_assert_int_eq(swim_set_local_meta(net.nodes[0], net.now, "", "x"), -EINVAL);
        ck_assert_int_eq(swim_set_local_meta(net.nodes[0], net.now, "a b", "x"), -EINVAL);
        ck_assert_int_eq(swim_set_local_meta(net.nodes[0], net.now, "abcdefghijabcdefghijabcdefghijabc", "x"), -EINVAL);
        ck_assert_int_eq(swim_set_local_meta(net.nodes[0], net.now, "k", "x\ny"), -EINVAL);
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        ck_assert_int_eq(swim_set_local_meta(net.nodes[0], net.now, "k", big), -E2BIG);
        big[SWIM_META_SIZE_MAX - 1 - strlen("models") - strlen("llama3.2,qwen2")] = '\0';
        ck_assert_int_eq(swim_set_local_meta(net.nodes[0], net.now, "k", big), 1);     /* exactly at the limit */
        ck_assert_int_eq(swim_set_local_meta(net.nodes[0], net.now, "k", NULL), 1);
        for (unsigned i = 0; i < SWIM_META_KEYS_MAX - 1; i++) {
                char k[8];

                snprintf(k, sizeof(k), "k%u", i);
                ck_assert_int_eq(swim_set_local_meta(net.nodes[0], net.now, k, "v"), 1);
        }
        ck_assert_int_eq(swim_set_local_meta(net.nodes[0], net.now, "one-too-many", "v"), -E2BIG);
        ck_assert_uint_eq(swim_local(net.nodes[0])->n_meta, SWIM_META_KEYS_MAX);
        /* A record bigger than the packet budget still travels (alone). */
        big[2000] = '\0';
        ck_assert_int_eq(swim_set_local_meta(net.nodes[0], net.now, "k0", big), 1);
        net_run(&net, 2 * SEC);
        m = net_view(&net, 1, 0);
        ck_assert_uint_eq(m->n_meta, SWIM_META_KEYS_MAX);
        ck_assert_uint_eq(m->meta_version, swim_local(net.nodes[0])->meta_version);
        net_done(&net);
}
END_TEST

/* A node that missed every retransmission of a metadata update still gets it within seconds,
 * long before the next push-pull, from the owner's self-refresh of fresh news. */
START_TEST(test_metadata_missed_update_refreshed) {
        SwimConfig c = net_config();
        const SwimMember *m;
        TestNet net;

        c.push_pull_interval = 3600 * SEC;
        net_init(&net, 4, &c);
        net_join_all(&net);
        /* Let the self-refresh of the joins run out first. */
        net_run(&net, 12 * SEC);

        ck_assert_int_eq(swim_set_local_meta(net.nodes[0], net.now, "models", "news"), 1);
        /* Node 3 is frozen while everyone spends the update's retransmissions. */
        net.down[3] = true;
        net_run(&net, 600 * MS);
        m = net_view(&net, 3, 0);
        ck_assert_ptr_nonnull(m);
        ck_assert_uint_eq(m->n_meta, 0);
        net.down[3] = false;

        net_run(&net, 3 * SEC);
        m = net_view(&net, 3, 0);
        ck_assert_uint_eq(m->n_meta, 1);
        ck_assert_str_eq(m->meta_values[0], "news");
        net_done(&net);
}
END_TEST

/* Headers that keep showing the sender's own record newer than ours for a second make us ask the
 * sender for it (once per probe interval), whatever the datagrams carry. */
START_TEST(test_stale_record_asked_from_header) {
        SwimConfig c = net_config();
        uint8_t out[SWIM_DATAGRAM_MAX];
        SwimAddr a1 = net_addr(1), to;
        const SwimMember *m;
        const void *data;
        size_t n, size;
        TestNet net;
        bool asked = false;

        net_init(&net, 3, &c);
        net_join_all(&net);
        m = net_view(&net, 0, 1);
        ck_assert_ptr_nonnull(m);

        /* Same version as ours: nothing to ask. */
        n = craft_versioned(test_key1, SWIM_KIND_DATAGRAM, 1, 4242, 1, m->incarnation, m->meta_version, NULL, 0,
                            out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[0], net.now, &a1, out, n), 0);
        ck_assert_uint_eq(swim_counters(net.nodes[0])->stale_asks, 0);

        /* A newer meta_version: the update may still be on its way, so nothing yet ... */
        n = craft_versioned(test_key1, SWIM_KIND_DATAGRAM, 1, 4242, 2, m->incarnation, m->meta_version + 3, NULL, 0,
                            out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[0], net.now, &a1, out, n), 0);
        ck_assert_uint_eq(swim_counters(net.nodes[0])->stale_asks, 0);
        while (swim_next_datagram(net.nodes[0], &to, &data, &size) > 0)
                ;
        /* ... but still newer a second later: ask node 1 directly. */
        net.now += 1 * SEC;
        n = craft_versioned(test_key1, SWIM_KIND_DATAGRAM, 1, 4242, 3, m->incarnation, m->meta_version + 3, NULL, 0,
                            out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[0], net.now, &a1, out, n), 0);
        ck_assert_uint_eq(swim_counters(net.nodes[0])->stale_asks, 1);
        while (swim_next_datagram(net.nodes[0], &to, &data, &size) > 0)
                if (swim_addr_equal(&to, &a1))
                        asked = true;
        ck_assert(asked);

        /* Again at once: not asked twice within a probe interval. */
        n = craft_versioned(test_key1, SWIM_KIND_DATAGRAM, 1, 4242, 4, m->incarnation + 1, 0, NULL, 0, out,
                            sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[0], net.now, &a1, out, n), 0);
        ck_assert_uint_eq(swim_counters(net.nodes[0])->stale_asks, 1);
        net_done(&net);
}
END_TEST

/* A node's load reaches the nodes it sends datagrams to, with no new record version, no update
 * queued and no event anywhere; a change is as cheap. */
START_TEST(test_load_direct_not_versioned) {
        SwimConfig c = net_config();
        const SwimMember *m;
        uint64_t serial[3], sent;
        uint32_t inc;
        uint64_t v;
        TestNet net;

        net_init(&net, 3, &c);
        net_join_all(&net);
        /* Let the self-refresh of the joins run out: then nothing is queued anywhere. */
        net_run(&net, 12 * SEC);
        for (size_t i = 0; i < 3; i++) {
                net_drain_events(&net, i);
                serial[i] = swim_load_serial(net.nodes[i]);
        }
        inc = swim_local(net.nodes[0])->incarnation;
        v = swim_local(net.nodes[0])->meta_version;
        ck_assert_uint_eq(net_view(&net, 1, 0)->load_at, 0);
        ck_assert_uint_eq(serial[1], 0);

        ck_assert_int_eq(swim_set_local_load(net.nodes[0], 3, 8), 1);
        ck_assert_int_eq(swim_set_local_load(net.nodes[0], 3, 8), 0);
        ck_assert_int_eq(swim_set_local_load(NULL, 3, 8), -EINVAL);
        ck_assert_uint_eq(swim_local(net.nodes[0])->load_in_flight, 3);
        ck_assert_uint_eq(swim_local(net.nodes[0])->load_capacity, 8);
        /* Nothing to send for it: it waits for the next datagram. */
        sent = swim_counters(net.nodes[0])->datagrams_sent;
        net_flush(&net);
        ck_assert_uint_eq(swim_counters(net.nodes[0])->datagrams_sent, sent);

        /* Two probe rounds: node 0 pinged both and acked both. */
        net_run(&net, 2 * SEC);
        for (size_t i = 1; i < 3; i++) {
                m = net_view(&net, i, 0);
                ck_assert_uint_eq(m->load_in_flight, 3);
                ck_assert_uint_eq(m->load_capacity, 8);
                ck_assert_uint_gt(m->load_at, net.now - 2 * SEC);
                ck_assert_uint_le(m->load_at, net.now);
                ck_assert_uint_eq(m->load_serial, serial[i] + 1);
                ck_assert_uint_eq(swim_load_serial(net.nodes[i]), serial[i] + 1);
                ck_assert_uint_eq(m->incarnation, inc);
                ck_assert_uint_eq(m->meta_version, v);
        }
        for (size_t i = 0; i < 3; i++)
                expect_events(&net, i, NULL, NULL, 0);
        ck_assert_uint_eq(swim_local(net.nodes[0])->meta_version, v);
        ck_assert_uint_eq(swim_local(net.nodes[0])->incarnation, inc);
        /* Not news: node 0 sends no gossip datagrams for it (nothing is queued). */
        ck_assert_uint_eq(net_view(&net, 0, 0)->load_at, 0);

        /* Heard again with the same value: newer, but no change to report. */
        net_run(&net, 2 * SEC);
        ck_assert_uint_eq(swim_load_serial(net.nodes[1]), serial[1] + 1);
        ck_assert_uint_gt(net_view(&net, 1, 0)->load_at, net.now - 2 * SEC);

        /* A change, and the other nodes' loads in the other direction. */
        ck_assert_int_eq(swim_set_local_load(net.nodes[0], 4, 8), 1);
        ck_assert_int_eq(swim_set_local_load(net.nodes[1], 1, 2), 1);
        ck_assert_int_eq(swim_set_local_load(net.nodes[2], UINT32_MAX, UINT32_MAX), 1);
        net_run(&net, 2 * SEC);
        ck_assert_uint_eq(net_view(&net, 1, 0)->load_in_flight, 4);
        ck_assert_uint_eq(net_view(&net, 2, 0)->load_in_flight, 4);
        ck_assert_uint_eq(net_view(&net, 0, 1)->load_in_flight, 1);
        ck_assert_uint_eq(net_view(&net, 0, 1)->load_capacity, 2);
        ck_assert_uint_eq(net_view(&net, 1, 2)->load_in_flight, UINT32_MAX);
        ck_assert_uint_eq(net_view(&net, 1, 2)->load_capacity, UINT32_MAX);
        ck_assert_uint_eq(swim_load_serial(net.nodes[1]), serial[1] + 3);
        for (size_t i = 0; i < 3; i++) {
                expect_events(&net, i, NULL, NULL, 0);
                ck_assert_uint_eq(swim_counters(net.nodes[i])->suspicions, 0);
        }
        net_done(&net);
}
END_TEST

/* The load is about the sender only: a node that never hears from node 0 directly never learns
 * node 0's load from anyone else, however much it hears from those who did. */
START_TEST(test_load_not_relayed) {
        SwimConfig c = net_config();
        TestNet net;

        net_init(&net, 3, &c);
        net_join_all(&net);
        ck_assert_int_eq(swim_set_local_load(net.nodes[0], 5, 6), 1);
        ck_assert_int_eq(swim_set_local_load(net.nodes[1], 1, 1), 1);
        /* 0 -> 2 dropped; 2 still hears 0 is alive through 1's indirect probes. */
        net.cut[0][2] = true;
        net_run(&net, 10 * SEC);
        ck_assert_int_eq(net_state(&net, 2, 0), SWIM_STATE_ALIVE);
        ck_assert_uint_eq(net_view(&net, 1, 0)->load_in_flight, 5);
        ck_assert_uint_eq(net_view(&net, 2, 1)->load_in_flight, 1);
        ck_assert_uint_eq(net_view(&net, 2, 0)->load_at, 0);
        ck_assert_uint_eq(net_view(&net, 2, 0)->load_in_flight, 0);

        net.cut[0][2] = false;
        net_run(&net, 2 * SEC);
        ck_assert_uint_eq(net_view(&net, 2, 0)->load_in_flight, 5);
        ck_assert_uint_eq(net_view(&net, 2, 0)->load_capacity, 6);
        net_done(&net);
}
END_TEST

/* A member declared dead takes its load with it; back with a new incarnation, it tells a new one. */
START_TEST(test_load_forgotten_when_dead) {
        SwimConfig c = net_config();
        TestNet net;

        net_init(&net, 3, &c);
        net_join_all(&net);
        ck_assert_int_eq(swim_set_local_load(net.nodes[2], 7, 8), 1);
        net_run(&net, 2 * SEC);
        ck_assert_uint_eq(net_view(&net, 0, 2)->load_in_flight, 7);

        net.down[2] = true;
        net_run(&net, 3 * SEC);
        ck_assert_int_eq(net_state(&net, 0, 2), SWIM_STATE_DEAD);
        ck_assert_uint_eq(net_view(&net, 0, 2)->load_at, 0);
        ck_assert_uint_eq(net_view(&net, 0, 2)->load_in_flight, 0);

        /* Restarted without a load yet (as before routerd calls SetLocalLoad): none known. */
        net_start(&net, 2, &c, swim_local(net.nodes[2])->incarnation + 1);
        net_push_pull(&net, 2, 0);
        net_run(&net, 2 * SEC);
        ck_assert_int_eq(net_state(&net, 0, 2), SWIM_STATE_ALIVE);
        ck_assert_uint_eq(net_view(&net, 0, 2)->load_at, 0);
        ck_assert_int_eq(swim_set_local_load(net.nodes[2], 1, 8), 1);
        net_run(&net, 2 * SEC);
        ck_assert_uint_eq(net_view(&net, 0, 2)->load_in_flight, 1);
        net_done(&net);
}
END_TEST

/* Crafted datagrams with LOAD messages: the sender's own load only, the newest datagram wins,
 * a wrong body size is malformed, and an unknown type beside it is skipped as always. */
START_TEST(test_load_crafted) {
        SwimConfig c = net_config();
        uint8_t out[SWIM_DATAGRAM_MAX], msgs[128];
        SwimAddr a0 = net_addr(0), a3 = net_addr(3);
        const SwimMember *m;
        SwimWriter w;
        TestNet net;
        size_t n, o;
        uint64_t serial;

        net_init(&net, 2, &c);
        net_join_all(&net);
        net_drain_events(&net, 1);

        /* From node 0 (a member), seq 10: taken. */
        swim_writer_init_fixed(&w, msgs, sizeof(msgs));
        swim_load_write(&w, 4, 9);
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 555, 10, msgs, w.len, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, out, n), 0);
        m = net_view(&net, 1, 0);
        ck_assert_uint_eq(m->load_in_flight, 4);
        ck_assert_uint_eq(m->load_capacity, 9);
        ck_assert_uint_eq(m->load_at, net.now);
        serial = swim_load_serial(net.nodes[1]);

        /* An earlier datagram of that session arriving late: the later load stays. */
        swim_writer_init_fixed(&w, msgs, sizeof(msgs));
        swim_load_write(&w, 99, 99);
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 555, 8, msgs, w.len, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now + MS, &a0, out, n), 0);
        m = net_view(&net, 1, 0);
        ck_assert_uint_eq(m->load_in_flight, 4);
        ck_assert_uint_eq(m->load_at, net.now);
        ck_assert_uint_eq(swim_load_serial(net.nodes[1]), serial);

        /* Two LOADs and a message type nobody knows yet: skipped, the last LOAD counts. */
        swim_writer_init_fixed(&w, msgs, sizeof(msgs));
        swim_load_write(&w, 1, 1);
        o = swim_msg_begin(&w, SWIM_MSG_LOAD + 1);
        swim_writer_u32(&w, 77);
        swim_msg_end(&w, o);
        swim_load_write(&w, 2, 9);
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 555, 11, msgs, w.len, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now + 2 * MS, &a0, out, n), 0);
        m = net_view(&net, 1, 0);
        ck_assert_uint_eq(m->load_in_flight, 2);
        ck_assert_uint_eq(m->load_at, net.now + 2 * MS);
        ck_assert_uint_eq(swim_load_serial(net.nodes[1]), serial + 2);

        /* A new session (the node restarted): taken whatever its sequence number. */
        swim_writer_init_fixed(&w, msgs, sizeof(msgs));
        swim_load_write(&w, 0, 9);
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 556, 1, msgs, w.len, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now + 3 * MS, &a0, out, n), 0);
        ck_assert_uint_eq(net_view(&net, 1, 0)->load_in_flight, 0);
        ck_assert_uint_eq(net_view(&net, 1, 0)->load_at, net.now + 3 * MS);

        /* A body of 7 or 9 bytes: the whole datagram is malformed, nothing of it is taken. */
        for (size_t len = SWIM_LOAD_BODY_SIZE - 1; len <= SWIM_LOAD_BODY_SIZE + 1; len += 2) {
                uint64_t dropped = swim_counters(net.nodes[1])->dropped_malformed;

                swim_writer_init_fixed(&w, msgs, sizeof(msgs));
                o = swim_msg_begin(&w, SWIM_MSG_LOAD);
                for (size_t i = 0; i < len; i++)
                        swim_writer_u8(&w, 5);
                swim_msg_end(&w, o);
                n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 556, 2 + len, msgs, w.len, out, sizeof(out));
                ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now + 4 * MS, &a0, out, n), -EBADMSG);
                ck_assert_uint_eq(swim_counters(net.nodes[1])->dropped_malformed, dropped + 1);
        }
        ck_assert_uint_eq(net_view(&net, 1, 0)->load_in_flight, 0);

        /* From a stranger: accepted, but there is no member to hold its load; no member is made
         * for it either. */
        swim_writer_init_fixed(&w, msgs, sizeof(msgs));
        swim_load_write(&w, 6, 6);
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 3, 777, 1, msgs, w.len, out, sizeof(out));
        serial = swim_load_serial(net.nodes[1]);
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a3, out, n), 0);
        ck_assert_ptr_null(net_view(&net, 1, 3));
        ck_assert_uint_eq(swim_load_serial(net.nodes[1]), serial);
        expect_events(&net, 1, NULL, NULL, 0);
        net_done(&net);
}
END_TEST

START_TEST(test_push_pull_merge) {
        SwimConfig c = net_config();
        TestNet net;

        net_init(&net, 4, &c);
        /* Two separate clusters. */
        net_push_pull(&net, 1, 0);
        net_push_pull(&net, 3, 2);
        net_run(&net, 1 * SEC);
        ck_assert_uint_eq(swim_n_alive(net.nodes[0]), 2);
        ck_assert_uint_eq(swim_n_alive(net.nodes[2]), 2);
        ck_assert_int_eq(swim_set_local_meta(net.nodes[3], net.now, "models", "m3"), 1);
        net_run(&net, 1 * SEC);

        net_push_pull(&net, 0, 2);
        ck_assert_uint_eq(swim_n_alive(net.nodes[0]), 4);
        ck_assert_uint_eq(swim_n_alive(net.nodes[2]), 4);
        ck_assert_str_eq(net_view(&net, 0, 3)->meta_values[0], "m3");
        net_run(&net, 2 * SEC);
        for (size_t i = 0; i < 4; i++)
                ck_assert_uint_eq(swim_n_alive(net.nodes[i]), 4);
        ck_assert_str_eq(net_view(&net, 1, 3)->meta_values[0], "m3");
        net_done(&net);
}
END_TEST

START_TEST(test_stale_updates_ignored) {
        SwimConfig c = net_config();
        uint8_t out[SWIM_DATAGRAM_MAX], msgs[128];
        SwimAddr a0 = net_addr(0);
        SwimWriter w;
        TestNet net;
        size_t n;
        uint64_t seq = 1;
        uint32_t inc;

        net_init(&net, 3, &c);
        /* Node 2 starts at incarnation 5, so that there are older ones. */
        net_start(&net, 2, &c, 5);
        net_join_all(&net);
        inc = net_view(&net, 1, 2)->incarnation;
        ck_assert_uint_eq(inc, 5);
        net_drain_events(&net, 1);

        /* From "node 0" with a fresh session: suspicion and death at older incarnations. */
        swim_writer_init_fixed(&w, msgs, sizeof(msgs));
        msg_state(&w, SWIM_MSG_SUSPECT, 2, inc - 1);
        msg_state(&w, SWIM_MSG_DEAD, 2, inc - 1);
        msg_state(&w, SWIM_MSG_LEFT, 2, inc - 1);
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 999, seq++, msgs, w.len, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, out, n), 0);
        ck_assert_int_eq(net_state(&net, 1, 2), SWIM_STATE_ALIVE);
        expect_events(&net, 1, NULL, NULL, 0);

        /* About node 1 itself at an older incarnation: no refutation needed. */
        swim_writer_init_fixed(&w, msgs, sizeof(msgs));
        msg_state(&w, SWIM_MSG_SUSPECT, 1, swim_local(net.nodes[1])->incarnation - 1);
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 999, seq++, msgs, w.len, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, out, n), 0);
        ck_assert_uint_eq(swim_counters(net.nodes[1])->refutations, 0);

        /* At the current incarnation: suspected; then dead. */
        swim_writer_init_fixed(&w, msgs, sizeof(msgs));
        msg_state(&w, SWIM_MSG_SUSPECT, 2, inc);
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 999, seq++, msgs, w.len, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, out, n), 0);
        ck_assert_int_eq(net_state(&net, 1, 2), SWIM_STATE_SUSPECT);
        swim_writer_init_fixed(&w, msgs, sizeof(msgs));
        msg_state(&w, SWIM_MSG_DEAD, 2, inc);
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 999, seq++, msgs, w.len, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, out, n), 0);
        ck_assert_int_eq(net_state(&net, 1, 2), SWIM_STATE_DEAD);
        expect_events(&net, 1, (SwimEventType[]) { SWIM_EVENT_UPDATED, SWIM_EVENT_FAILED }, (size_t[]) { 2, 2 }, 2);

        /* About node 1 itself at its incarnation: it refutes. */
        swim_writer_init_fixed(&w, msgs, sizeof(msgs));
        msg_state(&w, SWIM_MSG_DEAD, 1, swim_local(net.nodes[1])->incarnation);
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 999, seq++, msgs, w.len, out, sizeof(out));
        inc = swim_local(net.nodes[1])->incarnation;
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, out, n), 0);
        ck_assert_uint_eq(swim_local(net.nodes[1])->incarnation, inc + 1);
        ck_assert_uint_eq(swim_counters(net.nodes[1])->refutations, 1);
        expect_events(&net, 1, (SwimEventType[]) { SWIM_EVENT_UPDATED }, (size_t[]) { 1 }, 1);

        /* The real node 2 is alive: node 1 hears from it and it refutes; all well again. */
        net_run(&net, 3 * SEC);
        for (size_t i = 0; i < 3; i++)
                ck_assert_uint_eq(swim_n_alive(net.nodes[i]), 3);
        net_done(&net);
}
END_TEST

START_TEST(test_events_bounded) {
        SwimConfig c = net_config();
        SwimEvent e;
        TestNet net;
        size_t n = 0;

        net_init(&net, 1, &c);
        for (unsigned i = 0; i < 5000; i++)
                ck_assert_int_eq(swim_set_local_meta(net.nodes[0], net.now, "n", i % 2 ? "a" : "b"), 1);
        ck_assert_uint_eq(swim_counters(net.nodes[0])->n_events_dropped, 5000 - 4096);
        while (swim_next_event(net.nodes[0], &e) > 0) {
                ck_assert_int_eq(e.type, SWIM_EVENT_UPDATED);
                n++;
        }
        ck_assert_uint_eq(n, 4096);
        net_done(&net);
}
END_TEST

START_TEST(test_loss_no_false_death) {
        /* Links cut for a moment one way only: indirect probes keep everyone alive. */
        SwimConfig c = net_config();
        TestNet net;

        net_init(&net, 5, &c);
        net_join_all(&net);
        net.cut[0][1] = net.cut[1][0] = true;
        net_run(&net, 10 * SEC);
        for (size_t i = 0; i < 5; i++) {
                ck_assert_uint_eq(swim_n_alive(net.nodes[i]), 5);
                for (size_t j = 0; j < 5; j++)
                        ck_assert(!has_event(&net, i, SWIM_EVENT_FAILED, j));
        }
        ck_assert_uint_gt(swim_counters(net.nodes[0])->indirect_probes, 0);
        net_done(&net);
}
END_TEST

/* Node 2 starts with node 0's id and joins through node 1, as a second launcher with a copied
 * state directory would: both holders of the id learn the other's address, and it is never a
 * member of anyone's view under a second name. */
START_TEST(test_id_conflict_twins) {
        SwimConfig c = net_config();
        SwimAddr a0 = net_addr(0), a2 = net_addr(2);
        const SwimIdConflict *x;
        TestNet net;

        net_init(&net, 2, &c);
        net_join_all(&net);
        ck_assert_ptr_null(swim_id_conflict(net.nodes[0]));

        net_start_as(&net, 2, 0, &c, 1);
        net_push_pull(&net, 2, 1);
        net_run(&net, 5 * SEC);

        x = swim_id_conflict(net.nodes[0]);
        ck_assert_ptr_nonnull(x);
        ck_assert(swim_addr_equal(&x->addr, &a2));
        ck_assert_uint_ge(x->last, x->since);
        x = swim_id_conflict(net.nodes[2]);
        ck_assert_ptr_nonnull(x);
        ck_assert(swim_addr_equal(&x->addr, &a0));
        ck_assert_uint_gt(swim_counters(net.nodes[0])->id_conflicts, 0);
        ck_assert_uint_gt(swim_counters(net.nodes[2])->id_conflicts, 0);
        /* Node 1 is not troubled by a third member: one id, one member. */
        ck_assert_uint_eq(swim_n_members(net.nodes[1]), 2);
        ck_assert_ptr_null(swim_id_conflict(net.nodes[1]));

        /* The twin goes away: the conflict is held for SWIM_ID_CONFLICT_HOLD after the last sign,
         * then it is over. */
        net.down[2] = true;
        net_run(&net, 20 * SEC);
        ck_assert_ptr_nonnull(swim_id_conflict(net.nodes[0]));
        net_run(&net, SWIM_ID_CONFLICT_HOLD);
        ck_assert_ptr_null(swim_id_conflict(net.nodes[0]));
        net_done(&net);
}
END_TEST

/* What is not a conflict: our own datagram reflected back to us (our session: a replay), and
 * an old record of ours at another address (what we said before a restart that moved us). */
START_TEST(test_id_conflict_not_reflection_or_old_record) {
        SwimConfig c = net_config();
        uint8_t out[SWIM_DATAGRAM_MAX], msgs[256];
        SwimAddr a1 = net_addr(1), elsewhere = { .family = AF_INET, .addr = { 10, 9, 9, 9 }, .port = 11436 };
        const void *data;
        SwimAddr to;
        SwimWriter w;
        TestNet net;
        size_t n;
        uint32_t inc;

        net_init(&net, 2, &c);
        net_start(&net, 0, &c, 7);
        net_join_all(&net);
        inc = swim_local(net.nodes[0])->incarnation;

        /* Node 0's next datagram, delivered back to node 0 itself. */
        ck_assert_int_eq(swim_announce(net.nodes[0], net.now, &a1), 0);
        ck_assert_int_eq(swim_next_datagram(net.nodes[0], &to, &data, &n), 1);
        memcpy(out, data, n);
        ck_assert_int_eq(swim_receive_datagram(net.nodes[0], net.now, &a1, out, n), -EALREADY);
        ck_assert_ptr_null(swim_id_conflict(net.nodes[0]));

        /* From node 1: node 0's alive record at another address, one incarnation older. */
        swim_writer_init_fixed(&w, msgs, sizeof(msgs));
        msg_alive_at(&w, 0, inc - 1, &elsewhere);
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 1, 4242, 1, msgs, w.len, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[0], net.now, &a1, out, n), 0);
        ck_assert_ptr_null(swim_id_conflict(net.nodes[0]));
        ck_assert_uint_eq(swim_counters(net.nodes[0])->id_conflicts, 0);

        /* The same at our incarnation is another node with our id, at that address. */
        swim_writer_init_fixed(&w, msgs, sizeof(msgs));
        msg_alive_at(&w, 0, inc, &elsewhere);
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 1, 4242, 2, msgs, w.len, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[0], net.now, &a1, out, n), 0);
        ck_assert_ptr_nonnull(swim_id_conflict(net.nodes[0]));
        ck_assert(swim_addr_equal(&swim_id_conflict(net.nodes[0])->addr, &elsewhere));

        /* A datagram sent with our id by another session: dropped, and that is the address. */
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 777, 1, NULL, 0, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[0], net.now, &a1, out, n), -EADDRINUSE);
        ck_assert(swim_addr_equal(&swim_id_conflict(net.nodes[0])->addr, &a1));
        net_done(&net);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("swim");
        TCase *tc = tcase_create("core");

        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_new_and_config);
        tcase_add_test(tc, test_join_converge);
        tcase_add_test(tc, test_join_events);
        tcase_add_test(tc, test_suspect_refute);
        tcase_add_test(tc, test_suspect_then_dead);
        tcase_add_test(tc, test_leave);
        tcase_add_test(tc, test_rejoin_after_dead_push_pull);
        tcase_add_test(tc, test_rejoin_after_dead_datagram);
        tcase_add_test(tc, test_rejoin_higher_incarnation);
        tcase_add_test(tc, test_metadata);
        tcase_add_test(tc, test_metadata_missed_update_refreshed);
        tcase_add_test(tc, test_stale_record_asked_from_header);
        tcase_add_test(tc, test_load_direct_not_versioned);
        tcase_add_test(tc, test_load_not_relayed);
        tcase_add_test(tc, test_load_forgotten_when_dead);
        tcase_add_test(tc, test_load_crafted);
        tcase_add_test(tc, test_push_pull_merge);
        tcase_add_test(tc, test_stale_updates_ignored);
        tcase_add_test(tc, test_events_bounded);
        tcase_add_test(tc, test_loss_no_false_death);
        tcase_add_test(tc, test_id_conflict_twins);
        tcase_add_test(tc, test_id_conflict_not_reflection_or_old_record);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
