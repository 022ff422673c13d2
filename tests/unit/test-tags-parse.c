/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/routerd/tags-parse.c: what routerd makes of an Ollama /api/tags
 * body, well-formed, odd, hostile or huge. */
#include <stdio.h>

#include "route-table.h"
#include "tags-parse.h"
#include "unit-test.h"

static int parse_str(const char *s, TagsList *l) {
        return tags_parse(s, strlen(s), l);
}

START_TEST(test_real_answer) {
        const char *body =
                "{\"models\":[{\"name\":\"llama3.2:latest\",\"model\":\"llama3.2:latest\","
                "\"modified_at\":\"2025-01-01T00:00:00.000000000Z\",\"size\":2019393189,"
                "\"digest\":\"a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72\","
                "\"details\":{\"parent_model\":\"\",\"format\":\"gguf\",\"family\":\"llama\","
                "\"families\":[\"llama\"],\"parameter_size\":\"3.2B\",\"quantization_level\":\"Q4_K_M\"}},"
                "{\"name\":\"nomic-embed-text:latest\",\"model\":\"nomic-embed-text:latest\",\"size\":274302450,"
                "\"details\":{\"families\":[\"nomic-bert\"],\"parameter_size\":\"137M\"}}]}\n";
        TagsList l = {};

        ck_assert_int_eq(parse_str(body, &l), 0);
        ck_assert_uint_eq(l.n_models, 2);
        ck_assert_str_eq(l.models[0], "llama3.2:latest");
        ck_assert_str_eq(l.models[1], "nomic-embed-text:latest");
        ck_assert_uint_eq(l.n_skipped, 0);
        ck_assert(!l.truncated);
        tags_list_done(&l);
        ck_assert_uint_eq(l.n_models, 0);
        ck_assert_ptr_null(l.models);
}
END_TEST

START_TEST(test_empty_and_whitespace) {
        TagsList l = {};

        ck_assert_int_eq(parse_str("{\"models\":[]}", &l), 0);
        ck_assert_uint_eq(l.n_models, 0);
        tags_list_done(&l);

        ck_assert_int_eq(parse_str(" \r\n\t{ \"models\" : [ ] , \"x\" : null } \n", &l), 0);
        ck_assert_uint_eq(l.n_models, 0);
        tags_list_done(&l);
}
END_TEST

START_TEST(test_model_fallback_and_nesting) {
        TagsList l = {};

        /* "name" wins over "model"; "model" is used without "name"; a nested "name" is not
         * the entry's. */
        ck_assert_int_eq(parse_str("{\"models\":[{\"model\":\"b\",\"name\":\"a\"},{\"model\":\"c\"},"
                                   "{\"details\":{\"name\":\"nested\"},\"model\":\"d\"}]}",
                                   &l),
                         0);
        ck_assert_uint_eq(l.n_models, 3);
        ck_assert_str_eq(l.models[0], "a");
        ck_assert_str_eq(l.models[1], "c");
        ck_assert_str_eq(l.models[2], "d");
        tags_list_done(&l);
}
END_TEST

START_TEST(test_duplicates) {
        TagsList l = {};

        ck_assert_int_eq(parse_str("{\"models\":[{\"name\":\"llama3.2\"},{\"name\":\"llama3.2:latest\"},"
                                   "{\"name\":\"LLAMA3.2\"},{\"name\":\"llama3.2:1b\"}]}",
                                   &l),
                         0);
        ck_assert_uint_eq(l.n_models, 2);
        ck_assert_str_eq(l.models[0], "llama3.2");
        ck_assert_str_eq(l.models[1], "llama3.2:1b");
        ck_assert_uint_eq(l.n_skipped, 2);
        tags_list_done(&l);
}
END_TEST

START_TEST(test_bad_entries_skipped) {
        char long_name[TAGS_MAX_NAME_LEN + 2], body[2048];
        TagsList l = {};

        memset(long_name, 'x', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = '\0';
        snprintf(body, sizeof(body),
                 "{\"models\":[1,\"s\",null,[],{},{\"name\":5},{\"name\":\"\"},{\"name\":\"a b\"},"
                 "{\"name\":\"caf\\u00e9\"},{\"name\":\"ctl\\u0001\"},{\"name\":\"tab\\t\"},"
                 "{\"name\":\"%s\"},{\"name\":\"\\u0041\\/b\"},{\"name\":\"ok:7b\"}]}",
                 long_name);
        ck_assert_int_eq(parse_str(body, &l), 0);
        ck_assert_uint_eq(l.n_models, 2);
        ck_assert_str_eq(l.models[0], "A/b");
        ck_assert_str_eq(l.models[1], "ok:7b");
        ck_assert_uint_eq(l.n_skipped, 12);
        tags_list_done(&l);

        /* The longest name accepted. */
        long_name[TAGS_MAX_NAME_LEN] = '\0';
        snprintf(body, sizeof(body), "{\"models\":[{\"name\":\"%s\"}]}", long_name);
        ck_assert_int_eq(parse_str(body, &l), 0);
        ck_assert_uint_eq(l.n_models, 1);
        ck_assert_uint_eq(strlen(l.models[0]), TAGS_MAX_NAME_LEN);
        tags_list_done(&l);
}
END_TEST

START_TEST(test_not_a_model_list) {
        static const char *const bad[] = {
                "",
                " ",
                "null",
                "[]",
                "\"models\"",
                "{}",
                "{\"models\":{}}",
                "{\"models\":null}",
                "{\"models\":\"x\"}",
                "{\"models\":[]",
                "{\"models\":[]}}",
                "{\"models\":[]} x",
                "{\"models\":[],}",
                "{\"models\":[1,]}",
                "{\"models\":[{\"name\":\"a\",}]}",
                "{\"models\" []}",
                "{models:[]}",
                "{'models':[]}",
                "{\"models\":[{\"name\":\"a\"}]",
                "{\"models\":[{\"name\":\"a}]}",
                "{\"models\":[{\"name\":\"a\\x\"}]}",
                "{\"models\":[{\"name\":\"\\u00G0\"}]}",
                "{\"models\":[{\"name\":\"a\nb\"}]}",
                "{\"models\":[],\"n\":01}",
                "{\"models\":[],\"n\":1.}",
                "{\"models\":[],\"n\":-}",
                "{\"models\":[],\"n\":1e}",
                "{\"models\":[],\"n\":+1}",
                "{\"models\":[],\"n\":.5}",
                "{\"models\":[],\"n\":tru}",
                "{\"models\":[],\"n\":nul}",
                "{\"models\":[],\"n\":True}",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                TagsList l = {};

                ck_assert_msg(parse_str(bad[i], &l) == -EBADMSG, "accepted: %s", bad[i]);
                ck_assert_ptr_null(l.models);
        }
}
END_TEST

START_TEST(test_other_values_accepted) {
        TagsList l = {};

        ck_assert_int_eq(parse_str("{\"a\":[true,false,null,0,-0,1.5,-2e10,3E+2,4e-1,\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u20ac\",\"caf\xc3\xa9\"],"
                                   "\"models\":[{\"name\":\"m\",\"x\":{\"y\":[[[]]]}}],\"z\":{}}",
                                   &l),
                         0);
        ck_assert_uint_eq(l.n_models, 1);
        tags_list_done(&l);
}
END_TEST

START_TEST(test_first_models_counts) {
        TagsList l = {};

        ck_assert_int_eq(parse_str("{\"models\":[{\"name\":\"first\"}],\"models\":[{\"name\":\"second\"}]}", &l), 0);
        ck_assert_uint_eq(l.n_models, 1);
        ck_assert_str_eq(l.models[0], "first");
        tags_list_done(&l);

        /* The second one must still be valid JSON. */
        ck_assert_int_eq(parse_str("{\"models\":[],\"models\":[}", &l), -EBADMSG);
}
END_TEST

START_TEST(test_embedded_nul) {
        static const char body[] = "{\"models\":[{\"name\":\"a\0b\"}]}";
        TagsList l = {};

        ck_assert_int_eq(tags_parse(body, sizeof(body) - 1, &l), -EBADMSG);
        ck_assert_int_eq(tags_parse("{\"models\":[]}\0", 14, &l), -EBADMSG);
        /* \u0000 decodes to a control character: the entry is skipped. */
        ck_assert_int_eq(parse_str("{\"models\":[{\"name\":\"a\\u0000b\"}]}", &l), 0);
        ck_assert_uint_eq(l.n_models, 0);
        ck_assert_uint_eq(l.n_skipped, 1);
        tags_list_done(&l);
}
END_TEST

static char *build_models(size_t n, bool distinct, size_t *ret_size) {
        size_t size = 16 + n * 32, i = 0;
        char *b = malloc(size);

        ck_assert_ptr_nonnull(b);
        i += (size_t) sprintf(b + i, "{\"models\":[");
        for (size_t k = 0; k < n; k++)
                i += (size_t) sprintf(b + i, "%s{\"name\":\"m%zu\"}", k > 0 ? "," : "", distinct ? k : 0);
        i += (size_t) sprintf(b + i, "]}");
        *ret_size = i;
        return b;
}

START_TEST(test_too_many_models) {
        TagsList l = {};
        size_t size;
        char *b;

        b = build_models(ROUTE_MAX_MODELS, true, &size);
        ck_assert_int_eq(tags_parse(b, size, &l), 0);
        ck_assert_uint_eq(l.n_models, ROUTE_MAX_MODELS);
        ck_assert(!l.truncated);
        tags_list_done(&l);
        free(b);

        b = build_models(ROUTE_MAX_MODELS + 500, true, &size);
        ck_assert_int_eq(tags_parse(b, size, &l), 0);
        ck_assert_uint_eq(l.n_models, ROUTE_MAX_MODELS);
        ck_assert_str_eq(l.models[ROUTE_MAX_MODELS - 1], "m1023");
        ck_assert(l.truncated);
        tags_list_done(&l);
        free(b);

        /* Many duplicates: only TAGS_MAX_ENTRIES entries are looked at. */
        b = build_models(TAGS_MAX_ENTRIES + 10, false, &size);
        ck_assert_int_eq(tags_parse(b, size, &l), 0);
        ck_assert_uint_eq(l.n_models, 1);
        ck_assert_uint_eq(l.n_skipped, TAGS_MAX_ENTRIES - 1);
        ck_assert(l.truncated);
        tags_list_done(&l);
        free(b);
}
END_TEST

START_TEST(test_size_limit) {
        size_t size = TAGS_MAX_RESPONSE_SIZE, i;
        TagsList l = {};
        char *b;

        /* The largest body accepted, made of the cheapest values a DOM parser would choke on. */
        b = malloc(size + 1);
        ck_assert_ptr_nonnull(b);
        i = (size_t) sprintf(b, "{\"models\":[");
        while (i + 3 + 4 <= size) {
                memcpy(b + i, "{},", 3);
                i += 3;
        }
        memcpy(b + i, "{}", 2);
        i += 2;
        memcpy(b + i, "]}", 2);
        i += 2;
        memset(b + i, ' ', size - i);
        ck_assert_int_eq(tags_parse(b, size, &l), 0);
        ck_assert_uint_eq(l.n_models, 0);
        ck_assert(l.truncated);
        tags_list_done(&l);

        b[size] = ' ';
        ck_assert_int_eq(tags_parse(b, size + 1, &l), -EFBIG);
        free(b);
}
END_TEST

START_TEST(test_depth_limit) {
        char body[512];
        TagsList l = {};
        size_t i;

        /* Nested to exactly TAGS_MAX_DEPTH containers: fine. One more: refused. */
        for (unsigned depth = TAGS_MAX_DEPTH; depth <= TAGS_MAX_DEPTH + 1; depth++) {
                i = (size_t) sprintf(body, "{\"models\":[],\"x\":");
                for (unsigned k = 1; k < depth; k++)
                        body[i++] = '[';
                for (unsigned k = 1; k < depth; k++)
                        body[i++] = ']';
                body[i++] = '}';
                body[i] = '\0';
                ck_assert_int_eq(parse_str(body, &l), depth <= TAGS_MAX_DEPTH ? 0 : -EBADMSG);
                tags_list_done(&l);
        }

        /* Deep nesting is refused however deep, without running out of stack. */
        {
                size_t n = 100000;
                char *b = malloc(n * 2 + 32);

                ck_assert_ptr_nonnull(b);
                i = (size_t) sprintf(b, "{\"models\":[");
                for (size_t k = 0; k < n; k++)
                        b[i++] = '[';
                for (size_t k = 0; k < n; k++)
                        b[i++] = ']';
                i += (size_t) sprintf(b + i, "]}");
                ck_assert_int_eq(tags_parse(b, i, &l), -EBADMSG);
                free(b);
        }
}
END_TEST

static Suite *tags_suite(void) {
        Suite *s = suite_create("tags-parse");
        TCase *tc = tcase_create("parse");

        tcase_add_test(tc, test_real_answer);
        tcase_add_test(tc, test_empty_and_whitespace);
        tcase_add_test(tc, test_model_fallback_and_nesting);
        tcase_add_test(tc, test_duplicates);
        tcase_add_test(tc, test_bad_entries_skipped);
        tcase_add_test(tc, test_not_a_model_list);
        tcase_add_test(tc, test_other_values_accepted);
        tcase_add_test(tc, test_first_models_counts);
        tcase_add_test(tc, test_embedded_nul);
        tcase_add_test(tc, test_too_many_models);
        tcase_add_test(tc, test_size_limit);
        tcase_add_test(tc, test_depth_limit);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(tags_suite());
}
