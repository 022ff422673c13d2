/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The transfer protocol's batch bodies (shard-wire.h, docs/shardd.md "Wire format"): every length
 * is checked against what is left before a byte behind it is read or anything is allocated. */
#include <assert.h>
#include <math.h>
#include <stdalign.h>
#include <xxhash.h>

#include "shard-value.h"
#include "shard-wire.h"

#define MAGIC_SIZE (sizeof(SHARD_WIRE_MAGIC) - 1)
#define CHECKSUM_SIZE 8
#define BODY_FIXED (MAGIC_SIZE + 1 + 2 + 1 + 4 + CHECKSUM_SIZE) /* magic, version, name length, flags, count, sum */
#define CURSOR_FIXED (2 + 4 + 8 + 8)                            /* source length, shard, log id, sequence */
#define CHANGE_FIXED (1 + 2 + 8 + 8)                            /* op, id length, hlc, node */
#define PUT_FIXED (4 + 4 + 4)                                   /* dimension, text and metadata lengths */

#define FLAG_CURSOR (1u << 0)

/* Sent: never renumber. */
enum {
        WIRE_OP_PUT = 0,
        WIRE_OP_DELETE = 1,
};

static_assert(SHARD_WIRE_OVERHEAD_MAX ==
              BODY_FIXED + SHARD_COLLECTION_NAME_MAX + CURSOR_FIXED + SHARD_SOURCE_MAX, "overhead");
/* The floats of a decoded batch follow its changes in one allocation. */
static_assert(alignof(ShardChange) >= alignof(float), "alignment");

/* ---- Numbers: little-endian whatever the host, on shard-value.h's writer and reader ---- */

static void write_le(ShardWriter *w, uint64_t v, size_t n) {
        for (size_t i = 0; i < n; i++, v >>= 8)
                *w->p++ = (uint8_t) v;
}

static bool read_le(ShardReader *r, size_t n, uint64_t *ret) {
        const uint8_t *p = shard_read_bytes(r, n);
        uint64_t v = 0;

        if (!p)
                return false;
        for (size_t i = n; i > 0; i--)
                v = v << 8 | p[i - 1];
        *ret = v;
        return true;
}

/* Names (collection, source, id) have a u16 length, text and metadata a u32 one (0: none). */
#define NAME_LENGTH 2
#define BLOB_LENGTH 4

static void write_sized(ShardWriter *w, size_t length_size, const char *s, size_t n) {
        write_le(w, n, length_size);
        shard_write_bytes(w, s, n);
}

/* A length of length_size bytes, at most max, then that many bytes as a view. */
static bool read_sized(ShardReader *r, size_t length_size, size_t max, const char **ret, size_t *ret_size) {
        const char *s;
        uint64_t n;

        if (!read_le(r, length_size, &n) || n > max || !(s = shard_read_bytes(r, n)))
                return false;
        *ret = s;
        *ret_size = n;
        return true;
}

/* A name is 1..max bytes without NUL. Sets *ret also when false (callers then drop it). */
static bool read_name(ShardReader *r, size_t max, const char **ret, size_t *ret_size) {
        return read_sized(r, NAME_LENGTH, max, ret, ret_size) && *ret_size > 0 && !memchr(*ret, 0, *ret_size);
}

/* ---- Encoding ---- */

size_t shard_wire_change_size(const ShardChange *c) {
        size_t size = CHANGE_FIXED + strlen(c->id);

        if (c->op == SHARD_OP_PUT)
                size += PUT_FIXED + (size_t) c->dimension * sizeof(float) + c->text_size + c->metadata_size;
        return size;
}

/* What the decoder would refuse of a change, in shard_change_validate()'s words. */
static int change_check(const ShardChange *ch) {
        ShardChange shape = *ch;

        if (ch->op == SHARD_OP_PUT) {
                if (ch->dimension == 0 || (!ch->metadata && ch->metadata_size > 0))
                        return -EINVAL;
                if (ch->dimension > SHARD_DIMENSION_MAX || ch->metadata_size > SHARD_METADATA_MAX)
                        return -E2BIG;
                /* Metadata travels as bytes; whether they are a JSON object is the receiving
                 * store's to say, so that everything encoded here also decodes. */
                shape.metadata_size = 0;
        }
        /* The wire does not know the collection: the change's own dimension stands in for its. */
        return shard_change_validate(&(ShardCollection) { .dimension = ch->dimension }, &shape);
}

static void write_change(ShardWriter *w, const ShardChange *ch) {
        bool put = ch->op == SHARD_OP_PUT;

        write_le(w, put ? WIRE_OP_PUT : WIRE_OP_DELETE, 1);
        write_sized(w, NAME_LENGTH, ch->id, strlen(ch->id));
        write_le(w, ch->version.hlc, 8);
        write_le(w, ch->version.node, 8);
        if (!put)
                return;
        write_le(w, ch->dimension, 4);
        for (unsigned i = 0; i < ch->dimension; i++) {
                uint32_t u;

                memcpy(&u, &ch->embedding[i], sizeof(u));
                write_le(w, u, sizeof(u));
        }
        write_sized(w, BLOB_LENGTH, ch->text, ch->text_size);
        write_sized(w, BLOB_LENGTH, ch->metadata, ch->metadata_size);
}

int shard_wire_batch_encode(const char *collection, const ShardSourceCursor *cursor, const ShardChange *changes,
                            size_t n_changes, uint8_t **ret, size_t *ret_size) {
        size_t collection_size, source_size = 0, size;
        ShardWriter w;
        uint8_t *body;
        int r;

        if (!collection || !shard_collection_name_valid(collection))
                return -EINVAL;
        collection_size = strlen(collection);
        size = BODY_FIXED + collection_size;
        if (cursor) {
                if (isempty(cursor->source) || cursor->shard >= SHARD_COUNT_MAX)
                        return -EINVAL;
                source_size = strnlen(cursor->source, SHARD_SOURCE_MAX + 1);
                if (source_size > SHARD_SOURCE_MAX)
                        return -E2BIG;
                size += CURSOR_FIXED + source_size;
        }
        if (n_changes > SHARD_BATCH_MAX)
                return -E2BIG;
        for (size_t i = 0; i < n_changes; i++) {
                r = change_check(&changes[i]);
                if (r < 0)
                        return r;
                /* Only a 32-bit size_t can overflow: 65536 changes of up to 1.1 MiB. */
                if (__builtin_add_overflow(size, shard_wire_change_size(&changes[i]), &size))
                        return -E2BIG;
        }

        body = malloc(size);
        if (!body)
                return -ENOMEM;
        w = (ShardWriter) { body };
        shard_write_bytes(&w, SHARD_WIRE_MAGIC, MAGIC_SIZE);
        write_le(&w, SHARD_WIRE_VERSION, 1);
        write_sized(&w, NAME_LENGTH, collection, collection_size);
        write_le(&w, cursor ? FLAG_CURSOR : 0, 1);
        if (cursor) {
                write_sized(&w, NAME_LENGTH, cursor->source, source_size);
                write_le(&w, cursor->shard, 4);
                write_le(&w, cursor->cursor.log_id, 8);
                write_le(&w, cursor->cursor.seq, 8);
        }
        write_le(&w, n_changes, 4);
        for (size_t i = 0; i < n_changes; i++)
                write_change(&w, &changes[i]);
        write_le(&w, XXH3_64bits(body, size - CHECKSUM_SIZE), CHECKSUM_SIZE);

        *ret = body;
        *ret_size = size;
        return 0;
}

/* ---- Decoding ---- */

/* What comes before the changes, as views into the body. */
typedef struct WireHead {
        const char *collection;
        size_t collection_size;
        bool has_cursor;
        const char *source;
        size_t source_size;
        unsigned shard;
        ShardCursor cursor;
        size_t n_changes;
} WireHead;

/* A change as it stands in the body: id, text and metadata not NUL-terminated, embedding
 * unaligned little-endian float32 (a ShardDoc's, see shard_doc_embedding()). */
typedef struct WireChange {
        ShardOp op;
        const char *id;
        size_t id_size;
        ShardVersion version;
        const void *embedding;
        unsigned dimension;
        const char *text;
        size_t text_size;
        const char *metadata;
        size_t metadata_size;
} WireChange;

static bool read_head(ShardReader *r, WireHead *ret) {
        const void *magic = shard_read_bytes(r, MAGIC_SIZE);
        char name[SHARD_COLLECTION_NAME_MAX + 1];
        uint64_t version, flags, shard = 0, n;
        WireHead h = {};

        if (!magic || memcmp(magic, SHARD_WIRE_MAGIC, MAGIC_SIZE) != 0 || !read_le(r, 1, &version) ||
            version != SHARD_WIRE_VERSION || !read_name(r, SHARD_COLLECTION_NAME_MAX, &h.collection, &h.collection_size) ||
            !read_le(r, 1, &flags) || (flags & ~(uint64_t) FLAG_CURSOR))
                return false;
        memcpy(name, h.collection, h.collection_size);
        name[h.collection_size] = '\0';
        if (!shard_collection_name_valid(name))
                return false;
        h.has_cursor = flags & FLAG_CURSOR;
        if (h.has_cursor &&
            (!read_name(r, SHARD_SOURCE_MAX, &h.source, &h.source_size) || !read_le(r, 4, &shard) ||
             shard >= SHARD_COUNT_MAX || !read_le(r, 8, &h.cursor.log_id) || !read_le(r, 8, &h.cursor.seq)))
                return false;
        h.shard = shard;
        if (!read_le(r, 4, &n) || n > SHARD_BATCH_MAX)
                return false;
        h.n_changes = n;
        *ret = h;
        return true;
}

static bool read_change(ShardReader *r, WireChange *ret) {
        uint64_t op, dimension = 0;
        WireChange c = {};

        if (!read_le(r, 1, &op) || op > WIRE_OP_DELETE || !read_name(r, SHARD_ID_MAX, &c.id, &c.id_size) ||
            !read_le(r, 8, &c.version.hlc) || !read_le(r, 8, &c.version.node) ||
            (c.version.hlc == 0 && c.version.node == 0))
                return false;
        c.op = op == WIRE_OP_PUT ? SHARD_OP_PUT : SHARD_OP_DELETE;
        if (c.op == SHARD_OP_PUT &&
            (!read_le(r, 4, &dimension) || dimension == 0 || dimension > SHARD_DIMENSION_MAX ||
             !(c.embedding = shard_read_bytes(r, dimension * sizeof(float))) ||
             !read_sized(r, BLOB_LENGTH, SHARD_TEXT_MAX, &c.text, &c.text_size) ||
             !read_sized(r, BLOB_LENGTH, SHARD_METADATA_MAX, &c.metadata, &c.metadata_size)))
                return false;
        c.dimension = dimension;
        *ret = c;
        return true;
}

/* Copies n bytes to *p, NUL-terminated, and moves *p past them. */
static char *copy_string(char **p, const char *s, size_t n) {
        char *t = *p;

        memcpy(t, s, n);
        t[n] = '\0';
        *p += n + 1;
        return t;
}

int shard_wire_batch_decode(const void *data, size_t size, ShardWireBatch *ret) {
        _cleanup_free_ void *storage = NULL;
        ShardReader r = { data, size }, rest;
        size_t n_floats = 0, n_chars;
        ShardWireBatch b = {};
        uint64_t sum;
        WireHead h;
        WireChange c;
        float *floats;
        char *chars;

        /* The storage below is at most about 6 times the body: bounded so its size cannot overflow. */
        if (size > SIZE_MAX / 8)
                return -ENOMEM;
        /* The checksum first: nothing of a damaged body is believed. */
        if (size < CHECKSUM_SIZE)
                return -EBADMSG;
        r.left -= CHECKSUM_SIZE;
        rest = (ShardReader) { r.p + r.left, CHECKSUM_SIZE };
        if (!read_le(&rest, CHECKSUM_SIZE, &sum) || sum != XXH3_64bits(data, r.left) || !read_head(&r, &h))
                return -EBADMSG;

        /* Checks every change and sizes the storage before anything is allocated: a count or
         * length that lies runs out of bytes here. The copy below reads only what this checked. */
        n_chars = h.collection_size + 1 + h.source_size + 1;
        rest = r;
        for (size_t i = 0; i < h.n_changes; i++) {
                if (!read_change(&rest, &c))
                        return -EBADMSG;
                n_floats += c.dimension;
                n_chars += c.id_size + 1 + c.text_size + 1 + c.metadata_size + 1;
        }
        if (rest.left != 0)
                return -EBADMSG;

        storage = malloc(h.n_changes * sizeof(ShardChange) + n_floats * sizeof(float) + n_chars);
        if (!storage)
                return -ENOMEM;
        b.changes = storage;
        floats = (float *) (b.changes + h.n_changes);
        chars = (char *) (floats + n_floats);
        b.collection = copy_string(&chars, h.collection, h.collection_size);
        if (h.has_cursor) {
                b.has_cursor = true;
                b.cursor = (ShardSourceCursor) {
                        .source = copy_string(&chars, h.source, h.source_size),
                        .shard = h.shard,
                        .cursor = h.cursor,
                };
        }
        for (size_t i = 0; i < h.n_changes; i++) {
                (void) read_change(&r, &c);
                b.changes[i] = (ShardChange) {
                        .op = c.op,
                        .id = copy_string(&chars, c.id, c.id_size),
                        .version = c.version,
                        .text = c.text_size > 0 ? copy_string(&chars, c.text, c.text_size) : NULL,
                        .text_size = c.text_size,
                        .metadata = c.metadata_size > 0 ? copy_string(&chars, c.metadata, c.metadata_size) : NULL,
                        .metadata_size = c.metadata_size,
                };
                if (c.op != SHARD_OP_PUT)
                        continue;
                shard_doc_embedding(&(ShardDoc) { .embedding = c.embedding, .dimension = c.dimension }, floats);
                for (unsigned j = 0; j < c.dimension; j++)
                        if (!isfinite(floats[j]))
                                return -EBADMSG;
                b.changes[i].embedding = floats;
                b.changes[i].dimension = c.dimension;
                floats += c.dimension;
        }
        b.n_changes = h.n_changes;
        b.storage = TAKE_PTR(storage);
        *ret = b;
        return 0;
}

void shard_wire_batch_done(ShardWireBatch *b) {
        free(b->storage);
        *b = (ShardWireBatch) {};
}
