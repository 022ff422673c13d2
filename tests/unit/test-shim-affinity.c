/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shimd/shim-affinity.c: a conversation's turns extend one chain and
 * share one anchor, a shared system prompt is not a match, images count by digest, and the
 * index finds the holder of the longest prefix within its bound. */
#include <stdio.h>

#include "shim-affinity.h"
#include "unit-test.h"

#define NODE_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define NODE_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static char system_prompt[4097];

static void setup(void) {
        /* A 4 KB system prompt that every conversation shares. */
        for (size_t i = 0; i < sizeof(system_prompt) - 1; i++)
                system_prompt[i] = (char) ('a' + i % 26);
        system_prompt[sizeof(system_prompt) - 1] = '\0';
}

/* A chat body: the system prompt, then turns of (user, assistant), the last user unanswered. */
static json_object *chat(const char *topic, unsigned turns) {
        json_object *body = json_object_new_object(), *msgs = json_object_new_array();

        json_object_object_add(body, "model", json_object_new_string("m"));
        for (unsigned i = 0; i <= 2 * turns; i++) {
                json_object *m = json_object_new_object();
                char text[200];

                if (i == 0) {
                        json_object_object_add(m, "role", json_object_new_string("system"));
                        json_object_object_add(m, "content", json_object_new_string(system_prompt));
                } else {
                        snprintf(text, sizeof(text), "%s: message %u about %s, with some words to fill it out", i % 2 ? "question" : "answer", i, topic);
                        json_object_object_add(m, "role", json_object_new_string(i % 2 ? "user" : "assistant"));
                        json_object_object_add(m, "content", json_object_new_string(text));
                }
                json_object_array_add(msgs, m);
        }
        json_object_object_add(body, "messages", msgs);
        return body;
}

static void chain_of(AffinityChain *c, AffinityContext kind, json_object *body) {
        affinity_chain_init(c);
        ck_assert_int_eq(affinity_chain_from_request(c, kind, body), 0);
        json_object_put(body);
}

START_TEST(test_turns_extend_one_chain) {
        AffinityChain t1, t5, other;

        chain_of(&t1, AFFINITY_CONTEXT_MESSAGES, chat("whales", 1));
        chain_of(&t5, AFFINITY_CONTEXT_MESSAGES, chat("whales", 5));
        chain_of(&other, AFFINITY_CONTEXT_MESSAGES, chat("volcanoes", 1));

        ck_assert_uint_ge(t1.n, 4096 / AFFINITY_BLOCK_SIZE);
        ck_assert_uint_gt(t5.n, t1.n);
        for (size_t i = 0; i < t1.n; i++)
                ck_assert_uint_eq(t1.hashes[i], t5.hashes[i]);
        ck_assert_uint_ne(t1.anchor, 0);
        ck_assert_uint_eq(t1.anchor, t5.anchor);
        ck_assert_uint_eq(t1.anchor_blocks, t5.anchor_blocks);
        /* Another conversation shares the system prompt's blocks, not the anchor. */
        ck_assert_uint_ne(other.anchor, t1.anchor);
        ck_assert_uint_eq(other.hashes[0], t1.hashes[0]);
        ck_assert_uint_gt(other.anchor_blocks, 4096 / AFFINITY_BLOCK_SIZE);

        affinity_chain_done(&t1);
        affinity_chain_done(&t5);
        affinity_chain_done(&other);
}
END_TEST

START_TEST(test_holder_longest_prefix_not_shared_start) {
        _cleanup_(affinity_index_freep) AffinityIndex *x = NULL;
        AffinityChain a1, a2, a3, b1, b2;
        size_t blocks = 99;

        ck_assert_int_eq(affinity_index_new(1024, &x), 0);
        chain_of(&a1, AFFINITY_CONTEXT_MESSAGES, chat("whales", 1));
        chain_of(&a2, AFFINITY_CONTEXT_MESSAGES, chat("whales", 2));
        chain_of(&a3, AFFINITY_CONTEXT_MESSAGES, chat("whales", 3));
        chain_of(&b1, AFFINITY_CONTEXT_MESSAGES, chat("volcanoes", 1));
        chain_of(&b2, AFFINITY_CONTEXT_MESSAGES, chat("volcanoes", 2));

        ck_assert_ptr_null(affinity_index_holder(x, &a1, NULL));
        ck_assert_int_eq(affinity_index_learn(x, &a1, NODE_A), 0);
        /* Turn 2: its first turn ended mid-block, so the anchor says where. */
        ck_assert_str_eq(affinity_index_holder(x, &a2, &blocks), NODE_A);
        ck_assert_int_eq(affinity_index_learn(x, &a2, NODE_A), 0);
        /* Turn 3: blocks past the anchor match. */
        ck_assert_str_eq(affinity_index_holder(x, &a3, &blocks), NODE_A);
        ck_assert_uint_ge(blocks, a3.anchor_blocks);
        /* Another conversation with the same system prompt is not A's. */
        ck_assert_ptr_null(affinity_index_holder(x, &b1, NULL));
        ck_assert_int_eq(affinity_index_learn(x, &b1, NODE_B), 0);
        ck_assert_str_eq(affinity_index_holder(x, &b2, NULL), NODE_B);
        ck_assert_str_eq(affinity_index_holder(x, &a3, NULL), NODE_A);
        /* The conversation moved (its node left): the next answer relearns it. */
        ck_assert_int_eq(affinity_index_learn(x, &a3, NODE_B), 0);
        ck_assert_str_eq(affinity_index_holder(x, &a3, NULL), NODE_B);

        affinity_chain_done(&a1);
        affinity_chain_done(&a2);
        affinity_chain_done(&a3);
        affinity_chain_done(&b1);
        affinity_chain_done(&b2);
}
END_TEST

START_TEST(test_index_bounded_lru) {
        _cleanup_(affinity_index_freep) AffinityIndex *x = NULL;
        AffinityChain c[40];
        char key[32];

        ck_assert_int_eq(affinity_index_new(16, &x), 0);
        ck_assert_int_eq(affinity_index_new(0, &(AffinityIndex *) { NULL }), -EINVAL);
        for (unsigned i = 0; i < 40; i++) {
                affinity_chain_init(&c[i]);
                snprintf(key, sizeof(key), "key-%u", i);
                ck_assert_int_eq(affinity_chain_from_key(&c[i], key), 0);
                ck_assert_int_eq(affinity_index_learn(x, &c[i], i % 2 ? NODE_A : NODE_B), 0);
                ck_assert_uint_le(affinity_index_size(x), 16);
                /* Keep key-0 fresh: it must survive. */
                ck_assert_ptr_nonnull(affinity_index_holder(x, &c[0], NULL));
        }
        ck_assert_uint_eq(affinity_index_size(x), 16);
        ck_assert_str_eq(affinity_index_holder(x, &c[0], NULL), NODE_B);
        ck_assert_ptr_null(affinity_index_holder(x, &c[1], NULL));
        ck_assert_str_eq(affinity_index_holder(x, &c[39], NULL), NODE_A);
        for (unsigned i = 0; i < 40; i++)
                affinity_chain_done(&c[i]);
}
END_TEST

/* Many chains through a small index: every learned key that is still counted is found, the
 * table never exceeds its bound (exercises removal with backward shifts). */
START_TEST(test_index_churn) {
        _cleanup_(affinity_index_freep) AffinityIndex *x = NULL;
        char key[32];

        ck_assert_int_eq(affinity_index_new(100, &x), 0);
        for (unsigned i = 0; i < 5000; i++) {
                AffinityChain c;

                affinity_chain_init(&c);
                snprintf(key, sizeof(key), "k%u", i);
                ck_assert_int_eq(affinity_chain_from_key(&c, key), 0);
                ck_assert_int_eq(affinity_index_learn(x, &c, NODE_A), 0);
                ck_assert_str_eq(affinity_index_holder(x, &c, NULL), NODE_A);
                affinity_chain_done(&c);
        }
        ck_assert_uint_eq(affinity_index_size(x), 100);
        /* The last 100 are all there. */
        for (unsigned i = 4900; i < 5000; i++) {
                AffinityChain c;

                affinity_chain_init(&c);
                snprintf(key, sizeof(key), "k%u", i);
                ck_assert_int_eq(affinity_chain_from_key(&c, key), 0);
                ck_assert_msg(affinity_index_holder(x, &c, NULL), "k%u lost", i);
                affinity_chain_done(&c);
        }
}
END_TEST

START_TEST(test_generate_and_images) {
        json_object *g = json_object_new_object(), *h, *img1 = json_object_new_array(), *img2;
        AffinityChain a, b, c;

        json_object_object_add(g, "model", json_object_new_string("m"));
        json_object_object_add(g, "system", json_object_new_string("be brief"));
        json_object_object_add(g, "prompt", json_object_new_string("why is the sky blue?"));
        h = json_object_get(g);
        chain_of(&a, AFFINITY_CONTEXT_PROMPT, g);
        chain_of(&b, AFFINITY_CONTEXT_PROMPT, h);
        ck_assert_uint_eq(a.anchor, b.anchor);
        affinity_chain_done(&b);

        /* Images by digest: the same image, the same chain; another, another. */
        g = chat("pictures", 1);
        json_object_array_add(img1, json_object_new_string("aGVsbG8gd29ybGQ="));
        img2 = json_object_new_array();
        json_object_array_add(img2, json_object_new_string("b3RoZXIgaW1hZ2U="));
        json_object_object_add(json_object_array_get_idx(json_object_object_get(g, "messages"), 1), "images", img1);
        h = chat("pictures", 1);
        json_object_object_add(json_object_array_get_idx(json_object_object_get(h, "messages"), 1), "images", img2);
        chain_of(&b, AFFINITY_CONTEXT_MESSAGES, g);
        chain_of(&c, AFFINITY_CONTEXT_MESSAGES, h);
        ck_assert_uint_ne(b.anchor, c.anchor);
        affinity_chain_done(&b);
        affinity_chain_done(&c);

        /* Nothing to go by. */
        affinity_chain_init(&c);
        g = json_object_new_object();
        json_object_object_add(g, "model", json_object_new_string("m"));
        ck_assert_int_eq(affinity_chain_from_request(&c, AFFINITY_CONTEXT_PROMPT, g), -ENOENT);
        ck_assert_int_eq(affinity_chain_from_request(&c, AFFINITY_CONTEXT_MESSAGES, g), -ENOENT);
        ck_assert_int_eq(affinity_chain_from_request(&c, AFFINITY_CONTEXT_NONE, g), -ENOENT);
        ck_assert_int_eq(affinity_chain_from_key(&c, ""), -ENOENT);
        json_object_put(g);
        affinity_chain_done(&c);
        affinity_chain_done(&a);
}
END_TEST

/* Context past AFFINITY_BLOCKS_MAX blocks is not hashed: the chain stays bounded. */
START_TEST(test_chain_bounded) {
        AffinityChain c;
        char buf[4096];

        memset(buf, 'x', sizeof(buf));
        affinity_chain_init(&c);
        for (unsigned i = 0; i < 2 * AFFINITY_BLOCKS_MAX * AFFINITY_BLOCK_SIZE / sizeof(buf); i++)
                ck_assert_int_eq(affinity_chain_add(&c, buf, sizeof(buf)), 0);
        ck_assert_uint_eq(c.n, AFFINITY_BLOCKS_MAX);
        affinity_chain_anchor(&c);
        ck_assert_uint_ne(c.anchor, 0);
        affinity_chain_done(&c);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shim-affinity");
        TCase *tc = tcase_create("core");

        tcase_add_checked_fixture(tc, setup, NULL);
        tcase_add_test(tc, test_turns_extend_one_chain);
        tcase_add_test(tc, test_holder_longest_prefix_not_shared_start);
        tcase_add_test(tc, test_index_bounded_lru);
        tcase_add_test(tc, test_index_churn);
        tcase_add_test(tc, test_generate_and_images);
        tcase_add_test(tc, test_chain_bounded);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
