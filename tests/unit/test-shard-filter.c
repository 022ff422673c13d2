/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shardd/shard-filter.c: a table of filters against one metadata object
 * (numbers mixed exactly, strings, bools, missing fields, $in, $and/$or nesting), and compile
 * errors with the messages a client reads, including the depth and size limits. */
#include <stdio.h>

#include "json-cleanup.h"
#include "shard-filter.h"
#include "unit-test.h"

static const char metadata_json[] =
        "{\"age\": 30, \"score\": 2.5, \"temp\": -3.5, \"name\": \"ada\", \"admin\": true,"
        " \"nick\": null, \"tags\": [\"a\", \"b\"], \"big\": 9007199254740993}";

static const struct {
        const char *where;
        bool expect;
} match_cases[] = {
        { "{}", true },
        /* $eq, implicit and explicit; numbers by value whatever their JSON type. */
        { "{\"name\": \"ada\"}", true },
        { "{\"name\": \"bob\"}", false },
        { "{\"age\": 30}", true },
        { "{\"age\": 30.0}", true },
        { "{\"age\": {\"$eq\": 30}}", true },
        { "{\"age\": \"30\"}", false },
        { "{\"score\": 2.5}", true },
        { "{\"score\": {\"$eq\": 2}}", false },
        /* $ne: true for another kind of value. */
        { "{\"age\": {\"$ne\": \"30\"}}", true },
        { "{\"age\": {\"$ne\": 30}}", false },
        /* Orderings on numbers, int and double mixed. */
        { "{\"age\": {\"$gt\": 29.5}}", true },
        { "{\"age\": {\"$gt\": 30}}", false },
        { "{\"age\": {\"$gte\": 30}}", true },
        { "{\"age\": {\"$lt\": 30.5}}", true },
        { "{\"age\": {\"$lte\": 29}}", false },
        { "{\"score\": {\"$gt\": 2}}", true },
        { "{\"score\": {\"$lt\": 3}}", true },
        { "{\"score\": {\"$lte\": 2.5}}", true },
        { "{\"temp\": {\"$lt\": -3}}", true },
        { "{\"temp\": {\"$gt\": -4}}", true },
        { "{\"temp\": {\"$gt\": -3}}", false },
        /* 2^53 + 1 against 2^53: equal only if the integer were rounded to a double. */
        { "{\"big\": {\"$gt\": 9007199254740992.0}}", true },
        { "{\"big\": 9007199254740992.0}", false },
        { "{\"big\": 9007199254740993}", true },
        /* Strings by strcmp. */
        { "{\"name\": {\"$gt\": \"abc\"}}", true },
        { "{\"name\": {\"$lt\": \"ad\"}}", false },
        { "{\"name\": {\"$gte\": \"ada\"}}", true },
        { "{\"name\": {\"$lte\": \"ada\"}}", true },
        /* Orderings across kinds, and on bools: false, not an error. */
        { "{\"name\": {\"$gt\": 1}}", false },
        { "{\"name\": {\"$lt\": 1}}", false },
        { "{\"age\": {\"$gt\": \"a\"}}", false },
        { "{\"admin\": true}", true },
        { "{\"admin\": false}", false },
        { "{\"admin\": 1}", false },
        { "{\"admin\": {\"$ne\": false}}", true },
        { "{\"admin\": {\"$gt\": false}}", false },
        { "{\"admin\": {\"$gte\": true}}", false },
        { "{\"admin\": {\"$lte\": true}}", false },
        /* A missing field fails all but $ne and $nin. */
        { "{\"missing\": 1}", false },
        { "{\"missing\": {\"$ne\": 1}}", true },
        { "{\"missing\": {\"$nin\": [1]}}", true },
        { "{\"missing\": {\"$in\": [1]}}", false },
        { "{\"missing\": {\"$gt\": 0}}", false },
        { "{\"missing\": {\"$lte\": 0}}", false },
        /* null and arrays in metadata are values nothing equals. */
        { "{\"nick\": \"x\"}", false },
        { "{\"nick\": {\"$ne\": \"x\"}}", true },
        { "{\"nick\": {\"$gt\": 0}}", false },
        { "{\"tags\": \"a\"}", false },
        { "{\"tags\": {\"$nin\": [\"a\"]}}", true },
        /* $in / $nin. */
        { "{\"name\": {\"$in\": [\"bob\", \"ada\"]}}", true },
        { "{\"name\": {\"$in\": [\"bob\", 1, true]}}", false },
        { "{\"age\": {\"$in\": [1, 30.0]}}", true },
        { "{\"age\": {\"$nin\": [30]}}", false },
        { "{\"name\": {\"$nin\": [\"bob\"]}}", true },
        { "{\"admin\": {\"$in\": [true]}}", true },
        /* Several operators on a field, several fields: all must hold. */
        { "{\"age\": {\"$gt\": 18, \"$lt\": 65}}", true },
        { "{\"age\": {\"$gt\": 18, \"$lt\": 20}}", false },
        { "{\"age\": 30, \"name\": \"ada\"}", true },
        { "{\"age\": 30, \"name\": \"bob\"}", false },
        /* $and, $or, nesting, mixed with fields. */
        { "{\"$and\": [{\"name\": \"ada\"}, {\"admin\": true}]}", true },
        { "{\"$and\": [{\"name\": \"ada\"}, {\"admin\": false}]}", false },
        { "{\"$or\": [{\"name\": \"bob\"}, {\"age\": {\"$gte\": 30}}]}", true },
        { "{\"$or\": [{\"name\": \"bob\"}, {\"age\": 1}]}", false },
        { "{\"$or\": [{\"$and\": [{\"age\": {\"$lt\": 18}}, {\"admin\": true}]},"
          " {\"$and\": [{\"name\": \"ada\"}, {\"score\": {\"$gte\": 2.5}}]}]}", true },
        { "{\"$or\": [{\"$and\": [{\"age\": {\"$lt\": 18}}, {\"admin\": true}]},"
          " {\"$and\": [{\"name\": \"ada\"}, {\"score\": {\"$gt\": 2.5}}]}]}", false },
        { "{\"name\": \"ada\", \"$or\": [{\"age\": 1}, {\"admin\": true}]}", true },
        { "{\"name\": \"bob\", \"$or\": [{\"age\": 1}, {\"admin\": true}]}", false },
        { "{\"$and\": [{}]}", true },
};

static bool match_json(const char *where_json, const char *meta_json) {
        _cleanup_(json_object_putp) json_object *where = json_tokener_parse(where_json);
        _cleanup_(json_object_putp) json_object *meta = meta_json ? json_tokener_parse(meta_json) : NULL;
        _cleanup_(shard_filter_freep) ShardFilter *f = NULL;
        _cleanup_free_ char *error = NULL;
        int r;

        ck_assert_msg(where, "unparsable test filter %s", where_json);
        r = shard_filter_compile(where, &f, &error);
        ck_assert_msg(r == 0, "%s: %d %s", where_json, r, strempty(error));
        ck_assert_ptr_null(error);
        return shard_filter_match(f, meta);
}

START_TEST(test_match_table) {
        bool got = match_json(match_cases[_i].where, metadata_json);

        ck_assert_msg(got == match_cases[_i].expect, "%s: got %s", match_cases[_i].where, got ? "true" : "false");
}
END_TEST

/* A row without metadata lacks every field. */
START_TEST(test_no_metadata) {
        ck_assert(match_json("{}", NULL));
        ck_assert(match_json("{\"age\": {\"$ne\": 1}}", NULL));
        ck_assert(match_json("{\"age\": {\"$nin\": [1, 2]}}", NULL));
        ck_assert(!match_json("{\"age\": 1}", NULL));
        ck_assert(!match_json("{\"age\": {\"$lt\": 1}}", NULL));
        ck_assert(!match_json("{\"age\": 1}", "[1, 2]"));
}
END_TEST

/* The filter owns what it needs: the where object can go first. */
START_TEST(test_outlives_where) {
        _cleanup_(json_object_putp) json_object *meta = json_tokener_parse(metadata_json);
        _cleanup_(shard_filter_freep) ShardFilter *f = NULL;
        json_object *where = json_tokener_parse("{\"name\": {\"$in\": [\"x\", \"ada\"]}, \"age\": {\"$gte\": 30}}");

        ck_assert_int_eq(shard_filter_compile(where, &f, NULL), 0);
        json_object_put(where);
        ck_assert(shard_filter_match(f, meta));
}
END_TEST

static const struct {
        const char *where;
        const char *message;    /* a part of the message the client reads */
} error_cases[] = {
        { "[]", "a filter must be a JSON object" },
        { "3", "a filter must be a JSON object" },
        { "{\"age\": {\"$regex\": \"a\"}}", "unknown operator \"$regex\" on \"age\"" },
        { "{\"$not\": {\"age\": 1}}", "unknown operator \"$not\"" },
        { "{\"$nor\": [{\"age\": 1}]}", "unknown operator \"$nor\"" },
        { "{\"age\": {\"$in\": 1}}", "$in on \"age\" takes a non-empty array" },
        { "{\"age\": {\"$nin\": \"a\"}}", "$nin on \"age\" takes a non-empty array" },
        { "{\"age\": {\"$in\": []}}", "$in on \"age\" takes a non-empty array" },
        { "{\"age\": {\"$in\": [[1]]}}", "$in on \"age\" takes a string, number or bool" },
        { "{\"age\": {\"$in\": [1, null]}}", "$in on \"age\" takes a string, number or bool" },
        { "{\"age\": null}", "$eq on \"age\" takes a string, number or bool" },
        { "{\"age\": [1, 2]}", "$eq on \"age\" takes a string, number or bool" },
        { "{\"age\": {\"$gt\": {\"x\": 1}}}", "$gt on \"age\" takes a string, number or bool" },
        { "{\"age\": {}}", "no operator for \"age\"" },
        { "{\"age\": {\"foo\": 1}}", "\"age\" takes a value or operators like \"$eq\", not \"foo\"" },
        { "{\"age\": {\"$gt\": 1, \"lt\": 2}}", "not \"lt\"" },
        { "{\"$and\": {}}", "$and takes a non-empty array of filters" },
        { "{\"$or\": []}", "$or takes a non-empty array of filters" },
        { "{\"$and\": [1]}", "a filter must be a JSON object" },
        { "{\"$or\": [{\"a\": 1}, {\"b\": {\"$lt\": true, \"$bad\": 1}}]}", "unknown operator \"$bad\" on \"b\"" },
};

START_TEST(test_compile_errors) {
        _cleanup_(json_object_putp) json_object *where = json_tokener_parse(error_cases[_i].where);
        ShardFilter *f = NULL;
        _cleanup_free_ char *error = NULL;

        ck_assert_msg(where, "unparsable test filter %s", error_cases[_i].where);
        ck_assert_int_eq(shard_filter_compile(where, &f, &error), -EINVAL);
        ck_assert_ptr_null(f);
        ck_assert_ptr_nonnull(error);
        ck_assert_msg(strneq(error, "where: ", 7) && strstr(error, error_cases[_i].message),
                      "%s: message \"%s\", expected \"%s\"", error_cases[_i].where, error, error_cases[_i].message);
        /* Without a place for the message, the same error. */
        ck_assert_int_eq(shard_filter_compile(where, &f, NULL), -EINVAL);
        ck_assert_ptr_null(f);
}
END_TEST

/* {"$and": [{"$and": [... {"leaf": 1} ...]}]}: objects filter objects deep. */
static json_object *nested(unsigned objects) {
        json_object *w = json_object_new_object();

        json_object_object_add(w, "leaf", json_object_new_int(1));
        for (unsigned i = 1; i < objects; i++) {
                json_object *outer = json_object_new_object(), *list = json_object_new_array();

                json_object_array_add(list, w);
                json_object_object_add(outer, i % 2 ? "$and" : "$or", list);
                w = outer;
        }
        return w;
}

/* {"$or": [{"f": 0}, ..., {"f": n - 1}]}. */
static json_object *wide(unsigned n) {
        json_object *w = json_object_new_object(), *list = json_object_new_array();

        for (unsigned i = 0; i < n; i++) {
                json_object *leaf = json_object_new_object();

                json_object_object_add(leaf, "f", json_object_new_int((int) i));
                json_object_array_add(list, leaf);
        }
        json_object_object_add(w, "$or", list);
        return w;
}

static json_object *in_list(unsigned n) {
        json_object *w = json_object_new_object(), *op = json_object_new_object(), *list = json_object_new_array();

        for (unsigned i = 0; i < n; i++)
                json_object_array_add(list, json_object_new_int((int) i));
        json_object_object_add(op, "$in", list);
        json_object_object_add(w, "f", op);
        return w;
}

static int compile_put(json_object *where, char **ret_error) {
        _cleanup_(shard_filter_freep) ShardFilter *f = NULL;
        _cleanup_(json_object_putp) json_object *meta = json_tokener_parse("{\"leaf\": 1, \"f\": 7}");
        int r;

        r = shard_filter_compile(where, &f, ret_error);
        json_object_put(where);
        if (r >= 0)
                ck_assert(shard_filter_match(f, meta));
        return r;
}

START_TEST(test_limits) {
        _cleanup_free_ char *error = NULL;

        ck_assert_int_eq(compile_put(nested(SHARD_FILTER_DEPTH_MAX), NULL), 0);
        ck_assert_int_eq(compile_put(nested(SHARD_FILTER_DEPTH_MAX + 1), &error), -EINVAL);
        ck_assert_str_eq(error, "where: nested deeper than 32 levels");
        free(TAKE_PTR(error));
        /* The operator object counts as a level too. */
        {
                json_object *w = nested(SHARD_FILTER_DEPTH_MAX), *inner = w, *list, *op = json_object_new_object();

                while (json_object_object_get_ex(inner, "$and", &list) || json_object_object_get_ex(inner, "$or", &list))
                        inner = json_object_array_get_idx(list, 0);
                json_object_object_add(op, "$gte", json_object_new_int(1));
                json_object_object_add(inner, "leaf", op);
                ck_assert_int_eq(compile_put(w, NULL), -EINVAL);
        }

        /* The $or and 255 leaves: 256 conditions. */
        ck_assert_int_eq(compile_put(wide(SHARD_FILTER_NODES_MAX - 1), NULL), 0);
        ck_assert_int_eq(compile_put(wide(SHARD_FILTER_NODES_MAX), &error), -EINVAL);
        ck_assert_str_eq(error, "where: more than 256 conditions");
        free(TAKE_PTR(error));
        ck_assert_int_eq(compile_put(in_list(SHARD_FILTER_NODES_MAX), NULL), 0);
        ck_assert_int_eq(compile_put(in_list(SHARD_FILTER_NODES_MAX + 1), &error), -EINVAL);
        ck_assert_str_eq(error, "where: more than 256 conditions");
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shard-filter");
        TCase *tc = tcase_create("core");

        tcase_add_loop_test(tc, test_match_table, 0, ELEMENTSOF(match_cases));
        tcase_add_test(tc, test_no_metadata);
        tcase_add_test(tc, test_outlives_where);
        tcase_add_loop_test(tc, test_compile_errors, 0, ELEMENTSOF(error_cases));
        tcase_add_test(tc, test_limits);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
