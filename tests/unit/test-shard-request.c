/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* ShardStore1's Put and Search bodies: what is accepted, what is refused with which message, and
 * the answer's shape. */
#include <check.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json-cleanup.h"
#include "shard-request.h"
#include "unit-test.h"

START_TEST(test_put_parse) {
        ShardPutRequest r = {};
        char *error = NULL;

        ck_assert_int_eq(shard_put_request_parse(
                "{\"documents\": [{\"id\": \"a\", \"text\": \"hi\", \"embedding\": [1, 2.5, -3], \"metadata\": {\"k\": [1, \"x\"]}},"
                " {\"embedding\": [0, 0, 1e-3], \"id\": null, \"text\": null, \"metadata\": null}]}",
                3, &r, &error), 0);
        ck_assert_ptr_null(error);
        ck_assert_uint_eq(r.n_docs, 2);
        ck_assert_str_eq(r.docs[0].id, "a");
        ck_assert_str_eq(r.docs[0].text, "hi");
        ck_assert(r.docs[0].embedding[1] == 2.5f && r.docs[0].embedding[2] == -3.0f);
        ck_assert_str_eq(r.docs[0].metadata, "{\"k\":[1,\"x\"]}");
        ck_assert_ptr_null(r.docs[1].id);
        ck_assert_ptr_null(r.docs[1].text);
        ck_assert_ptr_null(r.docs[1].metadata);
        shard_put_request_done(&r);
        ck_assert_ptr_null(r.docs);
}
END_TEST

static void put_refused(const char *json, int error, const char *message) {
        ShardPutRequest r = {};
        char *text = NULL;

        ck_assert_int_eq(shard_put_request_parse(json, 3, &r, &text), error);
        ck_assert_ptr_nonnull(text);
        ck_assert_msg(strstr(text, message), "'%s' does not say '%s'", text, message);
        ck_assert_ptr_null(r.docs);
        free(text);
}

START_TEST(test_put_refused) {
        put_refused("{\"documents\": [{\"embedding\": [1, 2]}]}", -EINVAL, "documents[0]: the embedding has 2 dimensions");
        put_refused("{\"documents\": [{\"embedding\": [1, 2, 3]}, {\"embedding\": [1, \"2\", 3]}]}", -EINVAL,
                    "documents[1]: embedding[1] is not a number");
        put_refused("{\"documents\": [{\"embedding\": [1, 1e39, 3]}]}", -EINVAL, "not a finite float");
        put_refused("{\"documents\": [{\"embedding\": [1, NaN, 3]}]}", -EINVAL, "");
        put_refused("{\"documents\": [{\"text\": \"t\"}]}", -EINVAL, "has no \"embedding\"");
        put_refused("{\"documents\": [{\"id\": 7, \"embedding\": [1, 2, 3]}]}", -EINVAL, "\"id\" must be a non-empty string");
        put_refused("{\"documents\": [{\"id\": \"\", \"embedding\": [1, 2, 3]}]}", -EINVAL, "non-empty");
        put_refused("{\"documents\": [{\"metadata\": \"m\", \"embedding\": [1, 2, 3]}]}", -EINVAL, "must be an object");
        put_refused("{\"documents\": [{\"id\": \"x\", \"embedding\": [1, 2, 3]}, {\"id\": \"x\", \"embedding\": [1, 2, 3]}]}",
                    -EINVAL, "\"x\" is given twice");
        put_refused("{\"documents\": []}", -EINVAL, "empty");
        put_refused("{\"documents\": {}}", -EINVAL, "must be an array");
        put_refused("{\"documents\": [1]}", -EINVAL, "documents[0] is not an object");
        put_refused("{\"documents\": []} trailing", -EINVAL, "invalid JSON");
        put_refused("[1]", -EINVAL, "JSON object");
        put_refused("", -EINVAL, "invalid JSON");
}
END_TEST

START_TEST(test_put_limits) {
        char id[SHARD_ID_MAX + 2], *json = NULL, *error = NULL;
        ShardPutRequest r = {};
        size_t n;

        memset(id, 'i', sizeof(id) - 1);
        id[sizeof(id) - 1] = '\0';
        ck_assert_int_ge(asprintf(&json, "{\"documents\": [{\"id\": \"%s\", \"embedding\": [1, 2, 3]}]}", id), 0);
        ck_assert_int_eq(shard_put_request_parse(json, 3, &r, &error), -E2BIG);
        free(json);
        free(error);
        /* One id of exactly the limit is fine. */
        id[SHARD_ID_MAX] = '\0';
        ck_assert_int_ge(asprintf(&json, "{\"documents\": [{\"id\": \"%s\", \"embedding\": [1, 2, 3]}]}", id), 0);
        ck_assert_int_eq(shard_put_request_parse(json, 3, &r, NULL), 0);
        shard_put_request_done(&r);
        free(json);

        /* SHARD_PUT_DOCS_MAX + 1 documents. */
        n = 16 + (SHARD_PUT_DOCS_MAX + 1) * 24;
        json = malloc(n);
        ck_assert_ptr_nonnull(json);
        strcpy(json, "{\"documents\": [");
        for (unsigned i = 0; i <= SHARD_PUT_DOCS_MAX; i++)
                strcat(json, i ? ",{\"embedding\":[1,2,3]}" : "{\"embedding\":[1,2,3]}");
        strcat(json, "]}");
        error = NULL;
        ck_assert_int_eq(shard_put_request_parse(json, 3, &r, &error), -E2BIG);
        ck_assert_ptr_nonnull(strstr(error, "more than"));
        free(error);
        free(json);
}
END_TEST

START_TEST(test_query_parse) {
        ShardQueryRequest q = {};
        char *error = NULL;

        ck_assert_int_eq(shard_query_request_parse("{\"embedding\": [1, 0]}", 2, &q, &error), 0);
        ck_assert_uint_eq(q.k, SHARD_QUERY_K_DEFAULT);
        ck_assert_ptr_null(q.filter);
        shard_query_request_done(&q);
        ck_assert_int_eq(shard_query_request_parse("{\"embedding\": [1, 0], \"k\": 3, \"where\": {\"a\": {\"$gt\": 1}}}", 2, &q,
                                                   &error), 0);
        ck_assert_uint_eq(q.k, 3);
        ck_assert_ptr_nonnull(q.filter);
        shard_query_request_done(&q);

        ck_assert_int_eq(shard_query_request_parse("{\"embedding\": [1, 0], \"k\": 0}", 2, &q, &error), -EINVAL);
        ck_assert_ptr_nonnull(strstr(error, "\"k\""));
        free(error);
        ck_assert_int_eq(shard_query_request_parse("{\"embedding\": [1, 0], \"k\": 2.5}", 2, &q, &error), -EINVAL);
        free(error);
        ck_assert_int_eq(shard_query_request_parse("{\"embedding\": [1, 0], \"where\": {\"$nope\": 1}}", 2, &q, &error),
                         -EINVAL);
        ck_assert_ptr_nonnull(error);
        free(error);
        ck_assert_int_eq(shard_query_request_parse("{\"k\": 1}", 2, &q, &error), -EINVAL);
        ck_assert_ptr_nonnull(strstr(error, "no \"embedding\""));
        free(error);
}
END_TEST

START_TEST(test_answer_format) {
        _cleanup_(json_object_putp) json_object *meta = json_tokener_parse("{\"a\":1}");
        ShardAnswer a = {};
        unsigned missing[2] = { 3, 17 };
        char *s = NULL;

        ck_assert_int_eq(shard_answer_add(&a, "y", NULL, 0, NULL, 0.25f), 0);
        ck_assert_int_eq(shard_answer_add(&a, "x", "txt", 2, meta, 0.5f), 0);
        shard_answer_top(&a, 10);
        ck_assert_int_eq(shard_answer_format(&a, NULL, 0, &s), 0);
        ck_assert_str_eq(s, "{\"results\":[{\"id\":\"x\",\"text\":\"tx\",\"metadata\":{\"a\":1},\"score\":0.5},"
                            "{\"id\":\"y\",\"text\":null,\"metadata\":{},\"score\":0.25}],\"partial\":false}");
        free(s);
        shard_answer_done(&a);
        ck_assert_int_eq(shard_answer_format(&a, missing, 2, &s), 0);
        ck_assert_str_eq(s, "{\"results\":[],\"partial\":true,\"missing_shards\":[3,17]}");
        free(s);
}
END_TEST

static int answer_parse(ShardAnswer *a, const char *json) {
        return shard_answer_parse(a, json, strlen(json), NULL, 0);
}

/* A peer's answer merged with ours: best k, ties by id, one id answered twice kept once; a
 * malformed answer refused. */
START_TEST(test_answer_merge) {
        ShardAnswer a = {};
        char *s = NULL;

        ck_assert_int_eq(shard_answer_add(&a, "b", "tb", 2, NULL, 0.75f), 0);
        ck_assert_int_eq(shard_answer_add(&a, "d", NULL, 0, NULL, 0.1f), 0);
        ck_assert_int_eq(answer_parse(&a, "{\"results\": [{\"id\": \"a\", \"score\": 0.75, \"text\": null},"
                                                " {\"id\": \"b\", \"score\": 0.75, \"text\": \"tb\"},"
                                                " {\"id\": \"c\", \"score\": 0.9, \"metadata\": {\"k\": 1}}], \"partial\": false}"),
                         0);
        shard_answer_top(&a, 3);
        ck_assert_uint_eq(a.n_hits, 3);
        ck_assert_str_eq(a.hits[0].id, "c");
        ck_assert_str_eq(a.hits[1].id, "a");
        ck_assert_str_eq(a.hits[2].id, "b");
        ck_assert_int_eq(shard_answer_format(&a, NULL, 0, &s), 0);
        free(s);
        ck_assert_int_eq(answer_parse(&a, "{\"results\": [{\"score\": 1}]}"), -EBADMSG);
        ck_assert_int_eq(answer_parse(&a, "{\"results\": 1}"), -EBADMSG);
        ck_assert_int_eq(answer_parse(&a, "[]"), -EBADMSG);
        ck_assert_int_eq(answer_parse(&a, "{\"results\": []} x"), -EBADMSG);
        {
                bool not_ready[4] = {};
                const char *j = "{\"results\": [], \"not_ready\": [1, 3]}";

                ck_assert_int_eq(shard_answer_parse(&a, j, strlen(j), not_ready, 4), 0);
                ck_assert(!not_ready[0] && not_ready[1] && !not_ready[2] && not_ready[3]);
                j = "{\"results\": [], \"not_ready\": [4]}";
                ck_assert_int_eq(shard_answer_parse(&a, j, strlen(j), not_ready, 4), -EBADMSG);
        }
        shard_answer_done(&a);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shard-request");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_put_parse);
        tcase_add_test(tc, test_put_refused);
        tcase_add_test(tc, test_put_limits);
        tcase_add_test(tc, test_query_parse);
        tcase_add_test(tc, test_answer_format);
        tcase_add_test(tc, test_answer_merge);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
