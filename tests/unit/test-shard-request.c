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
        ShardHit hits[2] = { { .id = "x", .metadata = meta, .score = 0.5f }, { .id = "y", .score = 0.25f } };
        ShardResult results[2] = { { .hit = &hits[0], .text = "tx" }, { .hit = &hits[1] } };
        unsigned missing[2] = { 3, 17 };
        char *s = NULL;

        ck_assert_int_eq(shard_query_answer_format(results, 2, NULL, 0, &s), 0);
        ck_assert_str_eq(s, "{\"results\":[{\"id\":\"x\",\"text\":\"tx\",\"metadata\":{\"a\":1},\"score\":0.5},"
                            "{\"id\":\"y\",\"text\":null,\"metadata\":{},\"score\":0.25}],\"partial\":false}");
        free(s);
        ck_assert_int_eq(shard_query_answer_format(results, 0, missing, 2, &s), 0);
        ck_assert_str_eq(s, "{\"results\":[],\"partial\":true,\"missing_shards\":[3,17]}");
        free(s);
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
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
