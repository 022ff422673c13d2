/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Blob names and placement (shard-blob.h). Placement is shard-placement's rendezvous ranking:
 * blobs and shards spread over the same members the same way, and a membership change moves
 * only the blobs whose top r changed. */
#include <string.h>

#include "hex.h"
#include "shard-blob.h"

static int digest_hex_parse(const char *hex, uint8_t ret[static SHARD_BLOB_DIGEST_SIZE]) {
        uint8_t d[SHARD_BLOB_DIGEST_SIZE];

        if (strlen(hex) != 2 * SHARD_BLOB_DIGEST_SIZE)
                return -EINVAL;
        for (size_t i = 0; i < SHARD_BLOB_DIGEST_SIZE; i++) {
                int hi = unhexchar(hex[2 * i]), lo = unhexchar(hex[2 * i + 1]);

                if (hi < 0 || lo < 0)
                        return -EINVAL;
                d[i] = (uint8_t) (hi << 4 | lo);
        }
        memcpy(ret, d, sizeof(d));
        return 0;
}

int shard_blob_digest_parse(const char *s, uint8_t ret[static SHARD_BLOB_DIGEST_SIZE]) {
        if (!s || strncmp(s, "sha256", 6) != 0 || (s[6] != ':' && s[6] != '-'))
                return -EINVAL;
        return digest_hex_parse(s + 7, ret);
}

static const char *digest_format(const char *prefix, const uint8_t d[static SHARD_BLOB_DIGEST_SIZE], char *buf) {
        static const char digits[] = "0123456789abcdef";
        char *p = stpcpy(buf, prefix);

        for (size_t i = 0; i < SHARD_BLOB_DIGEST_SIZE; i++) {
                *p++ = digits[d[i] >> 4];
                *p++ = digits[d[i] & 15];
        }
        *p = '\0';
        return buf;
}

const char *shard_blob_digest_to_string(const uint8_t d[static SHARD_BLOB_DIGEST_SIZE],
                                        char buf[static SHARD_BLOB_DIGEST_STRING_MAX]) {
        return digest_format("sha256:", d, buf);
}

const char *shard_blob_file_name(const uint8_t d[static SHARD_BLOB_DIGEST_SIZE],
                                 char buf[static SHARD_BLOB_FILE_NAME_MAX]) {
        return digest_format("sha256-", d, buf);
}

int shard_blob_file_name_parse(const char *name, uint8_t ret[static SHARD_BLOB_DIGEST_SIZE]) {
        if (!name || strncmp(name, "sha256-", 7) != 0)
                return -EINVAL;
        return digest_hex_parse(name + 7, ret);
}

int shard_blob_holders(const uint8_t d[static SHARD_BLOB_DIGEST_SIZE], char *const *members, size_t n_members,
                       unsigned r, const char *ret_holders[static SHARD_REPLICAS_MAX]) {
        char name[SHARD_BLOB_DIGEST_STRING_MAX];

        return shard_holders(shard_blob_digest_to_string(d, name), 0, members, n_members, r, ret_holders);
}
