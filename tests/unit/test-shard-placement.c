/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shardd/shard-placement.c: shards spread evenly, every shard's holders
 * are the same whatever order members are listed in, and a join or a leave moves only the
 * shards whose holders changed, about R/(N+1) of them on a join. */
#include <stdio.h>

#include "route-table.h"
#include "shard-placement.h"
#include "unit-test.h"

#define N_NODES 6

static char ids[N_NODES][33];
static char *nodes[N_NODES];

static void setup(void) {
        for (size_t i = 0; i < N_NODES; i++) {
                /* Node ids as gossip has them: 32 hex digits. */
                snprintf(ids[i], sizeof(ids[i]), "%08x%024x", (unsigned) (i * 0x9e3779b9u + 1), (unsigned) i);
                nodes[i] = ids[i];
        }
}

static bool held_by(const char *const *holders, int n, const char *id) {
        for (int i = 0; i < n; i++)
                if (streq(holders[i], id))
                        return true;
        return false;
}

START_TEST(test_shard_of) {
        unsigned count[64] = {};
        char id[32];

        ck_assert_int_eq(shard_of("docs", "a", 0), -EINVAL);
        ck_assert_int_eq(shard_of("docs", "a", SHARD_COUNT_MAX + 1), -EINVAL);
        ck_assert_int_eq(shard_of("docs", "a", 1), 0);
        ck_assert_int_eq(shard_of("docs", "a", SHARD_COUNT_MAX), shard_of("docs", "a", SHARD_COUNT_MAX));
        for (unsigned i = 0; i < 64000; i++) {
                int s;

                snprintf(id, sizeof(id), "doc-%u", i);
                s = shard_of("docs", id, 64);
                ck_assert_int_ge(s, 0);
                ck_assert_int_lt(s, 64);
                count[s]++;
        }
        /* 1000 expected per shard; 4 standard deviations is about 126. */
        for (unsigned s = 0; s < 64; s++) {
                ck_assert_uint_gt(count[s], 850);
                ck_assert_uint_lt(count[s], 1150);
        }
        /* The collection is part of the hash. */
        {
                unsigned same = 0;

                for (unsigned i = 0; i < 1000; i++) {
                        snprintf(id, sizeof(id), "doc-%u", i);
                        same += shard_of("docs", id, 64) == shard_of("notes", id, 64);
                }
                ck_assert_uint_lt(same, 60);
        }
        ck_assert_uint_ne(shard_seed("docs", 1), shard_seed("docs", 2));
        ck_assert_uint_ne(shard_seed("docs", 1), shard_seed("notes", 1));
}
END_TEST

START_TEST(test_holders_top_r_deterministic) {
        char *reversed[N_NODES];

        for (size_t i = 0; i < N_NODES; i++)
                reversed[i] = nodes[N_NODES - 1 - i];

        for (unsigned shard = 0; shard < 256; shard++)
                for (unsigned r = 1; r <= SHARD_REPLICAS_MAX; r++) {
                        const char *a[SHARD_REPLICAS_MAX], *b[SHARD_REPLICAS_MAX];
                        uint64_t seed = shard_seed("docs", shard);
                        int na, nb;

                        na = shard_holders("docs", shard, nodes, N_NODES, r, a);
                        nb = shard_holders("docs", shard, reversed, N_NODES, r, b);
                        ck_assert_int_eq(na, (int) MIN(r, (unsigned) N_NODES));
                        ck_assert_int_eq(na, nb);
                        for (int i = 0; i < na; i++) {
                                /* The same nodes in the same order, whatever the input order. */
                                ck_assert_str_eq(a[i], b[i]);
                                /* Distinct, and ranked by rendezvous score. */
                                for (int j = 0; j < i; j++) {
                                        ck_assert_str_ne(a[i], a[j]);
                                        ck_assert_uint_gt(route_rendezvous_score(a[j], seed),
                                                          route_rendezvous_score(a[i], seed));
                                }
                        }
                        /* Nobody outside the top r scores higher than the last holder. */
                        for (size_t i = 0; i < N_NODES; i++)
                                if (!held_by(a, na, nodes[i]))
                                        ck_assert_uint_lt(route_rendezvous_score(nodes[i], seed),
                                                          route_rendezvous_score(a[na - 1], seed));
                }
}
END_TEST

START_TEST(test_holders_limits) {
        const char *h[SHARD_REPLICAS_MAX];
        char *dups[] = { nodes[0], nodes[1], nodes[0], nodes[1], nodes[0] };
        char *empty[] = { nodes[0], (char *) "" };
        _cleanup_free_ char **many = calloc(SHARD_MEMBERS_MAX + 1, sizeof(char *));

        ck_assert_int_eq(shard_holders("docs", 0, nodes, N_NODES, 0, h), -EINVAL);
        ck_assert_int_eq(shard_holders("docs", 0, nodes, N_NODES, SHARD_REPLICAS_MAX + 1, h), -EINVAL);
        ck_assert_int_eq(shard_holders("docs", 0, empty, 2, 2, h), -EINVAL);
        ck_assert_int_eq(shard_holders("docs", 0, NULL, 0, 2, h), 0);
        /* Fewer members than R: every member, once. */
        ck_assert_int_eq(shard_holders("docs", 0, nodes, 1, 3, h), 1);
        ck_assert_str_eq(h[0], nodes[0]);
        ck_assert_int_eq(shard_holders("docs", 7, dups, ELEMENTSOF(dups), 3, h), 2);
        ck_assert_str_ne(h[0], h[1]);

        ck_assert_ptr_nonnull(many);
        for (size_t i = 0; i <= SHARD_MEMBERS_MAX; i++)
                many[i] = nodes[i % N_NODES];
        ck_assert_int_eq(shard_holders("docs", 0, many, SHARD_MEMBERS_MAX, 2, h), 2);
        ck_assert_int_eq(shard_holders("docs", 0, many, SHARD_MEMBERS_MAX + 1, 2, h), -EINVAL);
}
END_TEST

START_TEST(test_plan_join) {
        const unsigned n_shards = 1024, r = 2, n_old = 4;
        _cleanup_free_ ShardMove *moves = NULL;
        const char *joiner = nodes[n_old];
        size_t n_moves = 99, at = 0;

        ck_assert_int_eq(shard_plan("docs", n_shards, r, nodes, n_old, nodes, n_old + 1, &moves, &n_moves), 0);
        for (unsigned shard = 0; shard < n_shards; shard++) {
                const char *old[SHARD_REPLICAS_MAX], *new[SHARD_REPLICAS_MAX];
                int n_o = shard_holders("docs", shard, nodes, n_old, r, old);
                int n_n = shard_holders("docs", shard, nodes, n_old + 1, r, new);

                ck_assert_int_eq(n_o, 2);
                ck_assert_int_eq(n_n, 2);
                if (!held_by(new, n_n, joiner)) {
                        /* Untouched: the same holders, and not in the plan. */
                        ck_assert(held_by(old, n_o, new[0]) && held_by(old, n_o, new[1]));
                        ck_assert(at >= n_moves || moves[at].shard != shard);
                        continue;
                }
                ck_assert_uint_lt(at, n_moves);
                ck_assert_uint_eq(moves[at].shard, shard);
                /* The joiner receives, both old holders can send, the one it displaced drops. */
                ck_assert_uint_eq(moves[at].n_receivers, 1);
                ck_assert_str_eq(moves[at].receivers[0], joiner);
                ck_assert_uint_eq(moves[at].n_senders, 2);
                ck_assert_str_eq(moves[at].senders[0], old[0]);
                ck_assert_str_eq(moves[at].senders[1], old[1]);
                ck_assert_uint_eq(moves[at].n_droppers, 1);
                ck_assert(held_by(old, n_o, moves[at].droppers[0]));
                ck_assert(!held_by(new, n_n, moves[at].droppers[0]));
                at++;
        }
        ck_assert_uint_eq(at, n_moves);
        /* n_shards * R / (N + 1) = 409.6 expected; the standard deviation is about 16. */
        ck_assert_uint_gt(n_moves, 340);
        ck_assert_uint_lt(n_moves, 480);
}
END_TEST

START_TEST(test_plan_leave) {
        const unsigned n_shards = 512, r = 2;
        _cleanup_free_ ShardMove *moves = NULL;
        char *after[N_NODES - 1];
        const char *leaver = nodes[2];
        size_t n_moves = 0, held = 0;

        for (size_t i = 0, j = 0; i < N_NODES; i++)
                if (nodes[i] != leaver)
                        after[j++] = nodes[i];

        ck_assert_int_eq(shard_plan("docs", n_shards, r, nodes, N_NODES, after, N_NODES - 1, &moves, &n_moves), 0);
        for (unsigned shard = 0; shard < n_shards; shard++) {
                const char *old[SHARD_REPLICAS_MAX];
                int n_o = shard_holders("docs", shard, nodes, N_NODES, r, old);

                held += held_by(old, n_o, leaver);
        }
        /* Exactly the shards the leaver held move. */
        ck_assert_uint_eq(n_moves, held);
        for (size_t i = 0; i < n_moves; i++) {
                const char *old[SHARD_REPLICAS_MAX];
                int n_o = shard_holders("docs", moves[i].shard, nodes, N_NODES, r, old);

                ck_assert(held_by(old, n_o, leaver));
                ck_assert_uint_eq(moves[i].n_senders, 1);
                ck_assert_str_ne(moves[i].senders[0], leaver);
                ck_assert_uint_eq(moves[i].n_receivers, 1);
                ck_assert_str_ne(moves[i].receivers[0], leaver);
                ck_assert(!held_by(old, n_o, moves[i].receivers[0]));
                ck_assert_uint_eq(moves[i].n_droppers, 1);
                ck_assert_str_eq(moves[i].droppers[0], leaver);
                if (i > 0)
                        ck_assert_uint_gt(moves[i].shard, moves[i - 1].shard);
        }
}
END_TEST

START_TEST(test_plan_edges) {
        _cleanup_free_ ShardMove *moves = NULL;
        char *reversed[N_NODES], *one[] = { nodes[0] }, *other[] = { nodes[1] };
        size_t n_moves = 99;

        for (size_t i = 0; i < N_NODES; i++)
                reversed[i] = nodes[N_NODES - 1 - i];
        /* The same members in another order: nothing moves. */
        ck_assert_int_eq(shard_plan("docs", 64, 3, nodes, N_NODES, reversed, N_NODES, &moves, &n_moves), 0);
        ck_assert_uint_eq(n_moves, 0);
        ck_assert_ptr_null(moves);

        /* Every holder gone at once: no sender, the daemon must find a copy elsewhere. */
        ck_assert_int_eq(shard_plan("docs", 8, 1, one, 1, other, 1, &moves, &n_moves), 0);
        ck_assert_uint_eq(n_moves, 8);
        for (size_t i = 0; i < n_moves; i++) {
                ck_assert_uint_eq(moves[i].n_senders, 0);
                ck_assert_uint_eq(moves[i].n_receivers, 1);
                ck_assert_str_eq(moves[i].receivers[0], nodes[1]);
                ck_assert_uint_eq(moves[i].n_droppers, 1);
                ck_assert_str_eq(moves[i].droppers[0], nodes[0]);
        }
        free(TAKE_PTR(moves));

        /* Below R: a shrink is a change with nobody to receive. */
        ck_assert_int_eq(shard_plan("docs", 4, 2, nodes, 2, nodes, 1, &moves, &n_moves), 0);
        ck_assert_uint_eq(n_moves, 4);
        for (size_t i = 0; i < n_moves; i++) {
                ck_assert_uint_eq(moves[i].n_receivers, 0);
                ck_assert_uint_eq(moves[i].n_senders, 1);
                ck_assert_str_eq(moves[i].droppers[0], nodes[1]);
        }
        free(TAKE_PTR(moves));

        ck_assert_int_eq(shard_plan("docs", 0, 2, nodes, 2, nodes, 1, &moves, &n_moves), -EINVAL);
        ck_assert_int_eq(shard_plan("docs", SHARD_COUNT_MAX + 1, 2, nodes, 2, nodes, 1, &moves, &n_moves), -EINVAL);
        ck_assert_int_eq(shard_plan("docs", 4, 0, nodes, 2, nodes, 1, &moves, &n_moves), -EINVAL);
        ck_assert_ptr_null(moves);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shard-placement");
        TCase *tc = tcase_create("core");

        tcase_add_checked_fixture(tc, setup, NULL);
        tcase_add_test(tc, test_shard_of);
        tcase_add_test(tc, test_holders_top_r_deterministic);
        tcase_add_test(tc, test_holders_limits);
        tcase_add_test(tc, test_plan_join);
        tcase_add_test(tc, test_plan_leave);
        tcase_add_test(tc, test_plan_edges);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
