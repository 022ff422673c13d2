/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for common/mesh-key.c: generating a key file, loading it back, and refusing
 * files that are not base64 of exactly 32 bytes. */
#include <stdio.h>
#include <sys/stat.h>

#include "mesh-key.h"
#include "unit-test.h"

static char dir[64];
static char path[128];

static void setup(void) {
        snprintf(dir, sizeof(dir), "/tmp/test-mesh-key-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/mesh.key", dir);
}

static void teardown(void) {
        (void) unlink(path);
        (void) rmdir(dir);
}

static void write_file(const char *text) {
        FILE *f = fopen(path, "we");

        ck_assert_ptr_nonnull(f);
        ck_assert_int_ge(fputs(text, f), 0);
        fclose(f);
}

START_TEST(test_generate_and_load) {
        uint8_t a[MESH_KEY_SIZE], b[MESH_KEY_SIZE];
        struct stat st;
        char text[MESH_KEY_FILE_MAX];

        ck_assert_int_eq(mesh_key_generate(path), 0);
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_uint_eq(st.st_mode & 0777, 0640);
        ck_assert_int_eq(mesh_key_load(path, a), 0);
        /* A second generate must not replace the key. */
        ck_assert_int_eq(mesh_key_generate(path), -EEXIST);
        ck_assert_int_eq(mesh_key_load(path, b), 0);
        ck_assert_mem_eq(a, b, MESH_KEY_SIZE);
        /* The format round-trips. */
        ck_assert_int_eq(mesh_key_format(a, text, sizeof(text)), 0);
        ck_assert_uint_eq(strlen(text), 44);
}
END_TEST

START_TEST(test_load_missing) {
        uint8_t k[MESH_KEY_SIZE];

        ck_assert_int_eq(mesh_key_load(path, k), -ENOENT);
}
END_TEST

START_TEST(test_load_whitespace_ok) {
        uint8_t k[MESH_KEY_SIZE];

        /* 32 bytes 0x00..0x1f */
        write_file("  AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n");
        ck_assert_int_eq(mesh_key_load(path, k), 0);
        for (unsigned i = 0; i < MESH_KEY_SIZE; i++)
                ck_assert_uint_eq(k[i], i);
}
END_TEST

START_TEST(test_load_rejects_bad) {
        static const char *const bad[] = {
                "",
                "\n",
                "not base64 at all!",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd",             /* 30 bytes */
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gIQ==",     /* 34 bytes */
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8= trailing",
        };
        uint8_t k[MESH_KEY_SIZE];
        char big[512];

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                write_file(bad[i]);
                ck_assert_int_eq(mesh_key_load(path, k), -EINVAL);
        }
        memset(big, 'A', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        write_file(big);
        ck_assert_int_eq(mesh_key_load(path, k), -EINVAL);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("mesh-key");
        TCase *tc = tcase_create("core");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_generate_and_load);
        tcase_add_test(tc, test_load_missing);
        tcase_add_test(tc, test_load_whitespace_ok);
        tcase_add_test(tc, test_load_rejects_bad);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
