/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shardd/shard-wire.c, the transfer protocol's batch bodies: the layout
 * byte for byte, round trips at the limits, and bodies that are truncated, flipped, or resealed
 * with a lie in them refused whole, decoded from exact-size copies so ASan sees any over-read. */
#include <inttypes.h>
#include <stddef.h>
#include <math.h>
#include <xxhash.h>

#include "shard-wire.h"
#include "unit-test.h"

/* A body as docs/shardd.md ("Wire format") lays it out, checksum left to reseal(): collection
 * "c", cursor (n1, shard 3, log id 0x0807060504030201, sequence 5), a put of "a" with version
 * (0x10, 0x20), dimension 1, 1.0f, text "t" and no metadata, and a delete of "b" at (1, 2). */
static const uint8_t golden[] = {
        'M', 'S', 'W', '1', 1,                          /* 0: magic, version */
        1, 0, 'c',                                      /* 5: collection */
        1,                                              /* 8: flags: cursor */
        2, 0, 'n', '1',                                 /* 9: source */
        3, 0, 0, 0,                                     /* 13: shard */
        1, 2, 3, 4, 5, 6, 7, 8,                         /* 17: log id */
        5, 0, 0, 0, 0, 0, 0, 0,                         /* 25: sequence */
        2, 0, 0, 0,                                     /* 33: count */
        0, 1, 0, 'a',                                   /* 37: put, id */
        0x10, 0, 0, 0, 0, 0, 0, 0,                      /* 41: hlc */
        0x20, 0, 0, 0, 0, 0, 0, 0,                      /* 49: node */
        1, 0, 0, 0,                                     /* 57: dimension */
        0, 0, 0x80, 0x3f,                               /* 61: 1.0f */
        1, 0, 0, 0, 't',                                /* 65: text */
        0, 0, 0, 0,                                     /* 70: no metadata */
        1, 1, 0, 'b',                                   /* 74: delete, id */
        1, 0, 0, 0, 0, 0, 0, 0,                         /* 78: hlc */
        2, 0, 0, 0, 0, 0, 0, 0,                         /* 86: node */
        0, 0, 0, 0, 0, 0, 0, 0,                         /* 94: checksum */
};

enum {
        AT_VERSION = 4,
        AT_COLLECTION = 7,
        AT_FLAGS = 8,
        AT_SOURCE = 9,
        AT_SHARD = 13,
        AT_COUNT = 33,
        AT_OP = 37,
        AT_ID = 38,
        AT_HLC = 41,
        AT_DIMENSION = 57,
        AT_FLOAT = 61,
        AT_TEXT = 65,
        AT_METADATA = 70,
        AT_DELETE_OP = 74,
        AT_DELETE_HLC = 78,
        AT_SUM = 94,
};

static const float one = 1.0f;

static const ShardChange golden_changes[] = {
        {
                .op = SHARD_OP_PUT,
                .id = "a",
                .version = { 0x10, 0x20 },
                .embedding = &one,
                .dimension = 1,
                .text = "t",
                .text_size = 1,
        },
        {
                .op = SHARD_OP_DELETE,
                .id = "b",
                .version = { 1, 2 },
        },
};

static const ShardSourceCursor golden_cursor = {
        .source = "n1",
        .shard = 3,
        .cursor = { .log_id = UINT64_C(0x0807060504030201), .seq = 5 },
};

static void put_le(uint8_t *p, uint64_t v, size_t n) {
        for (size_t i = 0; i < n; i++, v >>= 8)
                p[i] = (uint8_t) v;
}

/* Writes a correct checksum over body, so what decode refuses is the lie, not the damage. */
static void reseal(uint8_t *body, size_t size) {
        put_le(body + size - 8, XXH3_64bits(body, size - 8), 8);
}

/* Decodes the first size bytes of body from a copy of exactly that size (ASan: no over-read). */
static int decode_exact(const uint8_t *body, size_t size) {
        _cleanup_(shard_wire_batch_done) ShardWireBatch b = {};
        _cleanup_free_ uint8_t *copy = malloc(size ?: 1);

        ck_assert_ptr_nonnull(copy);
        if (size > 0)
                memcpy(copy, body, size);
        return shard_wire_batch_decode(copy, size, &b);
}

static uint8_t *encode(const char *collection, const ShardSourceCursor *cursor, const ShardChange *changes,
                       size_t n, size_t *ret_size) {
        uint8_t *body = NULL;

        ck_assert_int_eq(shard_wire_batch_encode(collection, cursor, changes, n, &body, ret_size), 0);
        ck_assert_ptr_nonnull(body);
        return body;
}

static bool inside(const void *p, const void *body, size_t size) {
        return (const uint8_t *) p >= (const uint8_t *) body && (const uint8_t *) p < (const uint8_t *) body + size;
}

static void assert_change_eq(const ShardChange *got, const ShardChange *want) {
        ck_assert_int_eq(got->op, want->op);
        ck_assert_str_eq(got->id, want->id);
        ck_assert(got->version.hlc == want->version.hlc && got->version.node == want->version.node);
        if (want->op == SHARD_OP_DELETE) {
                ck_assert_ptr_null(got->embedding);
                ck_assert_uint_eq(got->dimension, 0);
                ck_assert_ptr_null(got->text);
                ck_assert_ptr_null(got->metadata);
                return;
        }
        ck_assert_uint_eq(got->dimension, want->dimension);
        ck_assert_uint_eq((uintptr_t) got->embedding % _Alignof(float), 0);
        ck_assert_mem_eq(got->embedding, want->embedding, want->dimension * sizeof(float));
        ck_assert_uint_eq(got->text_size, want->text_size);
        ck_assert_uint_eq(got->metadata_size, want->metadata_size);
        if (want->text_size == 0)
                ck_assert_ptr_null(got->text);
        else {
                ck_assert_mem_eq(got->text, want->text, want->text_size);
                ck_assert_int_eq(got->text[want->text_size], '\0');
        }
        if (want->metadata_size == 0)
                ck_assert_ptr_null(got->metadata);
        else {
                ck_assert_mem_eq(got->metadata, want->metadata, want->metadata_size);
                ck_assert_int_eq(got->metadata[want->metadata_size], '\0');
        }
}

/* Encodes, checks the size against shard_wire_change_size(), frees the body, then checks that
 * the decoded batch (which must not point into the body) is what was encoded. */
static void assert_round_trip(const char *collection, const ShardSourceCursor *cursor, const ShardChange *changes,
                              size_t n) {
        _cleanup_(shard_wire_batch_done) ShardWireBatch b = {};
        size_t size, expected = SHARD_WIRE_OVERHEAD_MAX - SHARD_COLLECTION_NAME_MAX + strlen(collection);
        uint8_t *body = encode(collection, cursor, changes, n, &size);

        if (cursor)
                expected -= SHARD_SOURCE_MAX - strlen(cursor->source);
        else
                expected -= 2 + SHARD_SOURCE_MAX + 4 + 8 + 8;
        for (size_t i = 0; i < n; i++)
                expected += shard_wire_change_size(&changes[i]);
        ck_assert_uint_eq(size, expected);

        ck_assert_int_eq(shard_wire_batch_decode(body, size, &b), 0);
        ck_assert(!inside(b.collection, body, size));
        for (size_t i = 0; i < b.n_changes; i++)
                ck_assert(!inside(b.changes[i].id, body, size) && !inside(b.changes[i].embedding, body, size));
        free(body);

        ck_assert_str_eq(b.collection, collection);
        ck_assert_int_eq(b.has_cursor, !!cursor);
        if (cursor) {
                ck_assert_str_eq(b.cursor.source, cursor->source);
                ck_assert_uint_eq(b.cursor.shard, cursor->shard);
                ck_assert(b.cursor.cursor.log_id == cursor->cursor.log_id && b.cursor.cursor.seq == cursor->cursor.seq);
        }
        ck_assert_uint_eq(b.n_changes, n);
        for (size_t i = 0; i < n; i++)
                assert_change_eq(&b.changes[i], &changes[i]);
}

START_TEST(test_layout) {
        uint8_t want[sizeof(golden)];
        _cleanup_free_ uint8_t *body = NULL;
        size_t size;

        memcpy(want, golden, sizeof(want));
        reseal(want, sizeof(want));
        body = encode("c", &golden_cursor, golden_changes, ELEMENTSOF(golden_changes), &size);
        ck_assert_uint_eq(size, sizeof(want));
        ck_assert_mem_eq(body, want, sizeof(want));
        ck_assert_uint_eq(shard_wire_change_size(&golden_changes[0]), AT_DELETE_OP - AT_OP);
        ck_assert_uint_eq(shard_wire_change_size(&golden_changes[1]), AT_SUM - AT_DELETE_OP);
}
END_TEST

START_TEST(test_round_trip) {
        static const float v[4] = { 0.5f, -1.25f, 3.0f, 1e-7f };
        const ShardChange changes[] = {
                {
                        .op = SHARD_OP_PUT,
                        .id = "doc-1",
                        .version = { UINT64_C(0x0102030405060708), UINT64_C(0x1112131415161718) },
                        .embedding = v,
                        .dimension = 4,
                        .text = "some text",
                        .text_size = 9,
                        .metadata = "{\"k\": 1}",
                        .metadata_size = 8,
                },
                { .op = SHARD_OP_DELETE, .id = "gone", .version = { UINT64_MAX, 0 } },
                /* No text, no metadata; text with a NUL in it; metadata the store would refuse. */
                { .op = SHARD_OP_PUT, .id = "bare", .version = { 0, 1 }, .embedding = v, .dimension = 4 },
                {
                        .op = SHARD_OP_PUT,
                        .id = "nul",
                        .version = { 7, 7 },
                        .embedding = v + 1,
                        .dimension = 3,
                        .text = "a\0b",
                        .text_size = 3,
                        .metadata = "not json",
                        .metadata_size = 8,
                },
        };
        const ShardSourceCursor cursor = {
                .source = "node-7f3a",
                .shard = SHARD_COUNT_MAX - 1,
                .cursor = { .log_id = UINT64_MAX, .seq = 0 },
        };

        assert_round_trip("docs", NULL, changes, ELEMENTSOF(changes));
        assert_round_trip("docs", &cursor, changes, ELEMENTSOF(changes));
        assert_round_trip("docs.v2_x-y", &cursor, changes + 1, 1);
        /* A push that only moves the cursor on, and an empty write. */
        assert_round_trip("docs", &cursor, NULL, 0);
        assert_round_trip("docs", NULL, NULL, 0);
}
END_TEST

START_TEST(test_max_sizes) {
        _cleanup_free_ float *v = malloc(SHARD_DIMENSION_MAX * sizeof(float));
        _cleanup_free_ char *text = malloc(SHARD_TEXT_MAX), *metadata = malloc(SHARD_METADATA_MAX);
        _cleanup_free_ ShardChange *many = calloc(SHARD_BATCH_MAX + 1, sizeof(ShardChange));
        _cleanup_free_ uint8_t *body = NULL;
        char id[SHARD_ID_MAX + 1], name[SHARD_COLLECTION_NAME_MAX + 1], source[SHARD_SOURCE_MAX + 1];
        ShardSourceCursor cursor = { .source = source, .shard = 1, .cursor = { 1, 1 } };
        ShardChange put;
        size_t size;

        ck_assert(v && text && metadata && many);
        for (unsigned i = 0; i < SHARD_DIMENSION_MAX; i++)
                v[i] = (float) i - 4096.5f;
        for (size_t i = 0; i < SHARD_TEXT_MAX; i++)
                text[i] = (char) ('a' + i % 26);
        memset(metadata, ' ', SHARD_METADATA_MAX);
        memset(id, 'i', SHARD_ID_MAX);
        id[SHARD_ID_MAX] = '\0';
        memset(name, 'n', SHARD_COLLECTION_NAME_MAX);
        name[SHARD_COLLECTION_NAME_MAX] = '\0';
        memset(source, 's', SHARD_SOURCE_MAX);
        source[SHARD_SOURCE_MAX] = '\0';
        put = (ShardChange) {
                .op = SHARD_OP_PUT,
                .id = id,
                .version = { 1, 1 },
                .embedding = v,
                .dimension = SHARD_DIMENSION_MAX,
                .text = text,
                .text_size = SHARD_TEXT_MAX,
                .metadata = metadata,
                .metadata_size = SHARD_METADATA_MAX,
        };
        /* Every name and size at its limit: the overhead is exactly SHARD_WIRE_OVERHEAD_MAX. */
        assert_round_trip(name, &cursor, &put, 1);
        body = encode(name, &cursor, &put, 1, &size);
        ck_assert_uint_eq(size, SHARD_WIRE_OVERHEAD_MAX + shard_wire_change_size(&put));
        free(TAKE_PTR(body));

        for (size_t i = 0; i <= SHARD_BATCH_MAX; i++)
                many[i] = (ShardChange) { .op = SHARD_OP_DELETE, .id = "x", .version = { i + 1, 0 } };
        assert_round_trip("c", NULL, many, SHARD_BATCH_MAX);
        ck_assert_int_eq(shard_wire_batch_encode("c", NULL, many, SHARD_BATCH_MAX + 1, &body, &size), -E2BIG);
        ck_assert_ptr_null(body);
}
END_TEST

/* What encode refuses, with *ret and *ret_size untouched. */
static void assert_encode_refused(const char *collection, const ShardSourceCursor *cursor, const ShardChange *ch,
                                  int error) {
        /* The bad change second, after a good one. */
        ShardChange changes[] = { golden_changes[0], *ch };
        uint8_t *body = (uint8_t *) &error;
        size_t size = 12345;

        ck_assert_int_eq(shard_wire_batch_encode(collection, cursor, changes, 2, &body, &size), error);
        ck_assert(body == (uint8_t *) &error && size == 12345);
}

START_TEST(test_encode_refused) {
        static const float nan_v[2] = { 1.0f, NAN }, inf_v[2] = { INFINITY, 0.0f }, ninf_v[1] = { -INFINITY };
        _cleanup_free_ float *v = calloc(SHARD_DIMENSION_MAX + 1, sizeof(float));
        char long_id[SHARD_ID_MAX + 2], long_name[SHARD_COLLECTION_NAME_MAX + 2], long_source[SHARD_SOURCE_MAX + 2];
        const ShardChange good = golden_changes[0];
        ShardSourceCursor cursor = golden_cursor;
        ShardChange ch;

        ck_assert_ptr_nonnull(v);
        memset(long_id, 'i', sizeof(long_id) - 1);
        long_id[sizeof(long_id) - 1] = '\0';
        memset(long_name, 'n', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = '\0';
        memset(long_source, 's', sizeof(long_source) - 1);
        long_source[sizeof(long_source) - 1] = '\0';

        /* A control: the good change, collection and cursor as the helper passes them. */
        free(encode("c", &cursor, (ShardChange[]) { good, good }, 2, &(size_t) { 0 }));

        assert_encode_refused(NULL, NULL, &good, -EINVAL);
        assert_encode_refused("", NULL, &good, -EINVAL);
        assert_encode_refused(".hidden", NULL, &good, -EINVAL);
        assert_encode_refused("a/b", NULL, &good, -EINVAL);
        assert_encode_refused(long_name, NULL, &good, -EINVAL);

        cursor.source = NULL;
        assert_encode_refused("c", &cursor, &good, -EINVAL);
        cursor.source = "";
        assert_encode_refused("c", &cursor, &good, -EINVAL);
        cursor.source = long_source;
        assert_encode_refused("c", &cursor, &good, -E2BIG);
        cursor = golden_cursor;
        cursor.shard = SHARD_COUNT_MAX;
        assert_encode_refused("c", &cursor, &good, -EINVAL);

        ch = good, ch.id = NULL;
        assert_encode_refused("c", NULL, &ch, -EINVAL);
        ch = good, ch.id = "";
        assert_encode_refused("c", NULL, &ch, -EINVAL);
        ch = good, ch.id = long_id;
        assert_encode_refused("c", NULL, &ch, -E2BIG);
        ch = good, ch.op = (ShardOp) 7;
        assert_encode_refused("c", NULL, &ch, -EINVAL);
        ch = good, ch.version = (ShardVersion) {};
        assert_encode_refused("c", NULL, &ch, -EINVAL);
        ch = golden_changes[1], ch.version = (ShardVersion) {};
        assert_encode_refused("c", NULL, &ch, -EINVAL);

        ch = good, ch.dimension = 0;
        assert_encode_refused("c", NULL, &ch, -EINVAL);
        ch = good, ch.embedding = v, ch.dimension = SHARD_DIMENSION_MAX + 1;
        assert_encode_refused("c", NULL, &ch, -E2BIG);
        ch = good, ch.embedding = NULL;
        assert_encode_refused("c", NULL, &ch, -EINVAL);
        ch = good, ch.embedding = nan_v, ch.dimension = 2;
        assert_encode_refused("c", NULL, &ch, -EINVAL);
        ch = good, ch.embedding = inf_v, ch.dimension = 2;
        assert_encode_refused("c", NULL, &ch, -EINVAL);
        ch = good, ch.embedding = ninf_v, ch.dimension = 1;
        assert_encode_refused("c", NULL, &ch, -EINVAL);

        ch = good, ch.text = NULL, ch.text_size = 3;
        assert_encode_refused("c", NULL, &ch, -EINVAL);
        ch = good, ch.text_size = SHARD_TEXT_MAX + 1;
        assert_encode_refused("c", NULL, &ch, -E2BIG);
        ch = good, ch.metadata = NULL, ch.metadata_size = 2;
        assert_encode_refused("c", NULL, &ch, -EINVAL);
        ch = good, ch.metadata = "{}", ch.metadata_size = SHARD_METADATA_MAX + 1;
        assert_encode_refused("c", NULL, &ch, -E2BIG);
}
END_TEST

START_TEST(test_truncated) {
        _cleanup_free_ uint8_t *body = NULL, *longer = NULL;
        size_t size;

        body = encode("c", &golden_cursor, golden_changes, ELEMENTSOF(golden_changes), &size);
        ck_assert_int_eq(decode_exact(body, size), 0);
        for (size_t n = 0; n < size; n++)
                ck_assert_msg(decode_exact(body, n) == -EBADMSG, "prefix of %zu bytes accepted", n);
        /* Every prefix again with its checksum made right: the parser, not the sum, refuses it. */
        for (size_t n = 8; n < size; n++) {
                _cleanup_free_ uint8_t *copy = malloc(n);

                ck_assert_ptr_nonnull(copy);
                memcpy(copy, body, n);
                reseal(copy, n);
                ck_assert_msg(decode_exact(copy, n) == -EBADMSG, "resealed prefix of %zu bytes accepted", n);
        }

        /* A byte too many, before the checksum, sealed or not. */
        longer = malloc(size + 1);
        ck_assert_ptr_nonnull(longer);
        memcpy(longer, body, size - 8);
        longer[size - 8] = 0;
        reseal(longer, size + 1);
        ck_assert_int_eq(decode_exact(longer, size + 1), -EBADMSG);
        memcpy(longer, body, size);
        longer[size] = 0;
        ck_assert_int_eq(decode_exact(longer, size + 1), -EBADMSG);
}
END_TEST

START_TEST(test_bit_flips) {
        _cleanup_free_ uint8_t *body = NULL;
        size_t size;

        body = encode("c", &golden_cursor, golden_changes, ELEMENTSOF(golden_changes), &size);
        for (size_t bit = 0; bit < size * 8; bit++) {
                body[bit / 8] ^= (uint8_t) (1u << (bit % 8));
                ck_assert_msg(decode_exact(body, size) == -EBADMSG, "bit %zu accepted", bit);
                body[bit / 8] ^= (uint8_t) (1u << (bit % 8));
        }
        ck_assert_int_eq(decode_exact(body, size), 0);
}
END_TEST

/* golden with n bytes at offset replaced by the little-endian v, resealed: decodes as expected. */
static void assert_golden_with(size_t offset, uint64_t v, size_t n, int expected) {
        uint8_t body[sizeof(golden)];

        memcpy(body, golden, sizeof(body));
        put_le(body + offset, v, n);
        reseal(body, sizeof(body));
        ck_assert_msg(decode_exact(body, sizeof(body)) == expected, "%#" PRIx64 " at %zu: not %d", v, offset,
                      expected);
}

START_TEST(test_lies) {
        /* Controls: resealed golden decodes, and so does other text; so a refusal below is the lie's. */
        assert_golden_with(0, 'M', 1, 0);
        assert_golden_with(AT_TEXT + 4, 'u', 1, 0);

        /* Counts: one more than there is, one fewer (a change left over), the most there may be, huge. */
        assert_golden_with(AT_COUNT, 3, 4, -EBADMSG);
        assert_golden_with(AT_COUNT, 1, 4, -EBADMSG);
        assert_golden_with(AT_COUNT, SHARD_BATCH_MAX, 4, -EBADMSG);
        assert_golden_with(AT_COUNT, SHARD_BATCH_MAX + 1, 4, -EBADMSG);
        assert_golden_with(AT_COUNT, UINT32_MAX, 4, -EBADMSG);
        /* Lengths: zero, one more, over the limit, the most the field holds. */
        assert_golden_with(AT_COLLECTION - 2, 0, 2, -EBADMSG);
        assert_golden_with(AT_COLLECTION - 2, 2, 2, -EBADMSG);
        assert_golden_with(AT_COLLECTION - 2, UINT16_MAX, 2, -EBADMSG);
        assert_golden_with(AT_SOURCE, 0, 2, -EBADMSG);
        assert_golden_with(AT_SOURCE, 3, 2, -EBADMSG);
        assert_golden_with(AT_SOURCE, SHARD_SOURCE_MAX + 1, 2, -EBADMSG);
        assert_golden_with(AT_ID, 0, 2, -EBADMSG);
        assert_golden_with(AT_ID, 2, 2, -EBADMSG);
        assert_golden_with(AT_ID, SHARD_ID_MAX + 1, 2, -EBADMSG);
        assert_golden_with(AT_ID, UINT16_MAX, 2, -EBADMSG);
        assert_golden_with(AT_DIMENSION, 0, 4, -EBADMSG);
        assert_golden_with(AT_DIMENSION, 2, 4, -EBADMSG);
        assert_golden_with(AT_DIMENSION, SHARD_DIMENSION_MAX + 1, 4, -EBADMSG);
        assert_golden_with(AT_DIMENSION, UINT32_MAX, 4, -EBADMSG);
        assert_golden_with(AT_TEXT, 0, 4, -EBADMSG);
        assert_golden_with(AT_TEXT, 2, 4, -EBADMSG);
        assert_golden_with(AT_TEXT, SHARD_TEXT_MAX + 1, 4, -EBADMSG);
        assert_golden_with(AT_TEXT, UINT32_MAX, 4, -EBADMSG);
        assert_golden_with(AT_METADATA, 1, 4, -EBADMSG);
        assert_golden_with(AT_METADATA, SHARD_METADATA_MAX + 1, 4, -EBADMSG);
        assert_golden_with(AT_METADATA, UINT32_MAX, 4, -EBADMSG);

        /* Fields out of their range. */
        assert_golden_with(0, 'X', 1, -EBADMSG);
        assert_golden_with(AT_VERSION, 2, 1, -EBADMSG);
        assert_golden_with(AT_VERSION, 0, 1, -EBADMSG);
        assert_golden_with(AT_COLLECTION, '.', 1, -EBADMSG);
        assert_golden_with(AT_COLLECTION, '/', 1, -EBADMSG);
        assert_golden_with(AT_COLLECTION, 0, 1, -EBADMSG);
        assert_golden_with(AT_FLAGS, 3, 1, -EBADMSG);
        assert_golden_with(AT_FLAGS, 0x80, 1, -EBADMSG);
        assert_golden_with(AT_SOURCE + 2, 0, 1, -EBADMSG);
        assert_golden_with(AT_SHARD, SHARD_COUNT_MAX, 4, -EBADMSG);
        assert_golden_with(AT_OP, 2, 1, -EBADMSG);
        assert_golden_with(AT_DELETE_OP, 0xff, 1, -EBADMSG);
        assert_golden_with(AT_ID + 2, 0, 1, -EBADMSG);
        assert_golden_with(AT_HLC, 0, 8, 0);
        assert_golden_with(AT_DELETE_HLC, 0, 8, 0);
        {
                /* A zero version: hlc and node both 0. */
                uint8_t body[sizeof(golden)];

                memcpy(body, golden, sizeof(body));
                memset(body + AT_DELETE_HLC, 0, 16);
                reseal(body, sizeof(body));
                ck_assert_int_eq(decode_exact(body, sizeof(body)), -EBADMSG);
        }

        /* Floats: NaN, the infinities, a signalling NaN; the largest finite one and -0 pass. */
        assert_golden_with(AT_FLOAT, 0x7fc00000, 4, -EBADMSG);
        assert_golden_with(AT_FLOAT, 0x7f800000, 4, -EBADMSG);
        assert_golden_with(AT_FLOAT, 0xff800000, 4, -EBADMSG);
        assert_golden_with(AT_FLOAT, 0x7f800001, 4, -EBADMSG);
        assert_golden_with(AT_FLOAT, 0x7f7fffff, 4, 0);
        assert_golden_with(AT_FLOAT, 0x80000000, 4, 0);
}
END_TEST

/* A body written field by field, well-formed but for what a test puts past a limit: count equal
 * changes, each a put (dimension zero floats, text and metadata of their sizes) or a delete. */
typedef struct BodySpec {
        size_t collection;
        bool cursor;
        size_t source;
        size_t count;
        bool put;
        size_t id;
        size_t dimension;
        size_t text;
        size_t metadata;
} BodySpec;

static const BodySpec base_spec = {
        .collection = 1,
        .cursor = true,
        .source = 1,
        .count = 1,
        .put = true,
        .id = 1,
        .dimension = 1,
};

static uint8_t *append(uint8_t *p, uint64_t v, size_t n) {
        put_le(p, v, n);
        return p + n;
}

static uint8_t *append_filled(uint8_t *p, int c, size_t length_size, size_t n) {
        p = append(p, n, length_size);
        memset(p, c, n);
        return p + n;
}

static int decode_spec(const BodySpec *s) {
        size_t change = 1 + 2 + s->id + 16 + (s->put ? 4 + s->dimension * 4 + 4 + s->text + 4 + s->metadata : 0);
        size_t size = 5 + 2 + s->collection + 1 + (s->cursor ? 2 + s->source + 20 : 0) + 4 + s->count * change + 8;
        _cleanup_free_ uint8_t *body = malloc(size);
        uint8_t *p = body;

        ck_assert_ptr_nonnull(body);
        memcpy(p, golden, 5);
        p = append_filled(p + 5, 'c', 2, s->collection);
        p = append(p, s->cursor, 1);
        if (s->cursor) {
                p = append_filled(p, 's', 2, s->source);
                p = append(p, 1, 4);
                p = append(p, 1, 8);
                p = append(p, 1, 8);
        }
        p = append(p, s->count, 4);
        for (size_t i = 0; i < s->count; i++) {
                p = append(p, s->put ? 0 : 1, 1);
                p = append_filled(p, 'i', 2, s->id);
                p = append(p, 1, 8);
                p = append(p, 1, 8);
                if (s->put) {
                        p = append(p, s->dimension, 4);
                        memset(p, 0, s->dimension * 4);
                        p += s->dimension * 4;
                        p = append_filled(p, 't', 4, s->text);
                        p = append_filled(p, 'm', 4, s->metadata);
                }
        }
        ck_assert_uint_eq((size_t) (p - body), size - 8);
        reseal(body, size);
        return decode_exact(body, size);
}

/* Each limit: a body at it decodes, one past it (or empty where empty is wrong) is refused. */
START_TEST(test_decode_limits) {
        static const struct {
                size_t offset, at, max;
                bool zero_refused;
        } fields[] = {
                { offsetof(BodySpec, collection), SHARD_COLLECTION_NAME_MAX, UINT16_MAX, true },
                { offsetof(BodySpec, source), SHARD_SOURCE_MAX, UINT16_MAX, true },
                { offsetof(BodySpec, id), SHARD_ID_MAX, UINT16_MAX, true },
                { offsetof(BodySpec, dimension), SHARD_DIMENSION_MAX, SHARD_DIMENSION_MAX * 4, true },
                { offsetof(BodySpec, text), SHARD_TEXT_MAX, SHARD_TEXT_MAX * 2, false },
                { offsetof(BodySpec, metadata), SHARD_METADATA_MAX, SHARD_METADATA_MAX * 2, false },
        };
        BodySpec s = base_spec;

        ck_assert_int_eq(decode_spec(&s), 0);
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                size_t *field = (size_t *) ((uint8_t *) &s + fields[i].offset);

                *field = fields[i].at;
                ck_assert_msg(decode_spec(&s) == 0, "field %zu at its limit refused", i);
                *field = fields[i].at + 1;
                ck_assert_msg(decode_spec(&s) == -EBADMSG, "field %zu past its limit accepted", i);
                *field = fields[i].max;
                ck_assert_msg(decode_spec(&s) == -EBADMSG, "field %zu at %zu accepted", i, fields[i].max);
                *field = 0;
                ck_assert_msg(decode_spec(&s) == (fields[i].zero_refused ? -EBADMSG : 0), "field %zu empty", i);
                s = base_spec;
        }

        s.put = false;
        s.count = SHARD_BATCH_MAX;
        ck_assert_int_eq(decode_spec(&s), 0);
        s.count = SHARD_BATCH_MAX + 1;
        ck_assert_int_eq(decode_spec(&s), -EBADMSG);
        s.count = 0;
        ck_assert_int_eq(decode_spec(&s), 0);
        s = base_spec;
        s.cursor = false;
        ck_assert_int_eq(decode_spec(&s), 0);
}
END_TEST

/* Every byte of a body changed and resealed: refused, or decoded into a batch that encodes back
 * to exactly those bytes (the format has one spelling of each batch). */
START_TEST(test_resealed_mutations) {
        static const uint8_t xors[] = { 0x01, 0x02, 0x10, 0x80, 0xff };
        _cleanup_free_ uint8_t *body = NULL;
        size_t size, accepted = 0;

        body = encode("c", &golden_cursor, golden_changes, ELEMENTSOF(golden_changes), &size);
        for (size_t i = 0; i < size - 8; i++)
                for (size_t x = 0; x < ELEMENTSOF(xors); x++) {
                        _cleanup_(shard_wire_batch_done) ShardWireBatch b = {};
                        _cleanup_free_ uint8_t *again = NULL;
                        size_t again_size;
                        int r;

                        body[i] ^= xors[x];
                        reseal(body, size);
                        r = shard_wire_batch_decode(body, size, &b);
                        ck_assert_msg(r == 0 || r == -EBADMSG, "byte %zu ^ %#x: %d", i, xors[x], r);
                        if (r == 0) {
                                accepted++;
                                ck_assert_int_eq(shard_wire_batch_encode(b.collection, b.has_cursor ? &b.cursor : NULL,
                                                                         b.changes, b.n_changes, &again, &again_size), 0);
                                ck_assert_uint_eq(again_size, size);
                                ck_assert_mem_eq(again, body, size);
                        }
                        body[i] ^= xors[x];
                }
        /* Some changes are only other values (the text, the cursor, versions): the decoder took them. */
        ck_assert_uint_gt(accepted, 0);
}
END_TEST

/* Random bodies behind a valid magic, version and checksum: refused or decoded, never a crash or
 * an over-read (run under ASan). */
START_TEST(test_random_bodies) {
        uint64_t state = UINT64_C(0x9e3779b97f4a7c15);

        for (unsigned round = 0; round < 20000; round++) {
                uint8_t body[160];
                size_t size;
                int r;

                for (size_t i = 0; i < sizeof(body); i++) {
                        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
                        body[i] = (uint8_t) state;
                }
                /* Mostly small lengths, so the parser gets past the first field now and then. */
                for (size_t i = 0; i < sizeof(body); i++)
                        if (body[i] & 0x40)
                                body[i] &= 0x07;
                size = 13 + state % (sizeof(body) - 13);
                memcpy(body, golden, 9);
                reseal(body, size);
                r = decode_exact(body, size);
                ck_assert(r == 0 || r == -EBADMSG);
        }
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shard-wire");
        TCase *format = tcase_create("format"), *damage = tcase_create("damage");

        tcase_add_test(format, test_layout);
        tcase_add_test(format, test_round_trip);
        tcase_add_test(format, test_max_sizes);
        tcase_add_test(format, test_encode_refused);
        tcase_set_timeout(format, 60);
        suite_add_tcase(s, format);

        tcase_add_test(damage, test_truncated);
        tcase_add_test(damage, test_bit_flips);
        tcase_add_test(damage, test_lies);
        tcase_add_test(damage, test_decode_limits);
        tcase_add_test(damage, test_resealed_mutations);
        tcase_add_test(damage, test_random_bodies);
        tcase_set_timeout(damage, 60);
        suite_add_tcase(s, damage);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
