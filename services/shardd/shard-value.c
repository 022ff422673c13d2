/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The store's keys and framed values (shard-value.h, docs/shard-store.md): every value is checked
 * here before the store uses a byte of it, so a flipped bit is -EBADMSG, never a bad answer. */
#include <xxhash.h>

#include "shard-value.h"

#define FRAME_FORMAT 1

#define DOC_FIXED (8 + 8 + 4 + 4 + 4)   /* hlc, node, dimension, text and metadata sizes */
#define LOG_FIXED (8 + 8)               /* hlc, node; the id follows */

/* ---- Keys ---- */

size_t shard_key_collection(uint8_t buf[static SHARD_COLLECTION_KEY_SIZE], uint32_t cid) {
        ShardWriter w = { buf };

        shard_write_be32(&w, cid);
        return SHARD_COLLECTION_KEY_SIZE;
}

size_t shard_key_shard(uint8_t buf[static SHARD_KEY_SIZE], uint32_t cid, unsigned shard) {
        ShardWriter w = { buf + shard_key_collection(buf, cid) };

        shard_write_be16(&w, (uint16_t) shard);
        return SHARD_KEY_SIZE;
}

size_t shard_key_shard_with(uint8_t *buf, uint32_t cid, unsigned shard, const char *suffix, size_t suffix_size) {
        shard_key_shard(buf, cid, shard);
        memcpy(buf + SHARD_KEY_SIZE, suffix, suffix_size);
        return SHARD_KEY_SIZE + suffix_size;
}

size_t shard_key_log(uint8_t buf[static SHARD_LOG_KEY_SIZE], uint32_t cid, unsigned shard, uint64_t seq) {
        ShardWriter w = { buf + shard_key_shard(buf, cid, shard) };

        shard_write_be64(&w, seq);
        return SHARD_LOG_KEY_SIZE;
}

bool shard_key_has_prefix(const void *key, size_t key_size, const void *prefix, size_t prefix_size) {
        return key_size >= prefix_size && memcmp(key, prefix, prefix_size) == 0;
}

void shard_key_parse_shard(const void *key, size_t key_size, uint32_t *ret_cid, unsigned *ret_shard) {
        ShardReader r = { key, key_size };
        uint16_t shard = 0;

        *ret_cid = 0;
        (void) shard_read_be32(&r, ret_cid);
        (void) shard_read_be16(&r, &shard);
        *ret_shard = shard;
}

/* ---- Frames ---- */

static uint64_t frame_checksum(const uint8_t *value, size_t payload_size) {
        uint64_t head;

        memcpy(&head, value, sizeof(head));
        return XXH3_64bits_withSeed(value + SHARD_FRAME_HEADER, payload_size, be64toh(head));
}

void shard_frame_seal(uint8_t *value, uint8_t kind, uint16_t flags, size_t payload_size) {
        ShardWriter w = { value };

        shard_write_bytes(&w, &kind, 1);
        shard_write_bytes(&w, &(uint8_t) { FRAME_FORMAT }, 1);
        shard_write_be16(&w, flags);
        shard_write_be32(&w, (uint32_t) payload_size);
        shard_write_be64(&w, frame_checksum(value, payload_size));
}

int shard_frame_open(const void *value, size_t size, uint8_t kind, uint16_t *ret_flags, ShardReader *ret) {
        ShardReader r = { value, size };
        const uint8_t *head = shard_read_bytes(&r, 2);
        uint16_t flags;
        uint32_t payload_size;
        uint64_t sum;

        if (!head || head[0] != kind || head[1] != FRAME_FORMAT || !shard_read_be16(&r, &flags) ||
            !shard_read_be32(&r, &payload_size) || !shard_read_be64(&r, &sum) || payload_size != r.left ||
            sum != frame_checksum(value, payload_size))
                return -EBADMSG;
        *ret_flags = flags;
        *ret = r;
        return 0;
}

/* ---- Documents ---- */

static void write_floats_le(ShardWriter *w, const float *v, unsigned n) {
#if __BYTE_ORDER == __LITTLE_ENDIAN
        shard_write_bytes(w, v, n * sizeof(float));
#else
        for (unsigned i = 0; i < n; i++) {
                uint32_t u;

                memcpy(&u, &v[i], sizeof(u));
                u = htole32(u);
                shard_write_bytes(w, &u, sizeof(u));
        }
#endif
}

size_t shard_doc_payload_size(const ShardChange *ch) {
        if (ch->op == SHARD_OP_DELETE)
                return DOC_FIXED;
        return DOC_FIXED + (size_t) ch->dimension * sizeof(float) + ch->text_size + ch->metadata_size;
}

void shard_doc_encode(uint8_t *value, const ShardChange *ch) {
        bool put = ch->op == SHARD_OP_PUT;
        ShardWriter w = { value + SHARD_FRAME_HEADER };

        shard_write_version(&w, &ch->version);
        shard_write_be32(&w, put ? ch->dimension : 0);
        shard_write_be32(&w, put ? (uint32_t) ch->text_size : 0);
        shard_write_be32(&w, put ? (uint32_t) ch->metadata_size : 0);
        if (put) {
                write_floats_le(&w, ch->embedding, ch->dimension);
                shard_write_bytes(&w, ch->text, ch->text_size);
                shard_write_bytes(&w, ch->metadata, ch->metadata_size);
        }
        shard_frame_seal(value, SHARD_VALUE_DOC, put ? 0 : SHARD_DOC_DELETED, shard_doc_payload_size(ch));
}

int shard_doc_decode(const void *key, size_t key_size, const void *value, size_t value_size, unsigned dimension,
                     char id[static SHARD_ID_MAX + 1], ShardDoc *ret) {
        uint32_t cid, dim, text_size, metadata_size;
        size_t id_size = key_size - SHARD_KEY_SIZE;
        ShardDoc d = {};
        uint16_t flags;
        ShardReader r;

        if (key_size <= SHARD_KEY_SIZE || id_size > SHARD_ID_MAX ||
            memchr((const uint8_t *) key + SHARD_KEY_SIZE, 0, id_size))
                return -EBADMSG;
        shard_key_parse_shard(key, key_size, &cid, &d.shard);
        memcpy(id, (const uint8_t *) key + SHARD_KEY_SIZE, id_size);
        id[id_size] = '\0';
        d.id = id;

        if (shard_frame_open(value, value_size, SHARD_VALUE_DOC, &flags, &r) < 0 || (flags & ~SHARD_DOC_DELETED) ||
            !shard_read_version(&r, &d.version) || !shard_read_be32(&r, &dim) ||
            !shard_read_be32(&r, &text_size) || !shard_read_be32(&r, &metadata_size))
                return -EBADMSG;
        d.deleted = flags & SHARD_DOC_DELETED;
        if (d.deleted ? dim != 0 || text_size != 0 || metadata_size != 0 :
                        dim != dimension || text_size > SHARD_TEXT_MAX || metadata_size > SHARD_METADATA_MAX)
                return -EBADMSG;
        d.dimension = dim;
        d.text_size = text_size;
        d.metadata_size = metadata_size;
        d.embedding = shard_read_bytes(&r, (size_t) dim * sizeof(float));
        d.text = shard_read_bytes(&r, text_size);
        d.metadata = shard_read_bytes(&r, metadata_size);
        if (!d.embedding || !d.text || !d.metadata || r.left != 0)
                return -EBADMSG;
        if (metadata_size == 0)
                d.metadata = NULL;
        *ret = d;
        return 0;
}

/* ---- Log entries ---- */

size_t shard_log_payload_size(const ShardChange *ch) {
        return LOG_FIXED + strlen(ch->id);
}

void shard_log_encode(uint8_t *value, const ShardChange *ch) {
        ShardWriter w = { value + SHARD_FRAME_HEADER };

        shard_write_version(&w, &ch->version);
        shard_write_bytes(&w, ch->id, strlen(ch->id));
        shard_frame_seal(value, SHARD_VALUE_LOG, ch->op == SHARD_OP_DELETE ? SHARD_DOC_DELETED : 0,
                         shard_log_payload_size(ch));
}

int shard_log_decode(const void *key, size_t key_size, const void *value, size_t value_size,
                     char id[static SHARD_ID_MAX + 1], ShardLogEntry *ret) {
        ShardLogEntry e = { .id = id };
        uint16_t flags;
        ShardReader r, rk = { (const uint8_t *) key + SHARD_KEY_SIZE, key_size - SHARD_KEY_SIZE };

        if (key_size != SHARD_LOG_KEY_SIZE || !shard_read_be64(&rk, &e.seq) ||
            shard_frame_open(value, value_size, SHARD_VALUE_LOG, &flags, &r) < 0 ||
            (flags & ~SHARD_DOC_DELETED) || !shard_read_version(&r, &e.version) || r.left == 0 ||
            r.left > SHARD_ID_MAX || memchr(r.p, 0, r.left))
                return -EBADMSG;
        memcpy(id, r.p, r.left);
        id[r.left] = '\0';
        e.op = flags & SHARD_DOC_DELETED ? SHARD_OP_DELETE : SHARD_OP_PUT;
        *ret = e;
        return 0;
}

/* ---- Shard states and cursors ---- */

void shard_state_encode(uint8_t payload[static SHARD_STATE_SIZE], const ShardInfo *info) {
        ShardWriter w = { payload };

        shard_write_be64(&w, info->head.log_id);
        shard_write_be64(&w, info->head.seq);
        shard_write_be64(&w, info->floor_seq);
        shard_write_be64(&w, info->n_live);
        shard_write_be64(&w, info->n_tombstones);
        shard_write_be64(&w, info->bytes);
        shard_write_be64(&w, info->digest.hi);
        shard_write_be64(&w, info->digest.lo);
}

int shard_state_decode(const void *key, size_t key_size, const void *value, size_t value_size,
                       ShardInfo *ret, uint16_t *ret_flags) {
        ShardInfo i = {};
        uint16_t flags;
        uint32_t cid;
        ShardReader r;

        if (key_size != SHARD_KEY_SIZE || shard_frame_open(value, value_size, SHARD_VALUE_STATE, &flags, &r) < 0 ||
            (flags & ~SHARD_STATE_DROPPING) || r.left != SHARD_STATE_SIZE)
                return -EBADMSG;
        shard_key_parse_shard(key, key_size, &cid, &i.shard);
        (void) (shard_read_be64(&r, &i.head.log_id) && shard_read_be64(&r, &i.head.seq) &&
                shard_read_be64(&r, &i.floor_seq) && shard_read_be64(&r, &i.n_live) &&
                shard_read_be64(&r, &i.n_tombstones) && shard_read_be64(&r, &i.bytes) &&
                shard_read_be64(&r, &i.digest.hi) && shard_read_be64(&r, &i.digest.lo));
        if (i.floor_seq > i.head.seq || i.head.log_id == 0)
                return -EBADMSG;
        *ret = i;
        *ret_flags = flags;
        return 0;
}

void shard_cursor_encode(uint8_t payload[static SHARD_CURSOR_SIZE], const ShardCursor *c) {
        ShardWriter w = { payload };

        shard_write_be64(&w, c->log_id);
        shard_write_be64(&w, c->seq);
}

int shard_cursor_decode(const void *value, size_t value_size, ShardCursor *ret) {
        ShardCursor c;
        uint16_t flags;
        ShardReader r;

        if (shard_frame_open(value, value_size, SHARD_VALUE_CURSOR, &flags, &r) < 0 || r.left != SHARD_CURSOR_SIZE ||
            !shard_read_be64(&r, &c.log_id) || !shard_read_be64(&r, &c.seq))
                return -EBADMSG;
        *ret = c;
        return 0;
}
