/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shardd/shard-collection.c: names and configs within their limits, the
 * stored JSON round-tripping, and any JSON that is not exactly such a config refused. */
#include "shard-collection.h"
#include "unit-test.h"

static ShardCollection config(void) {
        return (ShardCollection) {
                .name = (char *) "docs.v2",
                .id = 7,
                .dimension = 768,
                .metric = SHARD_METRIC_INNER_PRODUCT,
                .model = (char *) "nomic-embed-text",
                .n_shards = 64,
                .replicas = 2,
                .created_ms = UINT64_C(1700000000123),
        };
}

static const char good[] =
        "{\"id\":7,\"dimension\":768,\"metric\":\"ip\",\"n_shards\":64,\"replicas\":2,\"created\":1}";

static int from_json(const char *json, ShardCollection **ret) {
        return shard_collection_from_json("docs.v2", 7, json, strlen(json), ret);
}

START_TEST(test_names) {
        char long_name[SHARD_COLLECTION_NAME_MAX + 2];

        ck_assert(shard_collection_name_valid("a"));
        ck_assert(shard_collection_name_valid("Docs_1.v2-x"));
        ck_assert(!shard_collection_name_valid(NULL));
        ck_assert(!shard_collection_name_valid(""));
        ck_assert(!shard_collection_name_valid(".hidden"));
        ck_assert(!shard_collection_name_valid("a/b"));
        ck_assert(!shard_collection_name_valid("a b"));
        memset(long_name, 'x', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = '\0';
        ck_assert(!shard_collection_name_valid(long_name));
        long_name[SHARD_COLLECTION_NAME_MAX] = '\0';
        ck_assert(shard_collection_name_valid(long_name));
}
END_TEST

START_TEST(test_metric_names) {
        ShardMetric m;

        ck_assert_str_eq(shard_collection_metric_to_string(SHARD_METRIC_COSINE), "cosine");
        ck_assert_str_eq(shard_collection_metric_to_string(SHARD_METRIC_INNER_PRODUCT), "ip");
        ck_assert_ptr_null(shard_collection_metric_to_string((ShardMetric) 99));
        ck_assert_int_eq(shard_collection_metric_from_string("ip", &m), 0);
        ck_assert_int_eq(m, SHARD_METRIC_INNER_PRODUCT);
        ck_assert_int_eq(shard_collection_metric_from_string("l2", &m), -EINVAL);
        ck_assert_int_eq(shard_collection_metric_from_string(NULL, &m), -EINVAL);
}
END_TEST

START_TEST(test_valid) {
        ShardCollection c = config();

        ck_assert(shard_collection_valid(&c));
        c.model = NULL;
        ck_assert(shard_collection_valid(&c));
        c.model = (char *) "";
        ck_assert(!shard_collection_valid(&c));
        c = config();
        c.dimension = 0;
        ck_assert(!shard_collection_valid(&c));
        c.dimension = SHARD_DIMENSION_MAX + 1;
        ck_assert(!shard_collection_valid(&c));
        c = config();
        c.n_shards = SHARD_COUNT_MAX + 1;
        ck_assert(!shard_collection_valid(&c));
        c = config();
        c.replicas = 0;
        ck_assert(!shard_collection_valid(&c));
        c = config();
        c.metric = (ShardMetric) 99;
        ck_assert(!shard_collection_valid(&c));
}
END_TEST

START_TEST(test_json_round_trip) {
        ShardCollection c = config();

        for (int with_model = 1; with_model >= 0; with_model--) {
                _cleanup_(shard_collection_freep) ShardCollection *got = NULL;
                _cleanup_free_ char *json = NULL;
                size_t size;

                if (!with_model)
                        c.model = NULL;
                ck_assert_int_eq(shard_collection_to_json(&c, &json, &size), 0);
                ck_assert_uint_eq(strlen(json), size);
                ck_assert_ptr_null(strchr(json, ' '));          /* compact */
                ck_assert_ptr_null(strstr(json, "docs.v2"));    /* the name is the key, not the value */
                ck_assert_int_eq(shard_collection_from_json("docs.v2", 7, json, size, &got), 0);
                ck_assert_str_eq(got->name, "docs.v2");
                ck_assert_uint_eq(got->id, 7);
                ck_assert_uint_eq(got->dimension, 768);
                ck_assert_int_eq(got->metric, SHARD_METRIC_INNER_PRODUCT);
                if (with_model)
                        ck_assert_str_eq(got->model, "nomic-embed-text");
                else
                        ck_assert_ptr_null(got->model);
                ck_assert_uint_eq(got->n_shards, 64);
                ck_assert_uint_eq(got->replicas, 2);
                ck_assert(got->created_ms == UINT64_C(1700000000123));
        }
}
END_TEST

START_TEST(test_json_refused) {
        static const char *const bad[] = {
                "",
                "[]",
                "{\"id\":7,\"dimension\":768,\"metric\":\"ip\",\"n_shards\":64,\"replicas\":2,\"created\":1} x",
                "{\"id\":7,\"dimension\":768,\"metric\":\"ip\",\"n_shards\":64,\"replicas\":2,\"created\":1",
                "{\"dimension\":768,\"metric\":\"ip\",\"n_shards\":64,\"replicas\":2,\"created\":1}",
                "{\"id\":0,\"dimension\":768,\"metric\":\"ip\",\"n_shards\":64,\"replicas\":2,\"created\":1}",
                "{\"id\":4294967296,\"dimension\":768,\"metric\":\"ip\",\"n_shards\":64,\"replicas\":2,\"created\":1}",
                "{\"id\":\"7\",\"dimension\":768,\"metric\":\"ip\",\"n_shards\":64,\"replicas\":2,\"created\":1}",
                "{\"id\":7,\"dimension\":0,\"metric\":\"ip\",\"n_shards\":64,\"replicas\":2,\"created\":1}",
                "{\"id\":7,\"dimension\":768,\"metric\":\"l2\",\"n_shards\":64,\"replicas\":2,\"created\":1}",
                "{\"id\":7,\"dimension\":768,\"n_shards\":64,\"replicas\":2,\"created\":1}",
                "{\"id\":7,\"dimension\":768,\"metric\":\"ip\",\"model\":5,\"n_shards\":64,\"replicas\":2,\"created\":1}",
                "{\"id\":7,\"dimension\":768,\"metric\":\"ip\",\"n_shards\":5000,\"replicas\":2,\"created\":1}",
                "{\"id\":7,\"dimension\":768,\"metric\":\"ip\",\"n_shards\":64,\"replicas\":9,\"created\":1}",
                "{\"id\":7,\"dimension\":768,\"metric\":\"ip\",\"n_shards\":64,\"replicas\":2}",
        };
        ShardCollection *c = NULL;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(from_json(bad[i], &c) == -EBADMSG, "accepted: %s", bad[i]);
        ck_assert_ptr_null(c);

        /* Whitespace around the object is fine; a name with a NUL or an invalid one is not. */
        ck_assert_int_eq(from_json(" {\"id\":7,\"dimension\":768,\"metric\":\"ip\",\"n_shards\":64,\"replicas\":2,"
                                   "\"created\":1}\n", &c), 0);
        c = shard_collection_free(c);
        ck_assert_int_eq(shard_collection_from_json("do\0s", 4, good, strlen(good), &c), -EBADMSG);
        ck_assert_int_eq(shard_collection_from_json(".x", 2, good, strlen(good), &c), -EBADMSG);
        ck_assert_ptr_null(c);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shard-collection");
        TCase *tc = tcase_create("pure");

        tcase_add_test(tc, test_names);
        tcase_add_test(tc, test_metric_names);
        tcase_add_test(tc, test_valid);
        tcase_add_test(tc, test_json_round_trip);
        tcase_add_test(tc, test_json_refused);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
