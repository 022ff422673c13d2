/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shimd/shim-tags.c: the local list stays as Ollama sent it, models only
 * peers serve are added once, in order, in each API's shape; what is not a list is refused. */
#include <json-c/json.h>

#include "json-cleanup.h"
#include "shim-tags.h"
#include "unit-test.h"

static json_object *merge(ShimApi api, const char *local, char *const *remote, size_t n) {
        _cleanup_free_ char *out = NULL;
        size_t len = 0;
        json_object *o;

        ck_assert_int_eq(shim_tags_merge(api, local, strlen(local), remote, n, &out, &len), 0);
        ck_assert_uint_eq(len, strlen(out));
        o = json_tokener_parse(out);
        ck_assert_ptr_nonnull(o);
        return o;
}

static const char *name_at(json_object *list, size_t i, const char *key) {
        return json_object_get_string(json_object_object_get(json_object_array_get_idx(list, i), key));
}

START_TEST(test_ollama_tags) {
        const char *local = "{\"models\":[{\"name\":\"llama3.2:latest\",\"model\":\"llama3.2:latest\","
                            "\"size\":2019393189,\"digest\":\"a80c4f17acd5\"}]}";
        char *remote[] = { "qwen2.5:7b", "llama3.2", "mistral:7b", "qwen2.5:7b", "" };
        _cleanup_(json_object_putp) json_object *o = merge(SHIM_API_OLLAMA, local, remote, ELEMENTSOF(remote));
        json_object *list = json_object_object_get(o, "models"), *e;

        ck_assert_uint_eq(json_object_array_length(list), 3);
        /* The local entry as it was, details and all. */
        ck_assert_str_eq(name_at(list, 0, "name"), "llama3.2:latest");
        ck_assert_int_eq(json_object_get_int64(json_object_object_get(json_object_array_get_idx(list, 0), "size")),
                         2019393189);
        /* Then the remote-only models, sorted, once each. */
        ck_assert_str_eq(name_at(list, 1, "name"), "mistral:7b");
        ck_assert_str_eq(name_at(list, 2, "name"), "qwen2.5:7b");
        e = json_object_array_get_idx(list, 2);
        ck_assert_str_eq(json_object_get_string(json_object_object_get(e, "model")), "qwen2.5:7b");
        ck_assert_int_eq(json_object_get_int64(json_object_object_get(e, "size")), 0);
        ck_assert(json_object_is_type(json_object_object_get(e, "details"), json_type_object));
}
END_TEST

START_TEST(test_openai_models) {
        const char *local = "{\"object\":\"list\",\"data\":[{\"id\":\"llama3.2:latest\",\"object\":\"model\","
                            "\"created\":1700000000,\"owned_by\":\"library\"}]}";
        char *remote[] = { "llama3.2:latest", "phi3:mini" };
        _cleanup_(json_object_putp) json_object *o = merge(SHIM_API_OPENAI, local, remote, ELEMENTSOF(remote));
        json_object *list = json_object_object_get(o, "data");

        ck_assert_str_eq(json_object_get_string(json_object_object_get(o, "object")), "list");
        ck_assert_uint_eq(json_object_array_length(list), 2);
        ck_assert_str_eq(name_at(list, 1, "id"), "phi3:mini");
        ck_assert_str_eq(name_at(list, 1, "object"), "model");
}
END_TEST

START_TEST(test_nothing_to_add_and_empty) {
        _cleanup_(json_object_putp) json_object *o = merge(SHIM_API_OLLAMA, "{\"models\":[]}", NULL, 0);
        _cleanup_(json_object_putp) json_object *p = NULL;
        char *remote[] = { "a:latest" };

        ck_assert_uint_eq(json_object_array_length(json_object_object_get(o, "models")), 0);
        p = merge(SHIM_API_OLLAMA, "{\"models\":[]}", remote, 1);
        ck_assert_str_eq(name_at(json_object_object_get(p, "models"), 0, "name"), "a:latest");
}
END_TEST

START_TEST(test_not_a_list) {
        static const char *const bad[] = {
                "", "not json", "[]", "{\"models\":{}}", "{\"data\":[]}", "{\"models\":[]} trailing",
                "{\"models\":[", "null",
        };
        char *out = NULL;
        size_t len;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(shim_tags_merge(SHIM_API_OLLAMA, bad[i], strlen(bad[i]), NULL, 0, &out, &len) == -EBADMSG,
                              "accepted '%s'", bad[i]);
        ck_assert_int_eq(shim_tags_merge(SHIM_API_OPENAI, "{\"models\":[]}", 13, NULL, 0, &out, &len), -EBADMSG);
        ck_assert_ptr_null(out);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shim-tags");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_ollama_tags);
        tcase_add_test(tc, test_openai_models);
        tcase_add_test(tc, test_nothing_to_add_and_empty);
        tcase_add_test(tc, test_not_a_list);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
