/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The mesh keyring (mesh-keyring.h): its file, and installing, using and removing keys. */
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "mesh-keyring.h"

#define KEY_ID_LABEL "mycelia-key-id-v1"

void mesh_key_id(const uint8_t key[MESH_KEY_SIZE], char ret[MESH_KEY_ID_LEN + 1]) {
        uint8_t id[MESH_KEY_ID_LEN / 2];

        (void) crypto_generichash(id, sizeof(id), (const uint8_t *) KEY_ID_LABEL, strlen(KEY_ID_LABEL), key,
                                  MESH_KEY_SIZE);
        sodium_bin2hex(ret, MESH_KEY_ID_LEN + 1, id, sizeof(id));
}

int mesh_keyring_path(const char *state_dir, char **ret) {
        if (isempty(state_dir))
                return -EINVAL;
        return asprintf(ret, "%s/keyring", state_dir) < 0 ? -ENOMEM : 0;
}

static int key_decode(const char *text, size_t len, uint8_t ret[MESH_KEY_SIZE]) {
        size_t key_len = 0;
        const char *end;

        if (sodium_base642bin(ret, MESH_KEY_SIZE, text, len, NULL, &key_len, &end,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            key_len != MESH_KEY_SIZE || end != text + len)
                return -EINVAL;
        return 0;
}

int mesh_keyring_find(const MeshKeyring *k, const char *key_or_id) {
        uint8_t key[MESH_KEY_SIZE];
        size_t len = strlen(key_or_id);

        if (len == MESH_KEY_ID_LEN && strspn(key_or_id, "0123456789abcdef") == len) {
                for (size_t i = 0; i < k->n; i++) {
                        char id[MESH_KEY_ID_LEN + 1];

                        mesh_key_id(k->keys[i], id);
                        if (streq(id, key_or_id))
                                return (int) i;
                }
                return -ENOENT;
        }
        if (key_decode(key_or_id, len, key) < 0)
                return -EINVAL;
        for (size_t i = 0; i < k->n; i++)
                if (sodium_memcmp(k->keys[i], key, MESH_KEY_SIZE) == 0) {
                        sodium_memzero(key, sizeof(key));
                        return (int) i;
                }
        sodium_memzero(key, sizeof(key));
        return -ENOENT;
}

int mesh_keyring_install(MeshKeyring *k, const char *key_base64) {
        uint8_t key[MESH_KEY_SIZE];

        if (key_decode(key_base64, strlen(key_base64), key) < 0)
                return -EINVAL;
        for (size_t i = 0; i < k->n; i++)
                if (sodium_memcmp(k->keys[i], key, MESH_KEY_SIZE) == 0) {
                        sodium_memzero(key, sizeof(key));
                        return -EEXIST;
                }
        if (k->n >= MESH_KEYRING_MAX) {
                sodium_memzero(key, sizeof(key));
                return -E2BIG;
        }
        memcpy(k->keys[k->n++], key, MESH_KEY_SIZE);
        sodium_memzero(key, sizeof(key));
        return 0;
}

int mesh_keyring_use(MeshKeyring *k, const char *key_or_id) {
        uint8_t key[MESH_KEY_SIZE];
        int i = mesh_keyring_find(k, key_or_id);

        if (i <= 0)
                return i;
        /* The new primary first, the others in their order. */
        memcpy(key, k->keys[i], MESH_KEY_SIZE);
        memmove(k->keys[1], k->keys[0], (size_t) i * MESH_KEY_SIZE);
        memcpy(k->keys[0], key, MESH_KEY_SIZE);
        sodium_memzero(key, sizeof(key));
        return 0;
}

int mesh_keyring_remove(MeshKeyring *k, const char *key_or_id) {
        int i = mesh_keyring_find(k, key_or_id);

        if (i < 0)
                return i;
        if (i == 0)
                return -EBUSY;
        memmove(k->keys[i], k->keys[i + 1], (k->n - (size_t) i - 1) * MESH_KEY_SIZE);
        k->n--;
        sodium_memzero(k->keys[k->n], MESH_KEY_SIZE);
        return 0;
}

int mesh_keyring_parse(const char *text, MeshKeyring *ret) {
        MeshKeyring k = {};
        const char *p = text;

        while (*p) {
                size_t len = strcspn(p, "\n"), a = 0, b = len;

                while (a < b && strchr(" \t\r", p[a]))
                        a++;
                while (b > a && strchr(" \t\r", p[b - 1]))
                        b--;
                if (a < b && p[a] != '#') {
                        uint8_t key[MESH_KEY_SIZE];

                        if (key_decode(p + a, b - a, key) < 0) {
                                mesh_keyring_wipe(&k);
                                return -EINVAL;
                        }
                        for (size_t i = 0; i < k.n; i++)
                                if (sodium_memcmp(k.keys[i], key, MESH_KEY_SIZE) == 0) {
                                        sodium_memzero(key, sizeof(key));
                                        mesh_keyring_wipe(&k);
                                        return -EINVAL;
                                }
                        if (k.n >= MESH_KEYRING_MAX) {
                                sodium_memzero(key, sizeof(key));
                                mesh_keyring_wipe(&k);
                                return -E2BIG;
                        }
                        memcpy(k.keys[k.n++], key, MESH_KEY_SIZE);
                        sodium_memzero(key, sizeof(key));
                }
                p += len;
                if (*p == '\n')
                        p++;
        }
        if (k.n == 0)
                return -EINVAL;
        *ret = k;
        mesh_keyring_wipe(&k);
        return 0;
}

int mesh_keyring_format(const MeshKeyring *k, char **ret) {
        size_t line = sodium_base64_ENCODED_LEN(MESH_KEY_SIZE, sodium_base64_VARIANT_ORIGINAL);
        static const char comment[] = "# mycelia-gossipd: the mesh keys this node accepts, the primary one first.\n";
        char *buf, *d;

        buf = malloc(sizeof(comment) + k->n * line + 1);
        if (!buf)
                return -ENOMEM;
        d = stpcpy(buf, comment);
        for (size_t i = 0; i < k->n; i++) {
                sodium_bin2base64(d, line, k->keys[i], MESH_KEY_SIZE, sodium_base64_VARIANT_ORIGINAL);
                d += strlen(d);
                *d++ = '\n';
        }
        *d = '\0';
        *ret = buf;
        return 0;
}

int mesh_keyring_load(const char *keyring_path, const char *mesh_key_path, MeshKeyring *ret) {
        char text[MESH_KEYRING_FILE_MAX + 1];
        _cleanup_(closep) int fd = -EBADF;
        ssize_t n;
        int r;

        fd = keyring_path ? open(keyring_path, O_RDONLY | O_CLOEXEC | O_NOCTTY) : -ENOENT;
        if (fd < 0 && (!keyring_path || errno == ENOENT)) {
                MeshKeyring k = { .n = 1 };

                if (isempty(mesh_key_path))
                        return -ENOENT;
                r = mesh_key_load(mesh_key_path, k.keys[0]);
                if (r < 0)
                        return r;
                *ret = k;
                mesh_keyring_wipe(&k);
                return 0;
        }
        if (fd < 0)
                return -errno;
        n = read(fd, text, sizeof(text));
        if (n < 0)
                return -errno;
        if ((size_t) n > MESH_KEYRING_FILE_MAX)
                return -EFBIG;
        text[n] = '\0';
        r = mesh_keyring_parse(text, ret);
        sodium_memzero(text, sizeof(text));
        return r;
}

int mesh_keyring_write(const char *path, const MeshKeyring *k) {
        _cleanup_free_ char *text = NULL;
        char tmp[PATH_MAX];
        _cleanup_(closep) int fd = -EBADF;
        size_t len;
        int r;

        r = mesh_keyring_format(k, &text);
        if (r < 0)
                return r;
        len = strlen(text);
        if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int) sizeof(tmp)) {
                sodium_memzero(text, len);
                return -ENAMETOOLONG;
        }
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0640);
        if (fd < 0) {
                sodium_memzero(text, len);
                return -errno;
        }
        r = write(fd, text, len) == (ssize_t) len && fsync(fd) == 0 ? 0 : (errno > 0 ? -errno : -EIO);
        sodium_memzero(text, len);
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                (void) unlink(tmp);
        return r;
}

void mesh_keyring_wipe(MeshKeyring *k) {
        sodium_memzero(k, sizeof(*k));
}
