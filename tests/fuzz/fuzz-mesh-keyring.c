/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the keyring file parser (common/mesh-keyring.c) that gossipd, shimd and shardd read from
 * STATE_DIR/keyring, and the key arguments of InstallKey/UseKey/RemoveKey. Input: the file; its
 * first line is also tried as a key argument. Whatever parses formats and parses back the same. */
#include <sodium.h>

#include "fuzz.h"
#include "mesh-keyring.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        MeshKeyring k, again;
        char *text, *line;
        char *out = NULL;

        if (sodium_init() < 0)
                return 0;
        text = fuzz_strndup(data, size);
        if (!text)
                return 0;
        if (mesh_keyring_parse(text, &k) >= 0) {
                fuzz_check(k.n >= 1 && k.n <= MESH_KEYRING_MAX);
                fuzz_check(mesh_keyring_format(&k, &out) >= 0);
                fuzz_check(mesh_keyring_parse(out, &again) >= 0);
                fuzz_check(again.n == k.n && memcmp(again.keys, k.keys, sizeof(k.keys)) == 0);
                free(out);
                line = strndup(text, strcspn(text, "\n"));
                if (line) {
                        MeshKeyring t = k;
                        int r = mesh_keyring_install(&t, line);

                        fuzz_check(r == 0 || r == -EEXIST || r == -E2BIG || r == -EINVAL);
                        r = mesh_keyring_use(&t, line);
                        fuzz_check(r <= 0);
                        r = mesh_keyring_remove(&t, line);
                        fuzz_check(r == 0 || r == -EBUSY || r == -ENOENT || r == -EINVAL);
                        fuzz_check(t.n >= 1 && t.n <= MESH_KEYRING_MAX);
                        free(line);
                }
        }
        free(text);
        return 0;
}
