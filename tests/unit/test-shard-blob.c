/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shardd/shard-blob.c: digests parse only in Ollama's forms and print
 * canonically, file names round-trip, and a blob's holders are the same whatever order members
 * are listed in and move only when a holder leaves (the rest stay). */
#include <stdio.h>
#include <string.h>

#include "shard-blob.h"
#include "unit-test.h"

#define N_NODES 5
#define HEX_A "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

static char ids[N_NODES][33];
static char *nodes[N_NODES];

static void setup(void) {
        for (size_t i = 0; i < N_NODES; i++) {
                snprintf(ids[i], sizeof(ids[i]), "%08x%024x", (unsigned) (i * 0x9e3779b9u + 7), (unsigned) i);
                nodes[i] = ids[i];
        }
}

START_TEST(test_digest_parse) {
        uint8_t d[SHARD_BLOB_DIGEST_SIZE], e[SHARD_BLOB_DIGEST_SIZE];
        char s[SHARD_BLOB_DIGEST_STRING_MAX], f[SHARD_BLOB_FILE_NAME_MAX];

        ck_assert_int_eq(shard_blob_digest_parse("sha256:" HEX_A, d), 0);
        ck_assert_uint_eq(d[0], 0x9f);
        ck_assert_uint_eq(d[31], 0x08);
        ck_assert_str_eq(shard_blob_digest_to_string(d, s), "sha256:" HEX_A);
        ck_assert_str_eq(shard_blob_file_name(d, f), "sha256-" HEX_A);
        ck_assert_int_eq(shard_blob_file_name_parse(f, e), 0);
        ck_assert_mem_eq(d, e, sizeof(d));
        /* Ollama's other form and upper case parse to the same digest. */
        ck_assert_int_eq(shard_blob_digest_parse("sha256-9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08", e), 0);
        ck_assert_mem_eq(d, e, sizeof(d));

        ck_assert_int_eq(shard_blob_digest_parse(NULL, d), -EINVAL);
        ck_assert_int_eq(shard_blob_digest_parse("", d), -EINVAL);
        ck_assert_int_eq(shard_blob_digest_parse("sha256:", d), -EINVAL);
        ck_assert_int_eq(shard_blob_digest_parse("sha256:" HEX_A "0", d), -EINVAL);
        ck_assert_int_eq(shard_blob_digest_parse("sha256:9f86", d), -EINVAL);
        ck_assert_int_eq(shard_blob_digest_parse("sha512:" HEX_A, d), -EINVAL);
        ck_assert_int_eq(shard_blob_digest_parse("sha256_" HEX_A, d), -EINVAL);
        ck_assert_int_eq(shard_blob_digest_parse("sha256:g" HEX_A + 1, d), -EINVAL);
        ck_assert_int_eq(shard_blob_digest_parse(HEX_A, d), -EINVAL);
        /* Temporary files in the blob directory are not blobs. */
        ck_assert_int_eq(shard_blob_file_name_parse(".tmp-sha256-" HEX_A, d), -EINVAL);
        ck_assert_int_eq(shard_blob_file_name_parse("sha256:" HEX_A, d), -EINVAL);
}
END_TEST

static bool held_by(const char *const *holders, int n, const char *id) {
        for (int i = 0; i < n; i++)
                if (streq(holders[i], id))
                        return true;
        return false;
}

START_TEST(test_holders_stable) {
        char *reversed[N_NODES], *fewer[N_NODES - 1];
        unsigned first[N_NODES] = {};

        for (size_t i = 0; i < N_NODES; i++)
                reversed[i] = nodes[N_NODES - 1 - i];
        for (unsigned b = 0; b < 500; b++) {
                uint8_t d[SHARD_BLOB_DIGEST_SIZE] = {};
                const char *h[SHARD_REPLICAS_MAX], *g[SHARD_REPLICAS_MAX], *k[SHARD_REPLICAS_MAX];
                int n, gone = -1;
                size_t nf = 0;

                memcpy(d, &b, sizeof(b));
                d[31] = 0x5a;
                n = shard_blob_holders(d, nodes, N_NODES, 2, h);
                ck_assert_int_eq(n, 2);
                ck_assert_str_ne(h[0], h[1]);
                /* The same holders, in the same order, from another listing of the members. */
                ck_assert_int_eq(shard_blob_holders(d, reversed, N_NODES, 2, g), 2);
                ck_assert_str_eq(h[0], g[0]);
                ck_assert_str_eq(h[1], g[1]);
                for (size_t i = 0; i < N_NODES; i++)
                        if (streq(nodes[i], h[0]))
                                first[i]++;

                /* A node that is not a holder leaves: the holders stay. One that is leaves: the
                 * other stays, in first place. */
                for (size_t i = 0; i < N_NODES; i++)
                        if (!held_by(h, n, nodes[i]) && gone < 0)
                                gone = (int) i;
                for (size_t i = 0; i < N_NODES; i++)
                        if ((int) i != gone)
                                fewer[nf++] = nodes[i];
                ck_assert_int_eq(shard_blob_holders(d, fewer, nf, 2, k), 2);
                ck_assert_str_eq(k[0], h[0]);
                ck_assert_str_eq(k[1], h[1]);
                nf = 0;
                for (size_t i = 0; i < N_NODES; i++)
                        if (!streq(nodes[i], h[0]))
                                fewer[nf++] = nodes[i];
                ck_assert_int_eq(shard_blob_holders(d, fewer, nf, 2, k), 2);
                ck_assert_str_eq(k[0], h[1]);
        }
        /* Spread: every node is the first holder of some blobs (500 over 5: about 100 each). */
        for (size_t i = 0; i < N_NODES; i++)
                ck_assert_uint_gt(first[i], 50);
}
END_TEST

START_TEST(test_holders_limits) {
        uint8_t d[SHARD_BLOB_DIGEST_SIZE] = { 1 };
        const char *h[SHARD_REPLICAS_MAX];

        ck_assert_int_eq(shard_blob_holders(d, nodes, 1, 3, h), 1);
        ck_assert_str_eq(h[0], nodes[0]);
        ck_assert_int_eq(shard_blob_holders(d, nodes, 0, 2, h), 0);
        ck_assert_int_eq(shard_blob_holders(d, nodes, N_NODES, 0, h), -EINVAL);
        ck_assert_int_eq(shard_blob_holders(d, nodes, N_NODES, SHARD_REPLICAS_MAX + 1, h), -EINVAL);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shard-blob");
        TCase *tc = tcase_create("core");

        tcase_add_checked_fixture(tc, setup, NULL);
        tcase_add_test(tc, test_digest_parse);
        tcase_add_test(tc, test_holders_stable);
        tcase_add_test(tc, test_holders_limits);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
