/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shimd/shim-embed.c: the plan is contiguous and proportional, chunk
 * bodies carry their inputs and everything else, answers merge in order in each API's shape. */
#include <stdio.h>

#include "json-cleanup.h"
#include "shim-embed.h"
#include "unit-test.h"

START_TEST(test_plan) {
        unsigned w[] = { 1, 2, 1 }, zero[] = { 0, 0 }, one[] = { 5 };
        ShimEmbedChunk c[3];

        shim_embed_plan(100, w, 3, c);
        ck_assert_uint_eq(c[0].first, 0);
        ck_assert_uint_eq(c[0].n, 25);
        ck_assert_uint_eq(c[1].first, 25);
        ck_assert_uint_eq(c[1].n, 50);
        ck_assert_uint_eq(c[2].first, 75);
        ck_assert_uint_eq(c[2].n, 25);

        /* Remainders: 10 over 3 equal nodes is 4, 3, 3. */
        w[0] = w[1] = w[2] = 1;
        shim_embed_plan(10, w, 3, c);
        ck_assert_uint_eq(c[0].n + c[1].n + c[2].n, 10);
        ck_assert_uint_eq(c[0].n, 4);
        ck_assert_uint_eq(c[2].first + c[2].n, 10);

        /* Weight 0 counts as 1; fewer inputs than nodes leaves some with none. */
        shim_embed_plan(1, zero, 2, c);
        ck_assert_uint_eq(c[0].n + c[1].n, 1);
        shim_embed_plan(7, one, 1, c);
        ck_assert_uint_eq(c[0].n, 7);
}
END_TEST

static json_object *request(size_t n) {
        json_object *body = json_object_new_object(), *input = json_object_new_array();
        char text[32];

        json_object_object_add(body, "model", json_object_new_string("all-minilm"));
        json_object_object_add(body, "truncate", json_object_new_boolean(true));
        for (size_t i = 0; i < n; i++) {
                snprintf(text, sizeof(text), "input %zu", i);
                json_object_array_add(input, json_object_new_string(text));
        }
        json_object_object_add(body, "input", input);
        return body;
}

START_TEST(test_count_and_chunk_body) {
        _cleanup_(json_object_putp) json_object *body = request(10), *single = json_object_new_object(), *chunk = NULL;
        ShimEmbedChunk c = { .first = 3, .n = 4 };
        _cleanup_free_ char *text = NULL;
        json_object *input;
        size_t n = 0, len;

        ck_assert_int_eq(shim_embed_count(body, &n), 0);
        ck_assert_uint_eq(n, 10);
        json_object_object_add(single, "input", json_object_new_string("one"));
        ck_assert_int_eq(shim_embed_count(single, &n), -ENOENT);

        ck_assert_int_eq(shim_embed_chunk_body(body, &c, &text, &len), 0);
        ck_assert_uint_eq(len, strlen(text));
        chunk = json_tokener_parse(text);
        ck_assert_ptr_nonnull(chunk);
        ck_assert_str_eq(json_object_get_string(json_object_object_get(chunk, "model")), "all-minilm");
        ck_assert(json_object_get_boolean(json_object_object_get(chunk, "truncate")));
        input = json_object_object_get(chunk, "input");
        ck_assert_uint_eq(json_object_array_length(input), 4);
        ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(input, 0)), "input 3");
        ck_assert_str_eq(json_object_get_string(json_object_array_get_idx(input, 3)), "input 6");
}
END_TEST

START_TEST(test_merge_ollama) {
        const char *a = "{\"model\":\"all-minilm\",\"embeddings\":[[0.1,0.25],[1e-7,-2]],\"total_duration\":100,"
                        "\"load_duration\":5,\"prompt_eval_count\":4}";
        const char *b = "{\"model\":\"all-minilm\",\"embeddings\":[[0.30000000000000004,3]],\"total_duration\":50,"
                        "\"load_duration\":1,\"prompt_eval_count\":2}";
        json_object *answers[3] = { json_tokener_parse(a), NULL, json_tokener_parse(b) };
        ShimEmbedChunk c[3] = { { 0, 2 }, { 2, 0 }, { 2, 1 } };
        _cleanup_free_ char *out = NULL;
        size_t len;

        ck_assert_int_eq(shim_embed_merge(SHIM_API_OLLAMA, answers, c, 3, &out, &len), 0);
        /* Numbers exactly as the nodes wrote them, in request order; durations and counts summed. */
        ck_assert_str_eq(out, "{\"model\":\"all-minilm\",\"embeddings\":[[0.1,0.25],[1e-7,-2],[0.30000000000000004,3]],"
                              "\"total_duration\":150,\"load_duration\":6,\"prompt_eval_count\":6}");
        /* A node that answered the wrong number of embeddings. */
        c[2].n = 2;
        ck_assert_int_eq(shim_embed_merge(SHIM_API_OLLAMA, answers, c, 3, &out, &len), -EBADMSG);
        json_object_put(answers[0]);
        json_object_put(answers[2]);
}
END_TEST

START_TEST(test_merge_openai) {
        const char *a = "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"embedding\":[1,2],\"index\":0}],"
                        "\"model\":\"m\",\"usage\":{\"prompt_tokens\":3,\"total_tokens\":3}}";
        const char *b = "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"embedding\":[3,4],\"index\":0},"
                        "{\"object\":\"embedding\",\"embedding\":[5,6],\"index\":1}],\"model\":\"m\","
                        "\"usage\":{\"prompt_tokens\":5,\"total_tokens\":5}}";
        json_object *answers[2] = { json_tokener_parse(a), json_tokener_parse(b) };
        ShimEmbedChunk c[2] = { { 0, 1 }, { 1, 2 } };
        _cleanup_(json_object_putp) json_object *merged = NULL;
        _cleanup_free_ char *out = NULL;
        json_object *data;
        size_t len;

        ck_assert_int_eq(shim_embed_merge(SHIM_API_OPENAI, answers, c, 2, &out, &len), 0);
        merged = json_tokener_parse(out);
        data = json_object_object_get(merged, "data");
        ck_assert_uint_eq(json_object_array_length(data), 3);
        for (int i = 0; i < 3; i++)
                ck_assert_int_eq(json_object_get_int(json_object_object_get(json_object_array_get_idx(data, i), "index")), i);
        ck_assert_int_eq(json_object_get_int(json_object_object_get(json_object_object_get(merged, "usage"),
                                                                   "prompt_tokens")), 8);
        ck_assert_str_eq(json_object_get_string(json_object_object_get(merged, "object")), "list");
        json_object_put(answers[0]);
        json_object_put(answers[1]);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shim-embed");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_plan);
        tcase_add_test(tc, test_count_and_chunk_body);
        tcase_add_test(tc, test_merge_ollama);
        tcase_add_test(tc, test_merge_openai);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
