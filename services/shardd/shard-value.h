/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The bytes of the shard store (docs/shard-store.md, "On disk"): big-endian keys, the checked
 * 16-byte frame around every value, and the payloads of documents, log entries, shard states and
 * cursors. Pure: no LMDB, no I/O; shard-store.c keeps these bytes in its transactions. */
#pragma once

#include <endian.h>

#include "shard-store.h"

/* ---- Numbers: big-endian, so LMDB's byte order of a key is its numeric order ---- */

/* Writes at p, which the caller sized. */
typedef struct ShardWriter {
        uint8_t *p;
} ShardWriter;

static inline void shard_write_bytes(ShardWriter *w, const void *data, size_t n) {
        if (n > 0)
                memcpy(w->p, data, n);
        w->p += n;
}

/* shard_write_be16(), shard_write_be32(), shard_write_be64(). */
#define SHARD_DEFINE_WRITE_BE(bits)                                                     \
        static inline void shard_write_be##bits(ShardWriter *w, uint##bits##_t v) {     \
                v = htobe##bits(v);                                                     \
                shard_write_bytes(w, &v, sizeof(v));                                    \
        }
SHARD_DEFINE_WRITE_BE(16)
SHARD_DEFINE_WRITE_BE(32)
SHARD_DEFINE_WRITE_BE(64)

/* Reads the left bytes at p. */
typedef struct ShardReader {
        const uint8_t *p;
        size_t left;
} ShardReader;

/* NULL when fewer than n bytes are left. */
static inline const void *shard_read_bytes(ShardReader *r, size_t n) {
        const void *p = r->p;

        if (n > r->left)
                return NULL;
        r->p += n;
        r->left -= n;
        return p;
}

/* shard_read_be16(), shard_read_be32(), shard_read_be64(): false when too few bytes are left. */
#define SHARD_DEFINE_READ_BE(bits)                                                      \
        static inline bool shard_read_be##bits(ShardReader *r, uint##bits##_t *ret) {   \
                const void *p = shard_read_bytes(r, sizeof(*ret));                      \
                                                                                        \
                if (!p)                                                                 \
                        return false;                                                   \
                memcpy(ret, p, sizeof(*ret));                                           \
                *ret = be##bits##toh(*ret);                                             \
                return true;                                                            \
        }
SHARD_DEFINE_READ_BE(16)
SHARD_DEFINE_READ_BE(32)
SHARD_DEFINE_READ_BE(64)

#define SHARD_VERSION_SIZE 16

/* hlc, then node. */
static inline void shard_write_version(ShardWriter *w, const ShardVersion *v) {
        shard_write_be64(w, v->hlc);
        shard_write_be64(w, v->node);
}

static inline bool shard_read_version(ShardReader *r, ShardVersion *ret) {
        return shard_read_be64(r, &ret->hlc) && shard_read_be64(r, &ret->node);
}

/* ---- Keys: collection number be32, shard be16, then an id, a sequence be64 or a source ---- */

#define SHARD_COLLECTION_KEY_SIZE 4
#define SHARD_KEY_SIZE (SHARD_COLLECTION_KEY_SIZE + 2)
#define SHARD_DOC_KEY_MAX (SHARD_KEY_SIZE + SHARD_ID_MAX)
#define SHARD_LOG_KEY_SIZE (SHARD_KEY_SIZE + 8)
#define SHARD_CURSOR_KEY_MAX (SHARD_KEY_SIZE + SHARD_SOURCE_MAX)

/* Each writes a key (or the prefix of the keys of a collection or of a shard) to buf and returns
 * its size. */
size_t shard_key_collection(uint8_t buf[static SHARD_COLLECTION_KEY_SIZE], uint32_t cid);
size_t shard_key_shard(uint8_t buf[static SHARD_KEY_SIZE], uint32_t cid, unsigned shard);
/* The shard key followed by suffix (an id or a source). */
size_t shard_key_shard_with(uint8_t *buf, uint32_t cid, unsigned shard, const char *suffix, size_t suffix_size);
size_t shard_key_log(uint8_t buf[static SHARD_LOG_KEY_SIZE], uint32_t cid, unsigned shard, uint64_t seq);

bool shard_key_has_prefix(const void *key, size_t key_size, const void *prefix, size_t prefix_size);
/* The collection number and shard a key starts with; key_size >= SHARD_KEY_SIZE (callers check). */
void shard_key_parse_shard(const void *key, size_t key_size, uint32_t *ret_cid, unsigned *ret_shard);

/* ---- Values: a frame, then the payload ----
 * kind u8, format u8, flags be16, payload length be32, XXH3-64 of the payload seeded with the
 * first 8 bytes (as be64). The value is exactly SHARD_FRAME_HEADER + length bytes. */

#define SHARD_FRAME_HEADER 16

/* Stored: never renumber. */
enum {
        SHARD_VALUE_DOC = 1,
        SHARD_VALUE_LOG,
        SHARD_VALUE_STATE,
        SHARD_VALUE_CURSOR,
        SHARD_VALUE_META,
        SHARD_VALUE_COLLECTION,
};

/* Writes the header of value, whose payload_size bytes of payload are in place already. */
void shard_frame_seal(uint8_t *value, uint8_t kind, uint16_t flags, size_t payload_size);
/* Checks the frame of a stored value of size bytes (its kind, format, length and checksum) and
 * sets up a reader over its payload. -EBADMSG. */
int shard_frame_open(const void *value, size_t size, uint8_t kind, uint16_t *ret_flags, ShardReader *ret);

/* The values of SHARD_VALUE_DOC and SHARD_VALUE_LOG: flag 1 is a tombstone, or a delete. */
#define SHARD_DOC_DELETED (1u << 0)

/* A document's or tombstone's payload size, and its value (a frame of SHARD_FRAME_HEADER + that
 * size, written and sealed in place, so it can go straight into space the store reserved). */
size_t shard_doc_payload_size(const ShardChange *ch);
void shard_doc_encode(uint8_t *value, const ShardChange *ch);
/* The document under key as a view into value; its id is copied to id, NUL-terminated. Everything
 * is checked: frame, lengths, limits, the collection's dimension. -EBADMSG. */
int shard_doc_decode(const void *key, size_t key_size, const void *value, size_t value_size, unsigned dimension,
                     char id[static SHARD_ID_MAX + 1], ShardDoc *ret);

/* A log entry: the change's version and id. */
size_t shard_log_payload_size(const ShardChange *ch);
void shard_log_encode(uint8_t *value, const ShardChange *ch);
/* The entry under key (a shard_key_log()); its id is copied to id, NUL-terminated. -EBADMSG. */
int shard_log_decode(const void *key, size_t key_size, const void *value, size_t value_size,
                     char id[static SHARD_ID_MAX + 1], ShardLogEntry *ret);

/* A shard's state: log id, last sequence, floor, live, tombstones, bytes, digest. Flag 1: the
 * shard is being dropped. */
#define SHARD_STATE_DROPPING (1u << 0)
#define SHARD_STATE_SIZE (6 * 8 + 16)

void shard_state_encode(uint8_t payload[static SHARD_STATE_SIZE], const ShardInfo *info);
/* The state under key (a shard_key_shard()). -EBADMSG, also for a floor above the head and a
 * zero log id. */
int shard_state_decode(const void *key, size_t key_size, const void *value, size_t value_size,
                       ShardInfo *ret, uint16_t *ret_flags);

/* A cursor: log id, sequence. */
#define SHARD_CURSOR_SIZE 16

void shard_cursor_encode(uint8_t payload[static SHARD_CURSOR_SIZE], const ShardCursor *c);
int shard_cursor_decode(const void *value, size_t value_size, ShardCursor *ret);
