/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shardd/shard-value.c, the store's bytes without LMDB: keys that sort
 * as LMDB needs (big-endian collection, shard, sequence), values that round-trip, and frames that
 * are refused whole when truncated, extended, of another kind or with any single bit flipped. */
#include "shard-value.h"
#include "unit-test.h"

#define DIM 4

static const float embedding[DIM] = { 0.5f, -1.25f, 3.0f, 1e-7f };

static ShardChange put_change(const char *id) {
        return (ShardChange) {
                .op = SHARD_OP_PUT,
                .id = id,
                .version = { .hlc = UINT64_C(0x0102030405060708), .node = UINT64_C(0x1112131415161718) },
                .embedding = embedding,
                .dimension = DIM,
                .text = "some text",
                .text_size = 9,
                .metadata = "{\"k\": 1}",
                .metadata_size = 8,
        };
}

/* A framed value of a change's document: the store's reserve-then-encode, on the heap. */
static uint8_t *doc_value(const ShardChange *ch, size_t *ret_size) {
        size_t size = SHARD_FRAME_HEADER + shard_doc_payload_size(ch);
        uint8_t *v = malloc(size);

        ck_assert_ptr_nonnull(v);
        shard_doc_encode(v, ch);
        *ret_size = size;
        return v;
}

/* A framed value around payload, as the store's db_put_frame() makes it. */
static size_t frame(uint8_t *value, uint8_t kind, uint16_t flags, const void *payload, size_t payload_size) {
        memcpy(value + SHARD_FRAME_HEADER, payload, payload_size);
        shard_frame_seal(value, kind, flags, payload_size);
        return SHARD_FRAME_HEADER + payload_size;
}

/* Every shorter prefix, one byte more and every single flipped bit of value are refused. */
static void assert_damage_refused(const uint8_t *value, size_t size, uint8_t kind) {
        _cleanup_free_ uint8_t *copy = malloc(size + 1);
        uint16_t flags;
        ShardReader r;

        ck_assert_ptr_nonnull(copy);
        memcpy(copy, value, size);
        ck_assert_int_eq(shard_frame_open(copy, size, kind, &flags, &r), 0);
        for (size_t n = 0; n < size; n++)
                ck_assert_int_eq(shard_frame_open(copy, n, kind, &flags, &r), -EBADMSG);
        copy[size] = 0;
        ck_assert_int_eq(shard_frame_open(copy, size + 1, kind, &flags, &r), -EBADMSG);
        for (size_t bit = 0; bit < size * 8; bit++) {
                copy[bit / 8] ^= (uint8_t) (1u << (bit % 8));
                ck_assert_msg(shard_frame_open(copy, size, kind, &flags, &r) == -EBADMSG, "bit %zu accepted", bit);
                copy[bit / 8] ^= (uint8_t) (1u << (bit % 8));
        }
        ck_assert_int_eq(shard_frame_open(copy, size, kind == SHARD_VALUE_DOC ? SHARD_VALUE_LOG : SHARD_VALUE_DOC,
                                          &flags, &r), -EBADMSG);
}

START_TEST(test_numbers) {
        uint8_t buf[14];
        ShardWriter w = { buf };
        ShardReader r = { buf, sizeof(buf) };
        uint16_t a;
        uint32_t b;
        uint64_t c;

        shard_write_be16(&w, 0x0102);
        shard_write_be32(&w, 0x03040506);
        shard_write_be64(&w, UINT64_C(0x0708090a0b0c0d0e));
        ck_assert_ptr_eq(w.p, buf + sizeof(buf));
        for (size_t i = 0; i < sizeof(buf); i++)
                ck_assert_uint_eq(buf[i], i + 1);
        ck_assert(shard_read_be16(&r, &a) && shard_read_be32(&r, &b) && shard_read_be64(&r, &c));
        ck_assert_uint_eq(a, 0x0102);
        ck_assert_uint_eq(b, 0x03040506);
        ck_assert(c == UINT64_C(0x0708090a0b0c0d0e));
        ck_assert_uint_eq(r.left, 0);
        ck_assert(!shard_read_be16(&r, &a));
        ck_assert_ptr_null(shard_read_bytes(&r, 1));
        ck_assert_ptr_nonnull(shard_read_bytes(&r, 0));
}
END_TEST

START_TEST(test_key_layout) {
        uint8_t k[SHARD_LOG_KEY_SIZE], d[SHARD_DOC_KEY_MAX];
        static const uint8_t log_key[] = { 1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0, 1, 0 };
        uint32_t cid;
        unsigned shard;

        ck_assert_uint_eq(shard_key_collection(k, 0x01020304), 4);
        ck_assert_uint_eq(shard_key_shard(k, 0x01020304, 0x0506), SHARD_KEY_SIZE);
        ck_assert_uint_eq(shard_key_log(k, 0x01020304, 0x0506, 256), sizeof(log_key));
        ck_assert_mem_eq(k, log_key, sizeof(log_key));
        ck_assert_uint_eq(shard_key_shard_with(d, 0x01020304, 0x0506, "doc-1", 5), SHARD_KEY_SIZE + 5);
        ck_assert_mem_eq(d, log_key, SHARD_KEY_SIZE);
        ck_assert_mem_eq(d + SHARD_KEY_SIZE, "doc-1", 5);

        shard_key_parse_shard(d, SHARD_KEY_SIZE + 5, &cid, &shard);
        ck_assert_uint_eq(cid, 0x01020304);
        ck_assert_uint_eq(shard, 0x0506);

        ck_assert(shard_key_has_prefix(d, SHARD_KEY_SIZE + 5, k, SHARD_KEY_SIZE));
        ck_assert(shard_key_has_prefix(d, SHARD_KEY_SIZE, k, SHARD_KEY_SIZE));
        ck_assert(!shard_key_has_prefix(d, SHARD_KEY_SIZE - 1, k, SHARD_KEY_SIZE));
        k[5] ^= 1;
        ck_assert(!shard_key_has_prefix(d, SHARD_KEY_SIZE + 5, k, SHARD_KEY_SIZE));
}
END_TEST

/* -1, 0, 1 as LMDB's default comparison orders two keys: bytes, then the shorter first. */
static int key_cmp(const void *a, size_t a_size, const void *b, size_t b_size) {
        int c = memcmp(a, b, MIN(a_size, b_size));

        if (c == 0)
                return (a_size > b_size) - (a_size < b_size);
        return (c > 0) - (c < 0);
}

/* LMDB compares keys as bytes: that order must be the numeric one, with the collection first, then
 * the shard, then the sequence, and one collection's keys all apart from the next one's. */
START_TEST(test_key_order) {
        static const uint32_t cids[] = { 1, 2, 255, 256, 65536, UINT32_MAX };
        static const unsigned shards[] = { 0, 1, 255, 256, 4095, 65535 };
        static const uint64_t seqs[] = { 0, 1, 255, 256, 65536, UINT64_C(1) << 32, UINT64_MAX - 1, UINT64_MAX };

        for (size_t i = 0; i < ELEMENTSOF(cids); i++)
                for (size_t j = 0; j < ELEMENTSOF(shards); j++)
                        for (size_t x = 0; x < ELEMENTSOF(seqs); x++) {
                                uint8_t a[SHARD_LOG_KEY_SIZE], b[SHARD_LOG_KEY_SIZE];

                                shard_key_log(a, cids[i], shards[j], seqs[x]);
                                for (size_t i2 = 0; i2 < ELEMENTSOF(cids); i2++)
                                        for (size_t j2 = 0; j2 < ELEMENTSOF(shards); j2++)
                                                for (size_t x2 = 0; x2 < ELEMENTSOF(seqs); x2++) {
                                                        int want = i != i2 ? (i > i2) - (i < i2) :
                                                                   j != j2 ? (j > j2) - (j < j2) :
                                                                             (x > x2) - (x < x2);

                                                        shard_key_log(b, cids[i2], shards[j2], seqs[x2]);
                                                        ck_assert_int_eq(key_cmp(a, sizeof(a), b, sizeof(b)), want);
                                                }
                        }

        /* A shard's documents sort by id, after the shard's own key (the prefix a scan seeks) and
         * before the next shard's, and a collection's prefix comes before all of its keys. */
        uint8_t c7[SHARD_COLLECTION_KEY_SIZE], s0[SHARD_KEY_SIZE], s1[SHARD_KEY_SIZE];
        uint8_t d1[SHARD_DOC_KEY_MAX], d2[SHARD_DOC_KEY_MAX], d3[SHARD_DOC_KEY_MAX];
        size_t n1 = shard_key_shard_with(d1, 7, 3, "a", 1), n2 = shard_key_shard_with(d2, 7, 3, "ab", 2),
               n3 = shard_key_shard_with(d3, 7, 3, "b", 1);

        shard_key_collection(c7, 7);
        shard_key_shard(s0, 7, 3);
        shard_key_shard(s1, 7, 4);
        ck_assert_int_eq(key_cmp(c7, sizeof(c7), s0, sizeof(s0)), -1);
        ck_assert(shard_key_has_prefix(s0, sizeof(s0), c7, sizeof(c7)));
        ck_assert_int_eq(key_cmp(s0, sizeof(s0), d1, n1), -1);
        ck_assert_int_eq(key_cmp(d1, n1, d2, n2), -1);
        ck_assert_int_eq(key_cmp(d2, n2, d3, n3), -1);
        ck_assert_int_eq(key_cmp(d3, n3, s1, sizeof(s1)), -1);
}
END_TEST

START_TEST(test_frame) {
        uint8_t value[SHARD_FRAME_HEADER + 5];
        uint16_t flags = 0;
        ShardReader r;

        ck_assert_uint_eq(frame(value, SHARD_VALUE_META, 0x8001, "hello", 5), sizeof(value));
        ck_assert_uint_eq(value[0], SHARD_VALUE_META);
        ck_assert_uint_eq(value[1], 1);                                 /* format */
        ck_assert_uint_eq(value[2], 0x80);
        ck_assert_uint_eq(value[3], 0x01);
        ck_assert_mem_eq(value + 4, ((uint8_t[]) { 0, 0, 0, 5 }), 4);   /* payload length */
        ck_assert_int_eq(shard_frame_open(value, sizeof(value), SHARD_VALUE_META, &flags, &r), 0);
        ck_assert_uint_eq(flags, 0x8001);
        ck_assert_uint_eq(r.left, 5);
        ck_assert_mem_eq(r.p, "hello", 5);
        assert_damage_refused(value, sizeof(value), SHARD_VALUE_META);

        /* An empty payload is a value too. */
        ck_assert_uint_eq(frame(value, SHARD_VALUE_CURSOR, 0, "", 0), SHARD_FRAME_HEADER);
        ck_assert_int_eq(shard_frame_open(value, SHARD_FRAME_HEADER, SHARD_VALUE_CURSOR, &flags, &r), 0);
        ck_assert_uint_eq(r.left, 0);
        assert_damage_refused(value, SHARD_FRAME_HEADER, SHARD_VALUE_CURSOR);
}
END_TEST

START_TEST(test_doc) {
        ShardChange ch = put_change("doc-1"), del = { .op = SHARD_OP_DELETE, .id = "doc-2", .version = { 9, 10 } };
        uint8_t key[SHARD_DOC_KEY_MAX];
        size_t key_size = shard_key_shard_with(key, 42, 17, ch.id, strlen(ch.id)), size;
        _cleanup_free_ uint8_t *v = doc_value(&ch, &size);
        char id[SHARD_ID_MAX + 1];
        float e[DIM];
        ShardDoc d;

        ck_assert_int_eq(shard_doc_decode(key, key_size, v, size, DIM, id, &d), 0);
        ck_assert_str_eq(d.id, "doc-1");
        ck_assert_uint_eq(d.shard, 17);
        ck_assert(d.version.hlc == ch.version.hlc && d.version.node == ch.version.node);
        ck_assert(!d.deleted);
        ck_assert_uint_eq(d.dimension, DIM);
        shard_doc_embedding(&d, e);
        ck_assert_mem_eq(e, embedding, sizeof(e));
        ck_assert_uint_eq(d.text_size, 9);
        ck_assert_mem_eq(d.text, "some text", 9);
        ck_assert_uint_eq(d.metadata_size, 8);
        ck_assert_mem_eq(d.metadata, "{\"k\": 1}", 8);
        assert_damage_refused(v, size, SHARD_VALUE_DOC);

        /* Checked against the collection and the key. */
        ck_assert_int_eq(shard_doc_decode(key, key_size, v, size, DIM + 1, id, &d), -EBADMSG);
        ck_assert_int_eq(shard_doc_decode(key, SHARD_KEY_SIZE, v, size, DIM, id, &d), -EBADMSG);
        key[SHARD_KEY_SIZE + 1] = '\0';
        ck_assert_int_eq(shard_doc_decode(key, key_size, v, size, DIM, id, &d), -EBADMSG);

        /* No text, no metadata: metadata reads as none. */
        ch.text = ch.metadata = NULL;
        ch.text_size = ch.metadata_size = 0;
        free(v);
        v = doc_value(&ch, &size);
        key_size = shard_key_shard_with(key, 42, 17, ch.id, strlen(ch.id));
        ck_assert_int_eq(shard_doc_decode(key, key_size, v, size, DIM, id, &d), 0);
        ck_assert_uint_eq(d.text_size, 0);
        ck_assert_ptr_null(d.metadata);

        /* A tombstone: no embedding, whatever the collection's dimension. */
        free(v);
        v = doc_value(&del, &size);
        ck_assert_uint_eq(size, SHARD_FRAME_HEADER + 28);
        key_size = shard_key_shard_with(key, 42, 3, del.id, strlen(del.id));
        ck_assert_int_eq(shard_doc_decode(key, key_size, v, size, DIM, id, &d), 0);
        ck_assert(d.deleted);
        ck_assert_str_eq(d.id, "doc-2");
        ck_assert_uint_eq(d.dimension, 0);
        ck_assert(d.version.hlc == 9 && d.version.node == 10);
        assert_damage_refused(v, size, SHARD_VALUE_DOC);
}
END_TEST

START_TEST(test_log) {
        ShardChange put = put_change("doc-1"), del = { .op = SHARD_OP_DELETE, .id = "doc-2", .version = { 9, 10 } };
        const ShardChange *changes[] = { &put, &del };
        char id[SHARD_ID_MAX + 1];

        for (size_t i = 0; i < ELEMENTSOF(changes); i++) {
                const ShardChange *ch = changes[i];
                size_t size = SHARD_FRAME_HEADER + shard_log_payload_size(ch);
                _cleanup_free_ uint8_t *v = malloc(size);
                uint8_t key[SHARD_LOG_KEY_SIZE];
                ShardLogEntry e;

                ck_assert_ptr_nonnull(v);
                shard_log_encode(v, ch);
                shard_key_log(key, 1, 2, UINT64_C(1) << 40);
                ck_assert_int_eq(shard_log_decode(key, sizeof(key), v, size, id, &e), 0);
                ck_assert(e.seq == UINT64_C(1) << 40);
                ck_assert_int_eq(e.op, ch->op);
                ck_assert_str_eq(e.id, ch->id);
                ck_assert(e.version.hlc == ch->version.hlc && e.version.node == ch->version.node);
                ck_assert_int_eq(shard_log_decode(key, sizeof(key) - 1, v, size, id, &e), -EBADMSG);
                assert_damage_refused(v, size, SHARD_VALUE_LOG);
        }
}
END_TEST

START_TEST(test_state) {
        ShardInfo info = {
                .head = { .log_id = UINT64_C(0xdeadbeef01), .seq = 1000 },
                .floor_seq = 10,
                .n_live = 700,
                .n_tombstones = 20,
                .bytes = 123456,
                .digest = { .hi = UINT64_C(0x0123456789abcdef), .lo = UINT64_C(0xfedcba9876543210) },
        }, got;
        uint8_t key[SHARD_KEY_SIZE], payload[SHARD_STATE_SIZE], v[SHARD_FRAME_HEADER + SHARD_STATE_SIZE];
        uint16_t flags;

        shard_key_shard(key, 5, 300);
        shard_state_encode(payload, &info);
        frame(v, SHARD_VALUE_STATE, SHARD_STATE_DROPPING, payload, sizeof(payload));
        ck_assert_int_eq(shard_state_decode(key, sizeof(key), v, sizeof(v), &got, &flags), 0);
        ck_assert_uint_eq(flags, SHARD_STATE_DROPPING);
        ck_assert_uint_eq(got.shard, 300);
        ck_assert(got.head.log_id == info.head.log_id && got.head.seq == info.head.seq);
        ck_assert(got.floor_seq == info.floor_seq && got.n_live == info.n_live);
        ck_assert(got.n_tombstones == info.n_tombstones && got.bytes == info.bytes);
        ck_assert(shard_digest_equal(&got.digest, &info.digest));
        assert_damage_refused(v, sizeof(v), SHARD_VALUE_STATE);

        /* Sealed, but not a state: an unknown flag, a floor above the head, no log id, a wrong key. */
        frame(v, SHARD_VALUE_STATE, 2, payload, sizeof(payload));
        ck_assert_int_eq(shard_state_decode(key, sizeof(key), v, sizeof(v), &got, &flags), -EBADMSG);
        info.floor_seq = 1001;
        shard_state_encode(payload, &info);
        frame(v, SHARD_VALUE_STATE, 0, payload, sizeof(payload));
        ck_assert_int_eq(shard_state_decode(key, sizeof(key), v, sizeof(v), &got, &flags), -EBADMSG);
        info.floor_seq = 10;
        info.head.log_id = 0;
        shard_state_encode(payload, &info);
        frame(v, SHARD_VALUE_STATE, 0, payload, sizeof(payload));
        ck_assert_int_eq(shard_state_decode(key, sizeof(key), v, sizeof(v), &got, &flags), -EBADMSG);
        info.head.log_id = 1;
        shard_state_encode(payload, &info);
        frame(v, SHARD_VALUE_STATE, 0, payload, sizeof(payload));
        ck_assert_int_eq(shard_state_decode(key, sizeof(key), v, sizeof(v), &got, &flags), 0);
        ck_assert_int_eq(shard_state_decode(key, sizeof(key) - 1, v, sizeof(v), &got, &flags), -EBADMSG);
}
END_TEST

START_TEST(test_cursor) {
        ShardCursor c = { .log_id = UINT64_C(0x1122334455667788), .seq = 42 }, got;
        uint8_t payload[SHARD_CURSOR_SIZE], v[SHARD_FRAME_HEADER + SHARD_CURSOR_SIZE];

        shard_cursor_encode(payload, &c);
        frame(v, SHARD_VALUE_CURSOR, 0, payload, sizeof(payload));
        ck_assert_int_eq(shard_cursor_decode(v, sizeof(v), &got), 0);
        ck_assert(got.log_id == c.log_id && got.seq == c.seq);
        assert_damage_refused(v, sizeof(v), SHARD_VALUE_CURSOR);
        frame(v, SHARD_VALUE_CURSOR, 0, payload, sizeof(payload) - 1);
        ck_assert_int_eq(shard_cursor_decode(v, sizeof(v) - 1, &got), -EBADMSG);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shard-value");
        TCase *keys = tcase_create("keys"), *values = tcase_create("values");

        tcase_add_test(keys, test_numbers);
        tcase_add_test(keys, test_key_layout);
        tcase_add_test(keys, test_key_order);
        suite_add_tcase(s, keys);

        tcase_add_test(values, test_frame);
        tcase_add_test(values, test_doc);
        tcase_add_test(values, test_log);
        tcase_add_test(values, test_state);
        tcase_add_test(values, test_cursor);
        suite_add_tcase(s, values);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
