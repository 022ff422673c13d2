/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for common/mesh-keyring.c: the file's format, and installing, using and removing
 * keys as a rotation does them. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "mesh-keyring.h"
#include "unit-test.h"

static void key_text(uint8_t fill, char buf[64]) {
        uint8_t key[MESH_KEY_SIZE];

        memset(key, fill, sizeof(key));
        ck_assert_int_eq(mesh_key_format(key, buf, 64), 0);
}

START_TEST(test_parse_format) {
        char a[64], b[64], text[512];
        _cleanup_free_ char *out = NULL;
        MeshKeyring k, again;

        key_text(1, a);
        key_text(2, b);
        snprintf(text, sizeof(text), "# comment\n\n  %s  \n%s\n", a, b);
        ck_assert_int_eq(mesh_keyring_parse(text, &k), 0);
        ck_assert_uint_eq(k.n, 2);
        ck_assert_uint_eq(k.keys[0][0], 1);
        ck_assert_uint_eq(k.keys[1][0], 2);
        ck_assert_int_eq(mesh_keyring_format(&k, &out), 0);
        ck_assert_int_eq(mesh_keyring_parse(out, &again), 0);
        ck_assert_int_eq(memcmp(&k, &again, sizeof(k)), 0);

        ck_assert_int_eq(mesh_keyring_parse("# nothing\n", &k), -EINVAL);
        ck_assert_int_eq(mesh_keyring_parse("not base64\n", &k), -EINVAL);
        ck_assert_int_eq(mesh_keyring_parse("AAAA\n", &k), -EINVAL);   /* not 32 bytes */
        snprintf(text, sizeof(text), "%s\n%s\n", a, a);
        ck_assert_int_eq(mesh_keyring_parse(text, &k), -EINVAL);       /* twice */
        text[0] = '\0';
        for (uint8_t f = 1; f <= MESH_KEYRING_MAX + 1; f++) {
                key_text(f, a);
                strcat(text, a);
                strcat(text, "\n");
        }
        ck_assert_int_eq(mesh_keyring_parse(text, &k), -E2BIG);
}
END_TEST

START_TEST(test_rotation) {
        char old[64], new[64], id_old[MESH_KEY_ID_LEN + 1], id_new[MESH_KEY_ID_LEN + 1];
        MeshKeyring k = { .n = 1 };

        memset(k.keys[0], 1, MESH_KEY_SIZE);
        key_text(1, old);
        key_text(2, new);
        mesh_key_id(k.keys[0], id_old);
        ck_assert_uint_eq(strlen(id_old), MESH_KEY_ID_LEN);

        /* install: a secondary key; twice is -EEXIST; garbage -EINVAL. */
        ck_assert_int_eq(mesh_keyring_install(&k, new), 0);
        ck_assert_int_eq(mesh_keyring_install(&k, new), -EEXIST);
        ck_assert_int_eq(mesh_keyring_install(&k, "nope"), -EINVAL);
        ck_assert_uint_eq(k.n, 2);
        ck_assert_uint_eq(k.keys[0][0], 1);
        mesh_key_id(k.keys[1], id_new);
        ck_assert_str_ne(id_old, id_new);

        /* found by text and by id */
        ck_assert_int_eq(mesh_keyring_find(&k, new), 1);
        ck_assert_int_eq(mesh_keyring_find(&k, id_new), 1);
        ck_assert_int_eq(mesh_keyring_find(&k, "0123456789abcdef"), -ENOENT);
        ck_assert_int_eq(mesh_keyring_find(&k, "xyz"), -EINVAL);

        /* the primary cannot go; use makes the new one primary, then the old one can go */
        ck_assert_int_eq(mesh_keyring_remove(&k, old), -EBUSY);
        ck_assert_int_eq(mesh_keyring_use(&k, id_new), 0);
        ck_assert_uint_eq(k.keys[0][0], 2);
        ck_assert_uint_eq(k.keys[1][0], 1);
        ck_assert_int_eq(mesh_keyring_use(&k, new), 0);
        ck_assert_int_eq(mesh_keyring_remove(&k, id_old), 0);
        ck_assert_uint_eq(k.n, 1);
        ck_assert_uint_eq(k.keys[0][0], 2);
        ck_assert_int_eq(mesh_keyring_remove(&k, old), -ENOENT);

        /* full */
        for (uint8_t f = 3; k.n < MESH_KEYRING_MAX; f++) {
                char t[64];

                key_text(f, t);
                ck_assert_int_eq(mesh_keyring_install(&k, t), 0);
        }
        ck_assert_int_eq(mesh_keyring_install(&k, old), -E2BIG);
}
END_TEST

START_TEST(test_files) {
        char dir[] = "/tmp/test-keyring-XXXXXX", keyfile[256], ringfile[256], text[64];
        MeshKeyring k, loaded;
        FILE *f;

        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(keyfile, sizeof(keyfile), "%s/mesh.key", dir);
        snprintf(ringfile, sizeof(ringfile), "%s/keyring", dir);
        ck_assert_int_eq(mesh_keyring_load(ringfile, keyfile, &k), -ENOENT);
        key_text(7, text);
        f = fopen(keyfile, "w");
        fprintf(f, "%s\n", text);
        fclose(f);
        /* no keyring file: the mesh key alone */
        ck_assert_int_eq(mesh_keyring_load(ringfile, keyfile, &k), 0);
        ck_assert_uint_eq(k.n, 1);
        ck_assert_uint_eq(k.keys[0][0], 7);
        key_text(8, text);
        ck_assert_int_eq(mesh_keyring_install(&k, text), 0);
        ck_assert_int_eq(mesh_keyring_use(&k, text), 0);
        ck_assert_int_eq(mesh_keyring_write(ringfile, &k), 0);
        /* the keyring file wins over the mesh key */
        ck_assert_int_eq(mesh_keyring_load(ringfile, keyfile, &loaded), 0);
        ck_assert_uint_eq(loaded.n, 2);
        ck_assert_uint_eq(loaded.keys[0][0], 8);
        ck_assert_uint_eq(loaded.keys[1][0], 7);
        unlink(ringfile);
        unlink(keyfile);
        rmdir(dir);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("mesh-keyring");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_parse_format);
        tcase_add_test(tc, test_rotation);
        tcase_add_test(tc, test_files);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        if (sodium_init() < 0)
                return 1;
        return unit_test_run(suite());
}
