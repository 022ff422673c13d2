/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shimd/shim-blobs.c: Ollama's digest forms, and the blobs a create body
 * names (files and adapters, each digest once and in canonical form, invalid entries passed over
 * for Ollama to refuse, the limit). */
#include <json-c/json.h>
#include <stdio.h>

#include "json-cleanup.h"
#include "shim-blobs.h"
#include "unit-test.h"

#define HEX_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HEX_B "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static int blobs_of(const char *json, ShimCreateBlobs *ret) {
        _cleanup_(json_object_putp) json_object *o = json ? json_tokener_parse(json) : NULL;

        ck_assert_msg(!json || o, "test body does not parse: %s", json);
        return shim_create_blobs(o, ret);
}

START_TEST(test_digest_forms) {
        static const char *const good[] = { "sha256:" HEX_A, "sha256-" HEX_B, "sha256:" "0123456789ABCDEF0123456789AB"
                                            "CDEF0123456789abcdef0123456789abcdef" };
        static const char *const bad[] = {
                "", "sha256:", "sha256:" HEX_A "0", "sha256:" "aaa", "sha512:" HEX_A, "SHA256:" HEX_A,
                "sha256_" HEX_A, "sha256:" "g" HEX_A, " sha256:" HEX_A, "sha256:" HEX_A " ",
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++)
                ck_assert_msg(shim_digest_valid(good[i]), "refused %s", good[i]);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(!shim_digest_valid(bad[i]), "accepted %s", bad[i]);
        ck_assert(!shim_digest_valid(NULL));
}
END_TEST

/* json names exactly the blobs HEX_A and HEX_B, in that order. */
static void assert_a_then_b(const char *json) {
        ShimCreateBlobs b;

        ck_assert_int_eq(blobs_of(json, &b), 0);
        ck_assert_uint_eq(b.n, 2);
        ck_assert_str_eq(b.digest[0], "sha256:" HEX_A);
        ck_assert_str_eq(b.digest[1], "sha256:" HEX_B);
}

START_TEST(test_files_and_adapters) {
        /* Files first, then adapters. */
        assert_a_then_b("{\"model\":\"mine\",\"from\":\"m\",\"adapters\":{\"a.gguf\":\"sha256:" HEX_B "\"},"
                        "\"files\":{\"w.gguf\":\"sha256:" HEX_A "\"}}");
}
END_TEST

START_TEST(test_canonical_and_once) {
        /* "sha256-" and upper case name the same blob: one entry, named as Ollama stores it; keys
         * match in any case (Go's decoder), and every matching key is read. */
        assert_a_then_b("{\"files\":{\"a\":\"sha256-" HEX_A "\",\"b\":\"sha256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
                        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"},\"Adapters\":{\"x\":\"sha256:" HEX_A "\"},"
                        "\"FILES\":{\"c\":\"sha256:" HEX_B "\"}}");
}
END_TEST

START_TEST(test_none_and_invalid) {
        static const char *const none[] = {
                "{}", "[]", "\"files\"", "true", "{\"model\":\"m\",\"from\":\"x\"}", "{\"files\":null}",
                "{\"files\":[\"sha256:" HEX_A "\"]}", "{\"files\":\"sha256:" HEX_A "\"}",
                "{\"files\":{\"a\":42,\"b\":null,\"c\":{\"d\":\"sha256:" HEX_A "\"},\"e\":\"sha256:nope\"}}",
                "{\"model\":{\"files\":{\"a\":\"sha256:" HEX_A "\"}}}", "{\"template\":\"sha256:" HEX_A "\"}",
        };
        ShimCreateBlobs b;

        for (size_t i = 0; i < ELEMENTSOF(none); i++) {
                b.n = 99;
                ck_assert_int_eq(blobs_of(none[i], &b), 0);
                ck_assert_msg(b.n == 0, "found %zu blob(s) in %s", b.n, none[i]);
        }
        /* No body, or one that is not JSON (or is null): none. */
        ck_assert_int_eq(blobs_of(NULL, &b), 0);
        ck_assert_uint_eq(b.n, 0);
        /* Invalid entries beside a valid one: the valid one is still found. */
        ck_assert_int_eq(blobs_of("{\"files\":{\"a\":7,\"b\":\"sha256:" HEX_B "\",\"c\":\"md5:x\"}}", &b), 0);
        ck_assert_uint_eq(b.n, 1);
        ck_assert_str_eq(b.digest[0], "sha256:" HEX_B);
}
END_TEST

/* A body naming n distinct digests in files, and the same ones again in adapters. */
static json_object *body_with(size_t n) {
        json_object *o = json_object_new_object(), *files = json_object_new_object(),
                    *adapters = json_object_new_object();

        for (size_t i = 0; i < n; i++) {
                char name[32], digest[SHIM_DIGEST_LEN + 1];

                snprintf(name, sizeof(name), "f%zu.gguf", i);
                snprintf(digest, sizeof(digest), "sha256:%064zx", i);
                ck_assert_int_eq(json_object_object_add(files, name, json_object_new_string(digest)), 0);
                ck_assert_int_eq(json_object_object_add(adapters, name, json_object_new_string(digest)), 0);
        }
        ck_assert_int_eq(json_object_object_add(o, "files", files), 0);
        ck_assert_int_eq(json_object_object_add(o, "adapters", adapters), 0);
        return o;
}

START_TEST(test_limit) {
        _cleanup_(json_object_putp) json_object *most = body_with(SHIM_CREATE_BLOBS_MAX);
        _cleanup_(json_object_putp) json_object *over = body_with(SHIM_CREATE_BLOBS_MAX + 1);
        ShimCreateBlobs b;

        /* Repeats do not count against the limit. */
        ck_assert_int_eq(shim_create_blobs(most, &b), 0);
        ck_assert_uint_eq(b.n, SHIM_CREATE_BLOBS_MAX);
        ck_assert_str_eq(b.digest[SHIM_CREATE_BLOBS_MAX - 1], "sha256:00000000000000000000000000000000000000000000000"
                                                              "0000000000000003f");
        /* One more: refused, and ret untouched. */
        b.n = 7;
        ck_assert_int_eq(shim_create_blobs(over, &b), -E2BIG);
        ck_assert_uint_eq(b.n, 7);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shim-blobs");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_digest_forms);
        tcase_add_test(tc, test_files_and_adapters);
        tcase_add_test(tc, test_canonical_and_once);
        tcase_add_test(tc, test_none_and_invalid);
        tcase_add_test(tc, test_limit);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
