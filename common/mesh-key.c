/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Loading and creating the mesh key file with libsodium's base64 and CSPRNG, so gossipd, shimd,
 * the launcher and myceliactl read the same format. */
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/stat.h>

#include "log.h"
#include "mesh-key.h"

int mesh_key_format(const uint8_t key[MESH_KEY_SIZE], char *buf, size_t size) {
        if (size < sodium_base64_ENCODED_LEN(MESH_KEY_SIZE, sodium_base64_VARIANT_ORIGINAL))
                return -ENOBUFS;
        sodium_bin2base64(buf, size, key, MESH_KEY_SIZE, sodium_base64_VARIANT_ORIGINAL);
        return 0;
}

int mesh_key_load(const char *path, uint8_t ret[MESH_KEY_SIZE]) {
        char text[MESH_KEY_FILE_MAX + 1];
        _cleanup_(closep) int fd = -EBADF;
        uint8_t key[MESH_KEY_SIZE];
        size_t key_len = 0;
        const char *end;
        ssize_t n;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        n = read(fd, text, sizeof(text));
        if (n < 0)
                return log_error_errno(-errno, "Failed to read mesh key %s: %m", path);
        if ((size_t) n > MESH_KEY_FILE_MAX)
                return log_error_errno(-EINVAL, "Mesh key %s is too long to be one key.", path);
        text[n] = '\0';

        if (sodium_base642bin(key, sizeof(key), text, (size_t) n, " \t\r\n", &key_len, &end,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            key_len != MESH_KEY_SIZE || end[strspn(end, " \t\r\n")] != '\0') {
                sodium_memzero(key, sizeof(key));
                sodium_memzero(text, sizeof(text));
                return log_error_errno(-EINVAL, "Mesh key %s is not base64 of 32 bytes.", path);
        }
        memcpy(ret, key, MESH_KEY_SIZE);
        sodium_memzero(key, sizeof(key));
        sodium_memzero(text, sizeof(text));
        return 0;
}

int mesh_key_generate(const char *path) {
        char text[MESH_KEY_FILE_MAX], tmp[PATH_MAX];
        uint8_t key[MESH_KEY_SIZE];
        _cleanup_(closep) int fd = -EBADF;
        size_t len;
        int r;

        if (sodium_init() < 0)
                return -EIO;
        if (access(path, F_OK) == 0)
                return -EEXIST;
        if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int) getpid()) >= (int) sizeof(tmp))
                return -ENAMETOOLONG;

        randombytes_buf(key, sizeof(key));
        r = mesh_key_format(key, text, sizeof(text));
        sodium_memzero(key, sizeof(key));
        if (r < 0)
                return r;
        len = strlen(text);
        text[len++] = '\n';

        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0640);
        if (fd < 0)
                return -errno;
        if (write(fd, text, len) != (ssize_t) len || fsync(fd) < 0) {
                r = errno > 0 ? -errno : -EIO;
                (void) unlink(tmp);
                return r;
        }
        sodium_memzero(text, sizeof(text));
        /* link() fails if path appeared meanwhile: never replace a key someone else wrote. */
        if (link(tmp, path) < 0) {
                r = -errno;
                (void) unlink(tmp);
                return r;
        }
        (void) unlink(tmp);
        return 0;
}
