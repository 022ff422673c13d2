/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shardd/shard-store.c and its pure helpers (shard-version.c,
 * shard-digest.c), in a temporary directory: round trips, last writer wins with tombstones, the
 * catch-up log and its -ESTALE, digests that match recomputation and agree across arrival orders,
 * reopening, corrupt values caught, limits, drops, purges and a map that grows. */
#include <fcntl.h>
#include <ftw.h>
#include <lmdb.h>
#include <math.h>
#include <stdio.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "shard-store.h"
#include "unit-test.h"

#define DIM 8
#define NODE_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define NODE_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static char dir[64];
static char path_a[96];
static char path_b[96];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void setup(void) {
        snprintf(dir, sizeof(dir), "/tmp/test-shard-store-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(path_a, sizeof(path_a), "%s/a", dir);
        snprintf(path_b, sizeof(path_b), "%s/b", dir);
}

static void teardown(void) {
        (void) nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static ShardStore *open_store(const char *path, const ShardStoreConfig *config) {
        ShardStore *s = NULL;

        ck_assert_int_eq(shard_store_open(path, config, &s), 0);
        ck_assert_ptr_nonnull(s);
        return s;
}

static void create(ShardStore *s, const char *name, unsigned n_shards) {
        ShardCollection c = {
                .name = (char *) name,
                .dimension = DIM,
                .metric = SHARD_METRIC_COSINE,
                .model = (char *) "nomic-embed-text",
                .n_shards = n_shards,
                .replicas = 2,
                .created_ms = 1700000000000,
        };

        ck_assert_int_eq(shard_store_collection_create(s, &c), 0);
}

static ShardVersion version(uint64_t ms, const char *node) {
        return (ShardVersion) { .hlc = ms << SHARD_HLC_COUNTER_BITS, .node = shard_version_node(node) };
}

/* A change that owns its strings, so tests can keep lists of them. */
typedef struct Change {
        ShardChange ch;
        char id[32];
        char text[64];
        char metadata[64];
        float embedding[DIM];
} Change;

static void change_put(Change *c, const char *id, ShardVersion v, const char *text) {
        *c = (Change) {};
        snprintf(c->id, sizeof(c->id), "%s", id);
        snprintf(c->text, sizeof(c->text), "%s", text);
        snprintf(c->metadata, sizeof(c->metadata), "{\"v\": %llu}", (unsigned long long) v.hlc);
        for (unsigned i = 0; i < DIM; i++)
                c->embedding[i] = (float) (strlen(text) + i) / 7.0f;
        c->ch = (ShardChange) {
                .op = SHARD_OP_PUT,
                .id = c->id,
                .version = v,
                .embedding = c->embedding,
                .dimension = DIM,
                .text = c->text,
                .text_size = strlen(c->text),
                .metadata = c->metadata,
                .metadata_size = strlen(c->metadata),
        };
}

static void change_delete(Change *c, const char *id, ShardVersion v) {
        *c = (Change) {};
        snprintf(c->id, sizeof(c->id), "%s", id);
        c->ch = (ShardChange) { .op = SHARD_OP_DELETE, .id = c->id, .version = v };
}

/* Applies one change; returns whether it took effect. */
static bool apply(ShardStore *s, const char *collection, const Change *c) {
        bool applied = false;
        int r = shard_store_apply(s, collection, &c->ch, 1, NULL, &applied);

        ck_assert_int_ge(r, 0);
        ck_assert_int_eq(r, applied);
        return applied;
}

static bool put(ShardStore *s, const char *collection, const char *id, ShardVersion v, const char *text) {
        Change c;

        change_put(&c, id, v, text);
        return apply(s, collection, &c);
}

static bool delete(ShardStore *s, const char *collection, const char *id, ShardVersion v) {
        Change c;

        change_delete(&c, id, v);
        return apply(s, collection, &c);
}

/* The text of a live document, or NULL. */
static char *text_of(ShardStore *s, const char *collection, const char *id) {
        _cleanup_free_ ShardDoc *d = NULL;
        int r = shard_store_get(s, collection, id, 0, &d);

        if (r == -ENOENT)
                return NULL;
        ck_assert_int_eq(r, 0);
        return strdup(d->text);
}

/* What shard_store_get() says of id, the copy freed. */
static int get_rc(ShardStore *s, const char *collection, const char *id, unsigned flags) {
        _cleanup_free_ ShardDoc *d = NULL;

        return shard_store_get(s, collection, id, flags, &d);
}

static void assert_text(ShardStore *s, const char *collection, const char *id, const char *text) {
        _cleanup_free_ char *t = text_of(s, collection, id);

        if (!text)
                ck_assert_ptr_null(t);
        else
                ck_assert_str_eq(strempty(t), text);
}

/* Every entry of a collection (tombstones too) as one line each, in shard and id order. */
typedef struct Dump {
        char *text;
        size_t size;
        FILE *f;
} Dump;

static int dump_doc(const ShardDoc *d, void *userdata) {
        Dump *dump = userdata;
        float e[DIM] = {};

        if (!d->deleted)
                shard_doc_embedding(d, e);
        fprintf(dump->f, "%u %s %llx/%llx %d %.*s %.*s %g %g\n", d->shard, d->id,
                (unsigned long long) d->version.hlc, (unsigned long long) d->version.node, d->deleted,
                (int) d->text_size, strempty(d->text), (int) d->metadata_size, strempty(d->metadata),
                (double) e[0], (double) e[DIM - 1]);
        return 0;
}

static char *dump(ShardStore *s, const char *collection, unsigned n_shards) {
        Dump d = {};

        d.f = open_memstream(&d.text, &d.size);
        ck_assert_ptr_nonnull(d.f);
        for (unsigned shard = 0; shard < n_shards; shard++) {
                int r = shard_store_foreach_doc(s, collection, shard, NULL, SHARD_READ_TOMBSTONES, dump_doc, &d);

                ck_assert_int_eq(r, 0);
        }
        fclose(d.f);
        return d.text;
}

/* Every stored shard's incremental digest and counts equal a recomputation from its documents. */
static void assert_digests_verified(ShardStore *s, const char *collection, unsigned n_shards) {
        for (unsigned shard = 0; shard < n_shards; shard++) {
                ShardInfo info;
                ShardDigest d;
                uint64_t entries;
                int r = shard_store_shard_info(s, collection, shard, &info);

                if (r == -ENOENT)
                        continue;
                ck_assert_int_eq(r, 0);
                ck_assert_int_eq(shard_store_digest_compute(s, collection, shard, &d, &entries), 0);
                ck_assert(shard_digest_equal(&d, &info.digest));
                ck_assert_uint_eq(entries, info.n_live + info.n_tombstones);
        }
}

START_TEST(test_clock) {
        ShardClock a, b;
        ShardVersion v, w, prev = {};

        shard_clock_init(&a, NODE_A);
        shard_clock_init(&b, NODE_B);

        v = shard_clock_tick(&a, 1000);
        ck_assert_uint_eq(shard_hlc_ms(v.hlc), 1000);
        ck_assert_uint_eq(v.node, shard_version_node(NODE_A));
        /* The wall clock goes backwards: still newer. */
        prev = v;
        for (uint64_t now = 999; now > 900; now--) {
                v = shard_clock_tick(&a, now);
                ck_assert(shard_version_newer(&v, &prev));
                prev = v;
        }
        ck_assert_uint_eq(shard_hlc_ms(v.hlc), 1000);
        /* More than 2^16 writes in one millisecond carry into the milliseconds, still monotonic. */
        for (unsigned i = 0; i < 70000; i++) {
                v = shard_clock_tick(&a, 1000);
                ck_assert(shard_version_newer(&v, &prev));
                prev = v;
        }
        ck_assert_uint_eq(shard_hlc_ms(v.hlc), 1001);
        /* The wall clock moves on: the counter starts over. */
        v = shard_clock_tick(&a, 5000);
        ck_assert_uint_eq(v.hlc, (uint64_t) 5000 << SHARD_HLC_COUNTER_BITS);

        /* Two nodes at the same instant: ordered by the tie-break, never equal. */
        v = shard_clock_tick(&b, 5000);
        ck_assert_uint_eq(v.hlc, (uint64_t) 5000 << SHARD_HLC_COUNTER_BITS);
        w = (ShardVersion) { .hlc = v.hlc, .node = shard_version_node(NODE_A) };
        ck_assert_int_ne(shard_version_cmp(&v, &w), 0);
        ck_assert_int_eq(shard_version_cmp(&v, &w), -shard_version_cmp(&w, &v));
        ck_assert_int_eq(shard_version_cmp(&v, &v), 0);

        /* What another node wrote makes our next write newer... */
        v = (ShardVersion) { .hlc = (uint64_t) 60000 << SHARD_HLC_COUNTER_BITS | 7, .node = 1 };
        ck_assert_int_eq(shard_clock_observe(&a, &v, 6000), 0);
        w = shard_clock_tick(&a, 6000);
        ck_assert(shard_version_newer(&w, &v));
        /* ...unless it is from a clock far ahead of ours. */
        v.hlc = (uint64_t) (6000 + SHARD_CLOCK_AHEAD_MAX_MS + 1) << SHARD_HLC_COUNTER_BITS;
        b.last = 0;
        ck_assert_int_eq(shard_clock_observe(&b, &v, 6000), -ERANGE);
        w = shard_clock_tick(&b, 6000);
        ck_assert_uint_eq(shard_hlc_ms(w.hlc), 6000);
}
END_TEST

START_TEST(test_digest_pure) {
        ShardVersion v1 = version(1, NODE_A), v2 = version(2, NODE_A);
        ShardDigest a = {}, b = {}, zero = {}, e1, e2, e3;
        char hex[SHARD_DIGEST_STRING_MAX];

        e1 = shard_digest_entry("x", 1, &v1, false);
        e2 = shard_digest_entry("y", 1, &v1, false);
        e3 = shard_digest_entry("x", 1, &v2, false);
        /* Every field counts. */
        ck_assert(!shard_digest_equal(&e1, &e2));
        ck_assert(!shard_digest_equal(&e1, &e3));
        e3 = shard_digest_entry("x", 1, &v1, true);
        ck_assert(!shard_digest_equal(&e1, &e3));

        /* Order does not matter; removing undoes adding, carries included. */
        shard_digest_add(&a, &e1);
        shard_digest_add(&a, &e2);
        shard_digest_add(&b, &e2);
        shard_digest_add(&b, &e1);
        ck_assert(shard_digest_equal(&a, &b));
        shard_digest_remove(&a, &e1);
        shard_digest_remove(&a, &e2);
        ck_assert(shard_digest_equal(&a, &zero));
        a = (ShardDigest) { .hi = 0, .lo = UINT64_MAX };
        shard_digest_add(&a, &(ShardDigest) { .lo = 1 });
        ck_assert_uint_eq(a.hi, 1);
        ck_assert_uint_eq(a.lo, 0);
        shard_digest_remove(&a, &(ShardDigest) { .lo = 1 });
        ck_assert_uint_eq(a.hi, 0);
        ck_assert_uint_eq(a.lo, UINT64_MAX);
        ck_assert_str_eq(shard_digest_to_string(&a, hex), "0000000000000000ffffffffffffffff");
}
END_TEST

START_TEST(test_round_trip) {
        _cleanup_(shard_store_freep) ShardStore *s = open_store(path_a, NULL);
        _cleanup_(shard_collection_freep) ShardCollection *c = NULL;
        _cleanup_free_ ShardDoc *d = NULL;
        ShardInfo info;
        float e[DIM];
        int shard;

        create(s, "docs", 16);
        ck_assert_int_eq(shard_store_collection_get(s, "docs", &c), 0);
        ck_assert_str_eq(c->name, "docs");
        ck_assert_uint_eq(c->dimension, DIM);
        ck_assert_int_eq(c->metric, SHARD_METRIC_COSINE);
        ck_assert_str_eq(c->model, "nomic-embed-text");
        ck_assert_uint_eq(c->n_shards, 16);
        ck_assert_uint_eq(c->replicas, 2);
        ck_assert_uint_eq(c->created_ms, 1700000000000);
        ck_assert_uint_ne(c->id, 0);

        ck_assert(put(s, "docs", "one", version(10, NODE_A), "first text"));
        ck_assert_int_eq(shard_store_get(s, "docs", "one", 0, &d), 0);
        ck_assert_str_eq(d->id, "one");
        ck_assert_str_eq(d->text, "first text");
        ck_assert_str_eq(d->metadata, "{\"v\": 655360}");
        ck_assert_uint_eq(d->dimension, DIM);
        ck_assert(!d->deleted);
        shard = shard_of("docs", "one", 16);
        ck_assert_uint_eq(d->shard, (unsigned) shard);
        shard_doc_embedding(d, e);
        ck_assert(e[0] == 10.0f / 7.0f && e[DIM - 1] == 17.0f / 7.0f);
        /* The owned copy's embedding is aligned floats too. */
        ck_assert(((const float *) d->embedding)[1] == 11.0f / 7.0f);
        free(TAKE_PTR(d));

        /* Replace. */
        ck_assert(put(s, "docs", "one", version(11, NODE_A), "second"));
        assert_text(s, "docs", "one", "second");
        ck_assert_int_eq(shard_store_shard_info(s, "docs", (unsigned) shard, &info), 0);
        ck_assert_uint_eq(info.n_live, 1);
        ck_assert_uint_eq(info.n_tombstones, 0);
        ck_assert_uint_eq(info.head.seq, 2);
        ck_assert_uint_ne(info.head.log_id, 0);
        ck_assert_uint_gt(info.bytes, 0);

        /* Delete: gone for readers, a tombstone for replication. */
        ck_assert(delete(s, "docs", "one", version(12, NODE_A)));
        assert_text(s, "docs", "one", NULL);
        ck_assert_int_eq(shard_store_get(s, "docs", "one", SHARD_READ_TOMBSTONES, &d), 0);
        ck_assert(d->deleted);
        ck_assert_uint_eq(d->version.hlc, version(12, NODE_A).hlc);
        ck_assert_uint_eq(d->text_size, 0);
        ck_assert_ptr_null(d->metadata);
        ck_assert_int_eq(shard_store_shard_info(s, "docs", (unsigned) shard, &info), 0);
        ck_assert_uint_eq(info.n_live, 0);
        ck_assert_uint_eq(info.n_tombstones, 1);

        /* Metadata is optional. */
        {
                Change ch;

                change_put(&ch, "bare", version(13, NODE_A), "no metadata");
                ch.ch.metadata = NULL;
                ch.ch.metadata_size = 0;
                ck_assert(apply(s, "docs", &ch));
                free(TAKE_PTR(d));
                ck_assert_int_eq(shard_store_get(s, "docs", "bare", 0, &d), 0);
                ck_assert_ptr_null(d->metadata);
        }
        ck_assert_int_eq(shard_store_get(s, "docs", "never", 0, &d), -ENOENT);
        ck_assert_int_eq(shard_store_get(s, "nope", "one", 0, &d), -ENOENT);
        ck_assert_int_eq(shard_store_get(s, "docs", "", 0, &d), -EINVAL);
        assert_digests_verified(s, "docs", 16);
}
END_TEST

START_TEST(test_last_writer_wins) {
        _cleanup_(shard_store_freep) ShardStore *s = open_store(path_a, NULL);
        ShardVersion v_a = version(100, NODE_A), v_b = version(100, NODE_B);
        ShardInfo info;
        bool applied[4];
        Change batch[4];

        create(s, "docs", 4);
        ck_assert(put(s, "docs", "x", version(30, NODE_A), "v30"));
        /* Older and equal versions arrive late: ignored. */
        ck_assert(!put(s, "docs", "x", version(10, NODE_A), "v10"));
        ck_assert(!put(s, "docs", "x", version(30, NODE_A), "v30 again"));
        assert_text(s, "docs", "x", "v30");
        /* An older delete does not remove a newer put. */
        ck_assert(!delete(s, "docs", "x", version(20, NODE_A)));
        assert_text(s, "docs", "x", "v30");
        /* A newer delete does, and its tombstone keeps a late older put out. */
        ck_assert(delete(s, "docs", "x", version(40, NODE_A)));
        ck_assert(!put(s, "docs", "x", version(35, NODE_A), "v35"));
        assert_text(s, "docs", "x", NULL);
        /* A put newer than the tombstone brings it back. */
        ck_assert(put(s, "docs", "x", version(50, NODE_A), "v50"));
        assert_text(s, "docs", "x", "v50");
        /* A delete of a document never seen still leaves a tombstone: the put it raced loses. */
        ck_assert(delete(s, "docs", "y", version(60, NODE_A)));
        ck_assert(!put(s, "docs", "y", version(55, NODE_A), "v55"));
        assert_text(s, "docs", "y", NULL);

        /* Same milliseconds and counter on two nodes: the tie-break decides, the same everywhere. */
        ck_assert(put(s, "docs", "z", shard_version_newer(&v_a, &v_b) ? v_b : v_a, "loser"));
        ck_assert(put(s, "docs", "z", shard_version_newer(&v_a, &v_b) ? v_a : v_b, "winner"));
        ck_assert(!put(s, "docs", "z", shard_version_newer(&v_a, &v_b) ? v_b : v_a, "loser"));
        assert_text(s, "docs", "z", "winner");

        /* In one batch, later changes see earlier ones. */
        change_put(&batch[0], "w", version(70, NODE_A), "w70");
        change_put(&batch[1], "w", version(65, NODE_A), "w65");
        change_delete(&batch[2], "w", version(80, NODE_A));
        change_put(&batch[3], "w", version(90, NODE_A), "w90");
        {
                ShardChange chs[4] = { batch[0].ch, batch[1].ch, batch[2].ch, batch[3].ch };

                ck_assert_int_eq(shard_store_apply(s, "docs", chs, 4, NULL, applied), 3);
        }
        ck_assert(applied[0] && !applied[1] && applied[2] && applied[3]);
        assert_text(s, "docs", "w", "w90");

        ck_assert_int_eq(shard_store_shard_info(s, "docs", (unsigned) shard_of("docs", "y", 4), &info), 0);
        ck_assert_uint_ge(info.n_tombstones, 1);
        assert_digests_verified(s, "docs", 4);
        {
                ShardVersion max;

                ck_assert_int_eq(shard_store_max_version(s, &max), 0);
                ck_assert_uint_eq(max.hlc, version(100, NODE_A).hlc);
        }
}
END_TEST

/* Catch-up as a receiver runs it: every entry after the cursor, sending the document as it is
 * now (or the entry's delete when it is gone), applied with the new cursor in one transaction. */
typedef struct CatchUp {
        ShardChange changes[256];
        Change owned[256];
        size_t n;
        uint64_t last_seq;
} CatchUp;

static int collect_entry(const ShardLogEntry *e, const ShardDoc *current, void *userdata) {
        CatchUp *cu = userdata;
        Change *c = &cu->owned[cu->n];

        ck_assert_uint_lt(cu->n, ELEMENTSOF(cu->owned));
        ck_assert_uint_gt(e->seq, cu->last_seq);
        cu->last_seq = e->seq;
        if (!current)
                change_delete(c, e->id, e->version);
        else if (current->deleted)
                change_delete(c, current->id, current->version);
        else {
                change_put(c, current->id, current->version, "");
                ck_assert_uint_lt(current->text_size, sizeof(c->text));
                memcpy(c->text, current->text, current->text_size);
                c->text[current->text_size] = '\0';
                c->ch.text_size = current->text_size;
                ck_assert_uint_lt(current->metadata_size, sizeof(c->metadata));
                if (current->metadata)
                        memcpy(c->metadata, current->metadata, current->metadata_size);
                c->metadata[current->metadata_size] = '\0';
                c->ch.metadata_size = current->metadata_size;
                shard_doc_embedding(current, c->embedding);
        }
        cu->changes[cu->n++] = c->ch;
        return 0;
}

/* Brings to's copy of a shard up to from's; returns what log_after() said. */
static int catch_up(ShardStore *from, ShardStore *to, const char *from_id, unsigned shard) {
        _cleanup_free_ CatchUp *cu = calloc(1, sizeof(CatchUp));
        ShardCursor cursor = {};
        ShardInfo info;
        int r;

        ck_assert_ptr_nonnull(cu);
        r = shard_store_cursor_get(to, "docs", shard, from_id, &cursor);
        ck_assert(r == 0 || r == -ENOENT);
        r = shard_store_log_after(from, "docs", shard, &cursor, ELEMENTSOF(cu->owned), collect_entry, cu);
        if (r < 0)
                return r;
        ck_assert_int_eq(r, (int) cu->n);
        ck_assert_int_eq(shard_store_shard_info(from, "docs", shard, &info), 0);
        if (cu->n > 0) {
                ShardSourceCursor sc = { from_id, shard, { info.head.log_id, cu->last_seq } };

                ck_assert_int_ge(shard_store_apply(to, "docs", cu->changes, cu->n, &sc, NULL), 0);
        }
        return r;
}

START_TEST(test_log_catch_up) {
        ShardStoreConfig config = { .log_max_entries = 20 };
        _cleanup_(shard_store_freep) ShardStore *a = open_store(path_a, &config);
        _cleanup_(shard_store_freep) ShardStore *b = open_store(path_b, NULL);
        _cleanup_free_ char *dump_a = NULL, *dump_b = NULL;
        ShardInfo ia, ib;
        ShardCursor cursor;
        char id[16];

        /* One shard, so every write lands in the log under test. */
        create(a, "docs", 1);
        create(b, "docs", 1);

        /* B was there for the first writes. */
        for (unsigned i = 0; i < 5; i++) {
                snprintf(id, sizeof(id), "d%u", i);
                ck_assert(put(a, "docs", id, version(100 + i, NODE_A), id));
        }
        /* From the start of a log that was never trimmed. */
        ck_assert_int_eq(catch_up(a, b, NODE_A, 0), 5);
        ck_assert_int_eq(shard_store_cursor_get(b, "docs", 0, NODE_A, &cursor), 0);
        ck_assert_uint_eq(cursor.seq, 5);

        /* B is down: A takes replaces, deletes and new documents. */
        ck_assert(put(a, "docs", "d1", version(200, NODE_A), "d1 again"));
        ck_assert(delete(a, "docs", "d2", version(201, NODE_A)));
        ck_assert(put(a, "docs", "d9", version(202, NODE_A), "d9"));
        ck_assert(put(a, "docs", "d9", version(203, NODE_A), "d9 twice"));

        /* B comes back and asks for what came after its cursor: four entries, not the shard. */
        ck_assert_int_eq(catch_up(a, b, NODE_A, 0), 4);
        ck_assert_int_eq(catch_up(a, b, NODE_A, 0), 0);
        dump_a = dump(a, "docs", 1);
        dump_b = dump(b, "docs", 1);
        ck_assert_str_eq(dump_a, dump_b);
        ck_assert_int_eq(shard_store_shard_info(a, "docs", 0, &ia), 0);
        ck_assert_int_eq(shard_store_shard_info(b, "docs", 0, &ib), 0);
        ck_assert(shard_digest_equal(&ia.digest, &ib.digest));
        /* Each node numbers its own log. */
        ck_assert_uint_ne(ia.head.log_id, ib.head.log_id);

        /* Cursors that do not fit this log are stale. */
        cursor = (ShardCursor) { ia.head.log_id + 1, 3 };
        ck_assert_int_eq(shard_store_log_after(a, "docs", 0, &cursor, 0, collect_entry, NULL), -ESTALE);
        cursor = (ShardCursor) { ia.head.log_id, ia.head.seq + 1 };
        ck_assert_int_eq(shard_store_log_after(a, "docs", 0, &cursor, 0, collect_entry, NULL), -ESTALE);

        /* B is down long enough for A to trim past its cursor (20 entries kept). */
        for (unsigned i = 0; i < 30; i++) {
                snprintf(id, sizeof(id), "late%u", i);
                ck_assert(put(a, "docs", id, version(300 + i, NODE_A), id));
        }
        ck_assert_int_eq(shard_store_shard_info(a, "docs", 0, &ia), 0);
        ck_assert_uint_eq(ia.head.seq, 39);
        ck_assert_uint_eq(ia.floor_seq, 19);
        ck_assert_int_eq(catch_up(a, b, NODE_A, 0), -ESTALE);
        cursor = (ShardCursor) {};
        ck_assert_int_eq(shard_store_log_after(a, "docs", 0, &cursor, 0, collect_entry, NULL), -ESTALE);
        /* A cursor at the floor is still whole. */
        {
                _cleanup_free_ CatchUp *cu = calloc(1, sizeof(CatchUp));

                cursor = (ShardCursor) { ia.head.log_id, ia.floor_seq };
                ck_assert_int_eq(shard_store_log_after(a, "docs", 0, &cursor, 0, collect_entry, cu), 20);
                /* At most max at a time. */
                cu->n = cu->last_seq = 0;
                ck_assert_int_eq(shard_store_log_after(a, "docs", 0, &cursor, 7, collect_entry, cu), 7);
                ck_assert_uint_eq(cu->last_seq, ia.floor_seq + 7);
        }
        /* Explicit trimming. */
        ck_assert_int_eq(shard_store_log_trim(a, "docs", 0, 3), 0);
        ck_assert_int_eq(shard_store_shard_info(a, "docs", 0, &ia), 0);
        ck_assert_uint_eq(ia.floor_seq, 36);
        ck_assert_int_eq(shard_store_log_after(a, "docs", 0, &cursor, 0, collect_entry, NULL), -ESTALE);
}
END_TEST

START_TEST(test_log_drop_new_log) {
        _cleanup_(shard_store_freep) ShardStore *a = open_store(path_a, NULL);
        ShardCursor cursor;
        ShardInfo before, after;
        int n_shard = shard_of("docs", "k", 1);

        create(a, "docs", 1);
        ck_assert_int_eq(n_shard, 0);
        for (unsigned i = 0; i < 5; i++)
                ck_assert(put(a, "docs", "k", version(10 + i, NODE_A), "k"));
        ck_assert_int_eq(shard_store_shard_info(a, "docs", 0, &before), 0);
        ck_assert_int_eq(shard_store_drop_shard(a, "docs", 0), 0);
        ck_assert_int_eq(shard_store_shard_info(a, "docs", 0, &after), -ENOENT);
        /* The shard comes back to this node: a new log, so an old cursor at seq 3 is stale even
         * though the new log reaches seq 5 again. */
        for (unsigned i = 0; i < 5; i++)
                ck_assert(put(a, "docs", "k", version(20 + i, NODE_A), "k"));
        ck_assert_int_eq(shard_store_shard_info(a, "docs", 0, &after), 0);
        ck_assert_uint_eq(after.head.seq, 5);
        ck_assert_uint_ne(after.head.log_id, before.head.log_id);
        cursor = (ShardCursor) { before.head.log_id, 3 };
        ck_assert_int_eq(shard_store_log_after(a, "docs", 0, &cursor, 0, collect_entry, NULL), -ESTALE);
}
END_TEST

/* A fixed history: 300 writes to 40 ids over 8 shards, puts, replaces and deletes, each with its
 * own version. */
static size_t history(Change *out, size_t max) {
        size_t n = 0;
        uint32_t x = 12345;
        char id[16], text[32];

        for (unsigned i = 0; i < max; i++) {
                ShardVersion v = version(1000 + i, i % 3 ? NODE_A : NODE_B);

                x = x * 1103515245 + 12345;
                snprintf(id, sizeof(id), "id%u", (x >> 8) % 40);
                if ((x >> 20) % 5 == 0)
                        change_delete(&out[n++], id, v);
                else {
                        snprintf(text, sizeof(text), "text %u", i);
                        change_put(&out[n++], id, v, text);
                }
        }
        return n;
}

START_TEST(test_digest_order_independent) {
        _cleanup_(shard_store_freep) ShardStore *a = open_store(path_a, NULL);
        _cleanup_(shard_store_freep) ShardStore *b = open_store(path_b, NULL);
        _cleanup_free_ Change *changes = calloc(300, sizeof(Change));
        _cleanup_free_ char *dump_a = NULL, *dump_b = NULL;
        _cleanup_free_ ShardChange *batch = calloc(300, sizeof(ShardChange));
        size_t n, applied_a = 0;
        uint32_t x = 777;

        ck_assert_ptr_nonnull(changes);
        ck_assert_ptr_nonnull(batch);
        create(a, "docs", 8);
        create(b, "docs", 8);
        n = history(changes, 300);

        /* A: in order, one at a time, checking the digests as it goes. */
        for (size_t i = 0; i < n; i++) {
                applied_a += apply(a, "docs", &changes[i]);
                if (i % 50 == 0)
                        assert_digests_verified(a, "docs", 8);
        }
        ck_assert_uint_gt(applied_a, 200);
        assert_digests_verified(a, "docs", 8);

        /* B: shuffled, and in batches. */
        for (size_t i = n - 1; i > 0; i--) {
                size_t j;
                Change t;

                x = x * 1103515245 + 12345;
                j = (x >> 8) % (i + 1);
                t = changes[i];
                changes[i] = changes[j];
                changes[j] = t;
        }
        for (size_t i = 0; i < n; i++) {
                changes[i].ch.id = changes[i].id;
                if (changes[i].ch.op == SHARD_OP_PUT) {
                        changes[i].ch.text = changes[i].text;
                        changes[i].ch.metadata = changes[i].metadata;
                        changes[i].ch.embedding = changes[i].embedding;
                }
                batch[i] = changes[i].ch;
        }
        for (size_t i = 0; i < n; i += 37)
                ck_assert_int_ge(shard_store_apply(b, "docs", batch + i, MIN((size_t) 37, n - i), NULL, NULL), 0);
        assert_digests_verified(b, "docs", 8);

        for (unsigned shard = 0; shard < 8; shard++) {
                ShardInfo ia, ib;

                ck_assert_int_eq(shard_store_shard_info(a, "docs", shard, &ia), 0);
                ck_assert_int_eq(shard_store_shard_info(b, "docs", shard, &ib), 0);
                ck_assert(shard_digest_equal(&ia.digest, &ib.digest));
                ck_assert_uint_eq(ia.n_live, ib.n_live);
                ck_assert_uint_eq(ia.n_tombstones, ib.n_tombstones);
                ck_assert_uint_eq(ia.bytes, ib.bytes);
        }
        dump_a = dump(a, "docs", 8);
        dump_b = dump(b, "docs", 8);
        ck_assert_str_eq(dump_a, dump_b);

        /* And a divergence shows. */
        ck_assert(put(b, "docs", "id1", version(999999, NODE_B), "only on b"));
        {
                unsigned shard = (unsigned) shard_of("docs", "id1", 8);
                ShardInfo ia, ib;

                ck_assert_int_eq(shard_store_shard_info(a, "docs", shard, &ia), 0);
                ck_assert_int_eq(shard_store_shard_info(b, "docs", shard, &ib), 0);
                ck_assert(!shard_digest_equal(&ia.digest, &ib.digest));
        }
}
END_TEST

static int count_doc(const ShardDoc *d, void *userdata) {
        (*(unsigned *) userdata)++;
        return 0;
}

static int stop_at_second(const ShardDoc *d, void *userdata) {
        return ++(*(unsigned *) userdata) == 2 ? 42 : 0;
}

static int reenter(const ShardDoc *d, void *userdata) {
        ShardStore *s = userdata;
        ShardDoc *other = NULL;

        Change c;

        ck_assert_int_eq(shard_store_get(s, "docs", d->id, 0, &other), -EBUSY);
        change_put(&c, "nope", version(1, NODE_A), "x");
        ck_assert_int_eq(shard_store_apply(s, "docs", &c.ch, 1, NULL, NULL), -EBUSY);
        return 0;
}

START_TEST(test_foreach_and_reopen) {
        _cleanup_free_ char *before = NULL, *after = NULL;
        ShardInfo info_before, info_after;
        ShardVersion max;
        unsigned count = 0;
        char id[16];

        {
                _cleanup_(shard_store_freep) ShardStore *s = open_store(path_a, NULL);

                create(s, "docs", 1);
                create(s, "notes", 4);
                for (unsigned i = 0; i < 50; i++) {
                        snprintf(id, sizeof(id), "doc%02u", i);
                        ck_assert(put(s, "docs", id, version(100 + i, NODE_A), id));
                }
                ck_assert(delete(s, "docs", "doc07", version(500, NODE_A)));
                ck_assert(put(s, "notes", "n", version(600, NODE_A), "note"));

                ck_assert_int_eq(shard_store_foreach_doc(s, "docs", 0, NULL, 0, count_doc, &count), 0);
                ck_assert_uint_eq(count, 49);
                count = 0;
                ck_assert_int_eq(shard_store_foreach_doc(s, "docs", 0, NULL, SHARD_READ_TOMBSTONES, count_doc, &count), 0);
                ck_assert_uint_eq(count, 50);
                /* Resuming after an id (a paged transfer). */
                count = 0;
                ck_assert_int_eq(shard_store_foreach_doc(s, "docs", 0, "doc39", 0, count_doc, &count), 0);
                ck_assert_uint_eq(count, 10);
                count = 0;
                ck_assert_int_eq(shard_store_foreach_doc(s, "docs", 0, "doc395", 0, count_doc, &count), 0);
                ck_assert_uint_eq(count, 10);
                count = 0;
                ck_assert_int_eq(shard_store_foreach_doc(s, "docs", 0, NULL, 0, stop_at_second, &count), 42);
                ck_assert_int_eq(shard_store_foreach_doc(s, "docs", 1, NULL, 0, count_doc, &count), -EINVAL);
                /* The store refuses calls from inside its callbacks. */
                ck_assert_int_eq(shard_store_foreach_doc(s, "docs", 0, NULL, 0, reenter, s), 0);

                ck_assert_int_eq(shard_store_shard_info(s, "docs", 0, &info_before), 0);
                before = dump(s, "docs", 1);
        }
        {
                _cleanup_(shard_store_freep) ShardStore *s = open_store(path_a, NULL);
                _cleanup_(shard_collection_freep) ShardCollection *c = NULL;

                after = dump(s, "docs", 1);
                ck_assert_str_eq(before, after);
                ck_assert_int_eq(shard_store_shard_info(s, "docs", 0, &info_after), 0);
                ck_assert_uint_eq(info_before.head.log_id, info_after.head.log_id);
                ck_assert_uint_eq(info_before.head.seq, info_after.head.seq);
                ck_assert_uint_eq(info_before.floor_seq, info_after.floor_seq);
                ck_assert_uint_eq(info_before.n_live, info_after.n_live);
                ck_assert_uint_eq(info_before.n_tombstones, info_after.n_tombstones);
                ck_assert_uint_eq(info_before.bytes, info_after.bytes);
                ck_assert(shard_digest_equal(&info_before.digest, &info_after.digest));
                assert_text(s, "notes", "n", "note");
                ck_assert_int_eq(shard_store_collection_get(s, "notes", &c), 0);
                ck_assert_uint_eq(c->n_shards, 4);
                ck_assert_int_eq(shard_store_max_version(s, &max), 0);
                ck_assert_uint_eq(max.hlc, version(600, NODE_A).hlc);
                /* The log goes on where it was. */
                ck_assert(put(s, "docs", "doc00", version(700, NODE_A), "again"));
                ck_assert_int_eq(shard_store_shard_info(s, "docs", 0, &info_after), 0);
                ck_assert_uint_eq(info_after.head.seq, info_before.head.seq + 1);
                ck_assert_uint_eq(info_after.head.log_id, info_before.head.log_id);
        }
}
END_TEST

/* Entries of a named database, with raw LMDB. */
static size_t raw_entries(const char *path, const char *db) {
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        MDB_stat st;

        ck_assert_int_eq(mdb_env_create(&env), 0);
        ck_assert_int_eq(mdb_env_set_maxdbs(env, 8), 0);
        ck_assert_int_eq(mdb_env_open(env, path, MDB_RDONLY, 0600), 0);
        ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
        ck_assert_int_eq(mdb_dbi_open(txn, db, 0, &dbi), 0);
        ck_assert_int_eq(mdb_stat(txn, dbi, &st), 0);
        mdb_txn_abort(txn);
        mdb_env_close(env);
        return st.ms_entries;
}

/* Overwrites the value of a key of a named database with raw LMDB, as a bad disk or a bug would. */
static void raw_overwrite(const char *path, const char *db, const void *key, size_t key_size,
                          void (*mangle)(MDB_val *v, uint8_t *buf), uint8_t *buf) {
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        MDB_val k = { key_size, (void *) key }, v, nv;

        ck_assert_int_eq(mdb_env_create(&env), 0);
        ck_assert_int_eq(mdb_env_set_maxdbs(env, 8), 0);
        ck_assert_int_eq(mdb_env_open(env, path, 0, 0600), 0);
        ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
        ck_assert_int_eq(mdb_dbi_open(txn, db, 0, &dbi), 0);
        ck_assert_int_eq(mdb_get(txn, dbi, &k, &v), 0);
        memcpy(buf, v.mv_data, v.mv_size);
        nv = (MDB_val) { v.mv_size, buf };
        mangle(&nv, buf);
        ck_assert_int_eq(mdb_put(txn, dbi, &k, &nv, 0), 0);
        ck_assert_int_eq(mdb_txn_commit(txn), 0);
        mdb_env_close(env);
}

static void truncate_value(MDB_val *v, uint8_t *buf) {
        v->mv_size -= 3;
}

static void flip_text_bit(MDB_val *v, uint8_t *buf) {
        buf[v->mv_size - 20] ^= 0x10;
}

/* The documented key of a document: collection number, shard (both big-endian), id. */
static void doc_key(uint8_t cid, uint8_t *key, size_t *size, unsigned shard, const char *id) {
        key[0] = key[1] = key[2] = 0;
        key[3] = cid;
        key[4] = (uint8_t) (shard >> 8);
        key[5] = (uint8_t) shard;
        memcpy(key + 6, id, strlen(id));
        *size = 6 + strlen(id);
}

START_TEST(test_corrupt_values) {
        uint8_t key[300], buf[4096];
        size_t key_size;
        unsigned shard_t = (unsigned) shard_of("docs", "truncated", 4);
        unsigned shard_f = (unsigned) shard_of("docs", "flipped", 4);

        {
                _cleanup_(shard_store_freep) ShardStore *s = open_store(path_a, NULL);

                create(s, "docs", 4);
                ck_assert(put(s, "docs", "truncated", version(10, NODE_A), "some text to lose the end of"));
                ck_assert(put(s, "docs", "flipped", version(11, NODE_A), "some text to flip a bit in, long enough"));
                ck_assert(put(s, "docs", "fine", version(12, NODE_A), "fine"));
        }
        /* The first collection has id 1. */
        doc_key(1, key, &key_size, shard_t, "truncated");
        raw_overwrite(path_a, "docs", key, key_size, truncate_value, buf);
        doc_key(1, key, &key_size, shard_f, "flipped");
        raw_overwrite(path_a, "docs", key, key_size, flip_text_bit, buf);
        {
                _cleanup_(shard_store_freep) ShardStore *s = open_store(path_a, NULL);
                ShardDoc *d = NULL;
                ShardDigest digest;
                ShardInfo info;
                uint64_t removed = 0;
                unsigned count = 0;

                /* Reported, never trusted: reads, iteration, digests and writes over it. */
                ck_assert_int_eq(shard_store_get(s, "docs", "truncated", 0, &d), -EBADMSG);
                ck_assert_int_eq(shard_store_get(s, "docs", "flipped", 0, &d), -EBADMSG);
                ck_assert_ptr_null(d);
                assert_text(s, "docs", "fine", "fine");
                ck_assert_int_eq(shard_store_foreach_doc(s, "docs", shard_t, NULL, 0, count_doc, &count), -EBADMSG);
                ck_assert_int_eq(shard_store_digest_compute(s, "docs", shard_f, &digest, NULL), -EBADMSG);
                {
                        Change c;
                        bool applied = true;

                        change_put(&c, "truncated", version(20, NODE_A), "over it");
                        ck_assert_int_eq(shard_store_apply(s, "docs", &c.ch, 1, NULL, &applied), -EBADMSG);
                        ck_assert(applied);
                }
                /* Rebuilding drops what is corrupt and makes digest and counts right again; the
                 * digest now differs from a healthy holder's, so anti-entropy brings the rest. */
                ck_assert_int_eq(shard_store_shard_rebuild(s, "docs", shard_t, &removed), 0);
                ck_assert_uint_eq(removed, shard_f == shard_t ? 2 : 1);
                ck_assert_int_eq(shard_store_shard_rebuild(s, "docs", shard_f, &removed), 0);
                ck_assert_uint_eq(removed, shard_f == shard_t ? 0 : 1);
                ck_assert_int_eq(shard_store_get(s, "docs", "truncated", SHARD_READ_TOMBSTONES, &d), -ENOENT);
                ck_assert_int_eq(shard_store_get(s, "docs", "flipped", SHARD_READ_TOMBSTONES, &d), -ENOENT);
                assert_digests_verified(s, "docs", 4);
                ck_assert_int_eq(shard_store_shard_info(s, "docs", shard_t, &info), 0);
                ck_assert(put(s, "docs", "truncated", version(21, NODE_A), "repaired"));
                assert_text(s, "docs", "truncated", "repaired");
                /* Rebuilding a sound shard changes nothing. */
                ck_assert_int_eq(shard_store_shard_rebuild(s, "docs", shard_t, &removed), 0);
                ck_assert_uint_eq(removed, 0);
                assert_digests_verified(s, "docs", 4);
        }
        /* A corrupt collection config is reported too, and opening does not take its data for
         * the leftovers of a deleted collection. */
        raw_overwrite(path_a, "collections", "docs", 4, truncate_value, buf);
        {
                _cleanup_(shard_store_freep) ShardStore *s = open_store(path_a, NULL);
                ShardCollection *c = NULL;

                ck_assert_int_eq(shard_store_collection_get(s, "docs", &c), -EBADMSG);
                ck_assert_int_eq(get_rc(s, "docs", "fine", 0), -EBADMSG);
        }
        ck_assert_uint_eq(raw_entries(path_a, "docs"), 2);
}
END_TEST

START_TEST(test_limits) {
        ShardStoreConfig config = { .collections_max = 3 };
        _cleanup_(shard_store_freep) ShardStore *s = open_store(path_a, &config);
        _cleanup_free_ char *big = malloc(SHARD_TEXT_MAX + 2);
        _cleanup_(shard_collection_freep) ShardCollection *got = NULL;
        char id[SHARD_ID_MAX + 2];
        ShardCollection c = { .name = (char *) "x", .dimension = DIM, .metric = SHARD_METRIC_INNER_PRODUCT,
                              .n_shards = 4, .replicas = 2 };
        Change ch, batch[2];
        unsigned count = 0;

        ck_assert_ptr_nonnull(big);
        create(s, "docs", 4);

        /* Collections. */
        c.name = (char *) "docs";
        ck_assert_int_eq(shard_store_collection_create(s, &c), -EEXIST);
        c.dimension = SHARD_DIMENSION_MAX + 1;
        ck_assert_int_eq(shard_store_collection_create(s, &c), -EINVAL);
        c.dimension = 0;
        ck_assert_int_eq(shard_store_collection_create(s, &c), -EINVAL);
        c.dimension = DIM;
        c.n_shards = SHARD_COUNT_MAX + 1;
        ck_assert_int_eq(shard_store_collection_create(s, &c), -EINVAL);
        c.n_shards = 4;
        c.replicas = SHARD_REPLICAS_MAX + 1;
        ck_assert_int_eq(shard_store_collection_create(s, &c), -EINVAL);
        c.replicas = 2;
        c.metric = (ShardMetric) 7;
        ck_assert_int_eq(shard_store_collection_create(s, &c), -EINVAL);
        c.metric = SHARD_METRIC_INNER_PRODUCT;
        c.name = (char *) "a/b";
        ck_assert_int_eq(shard_store_collection_create(s, &c), -EINVAL);
        c.name = (char *) ".hidden";
        ck_assert_int_eq(shard_store_collection_create(s, &c), -EINVAL);
        memset(id, 'n', SHARD_COLLECTION_NAME_MAX + 1);
        id[SHARD_COLLECTION_NAME_MAX + 1] = '\0';
        c.name = id;
        ck_assert_int_eq(shard_store_collection_create(s, &c), -EINVAL);
        id[SHARD_COLLECTION_NAME_MAX] = '\0';
        ck_assert_int_eq(shard_store_collection_create(s, &c), 0);
        ck_assert_int_eq(shard_store_collection_get(s, id, &got), 0);
        ck_assert_int_eq(got->metric, SHARD_METRIC_INNER_PRODUCT);
        ck_assert_ptr_null(got->model);
        c.name = (char *) "third";
        ck_assert_int_eq(shard_store_collection_create(s, &c), 0);
        c.name = (char *) "fourth";
        ck_assert_int_eq(shard_store_collection_create(s, &c), -EDQUOT);

        /* Ids. */
        memset(id, 'i', SHARD_ID_MAX + 1);
        id[SHARD_ID_MAX + 1] = '\0';
        change_put(&ch, "x", version(1, NODE_A), "t");
        ch.ch.id = id;
        ck_assert_int_eq(shard_store_apply(s, "docs", &ch.ch, 1, NULL, NULL), -E2BIG);
        id[SHARD_ID_MAX] = '\0';
        ck_assert_int_eq(shard_store_apply(s, "docs", &ch.ch, 1, NULL, NULL), 1);
        ck_assert_int_eq(get_rc(s, "docs", id, 0), 0);
        ch.ch.id = "";
        ck_assert_int_eq(shard_store_apply(s, "docs", &ch.ch, 1, NULL, NULL), -EINVAL);

        /* Text: exactly the limit passes, one more byte does not. */
        memset(big, 't', SHARD_TEXT_MAX + 1);
        change_put(&ch, "big", version(2, NODE_A), "");
        ch.ch.text = big;
        ch.ch.text_size = SHARD_TEXT_MAX + 1;
        ck_assert_int_eq(shard_store_apply(s, "docs", &ch.ch, 1, NULL, NULL), -E2BIG);
        ch.ch.text_size = SHARD_TEXT_MAX;
        ck_assert_int_eq(shard_store_apply(s, "docs", &ch.ch, 1, NULL, NULL), 1);

        /* Metadata: a JSON object within its limit. */
        change_put(&ch, "meta", version(3, NODE_A), "t");
        big[0] = '{';
        big[1] = '}';
        memset(big + 2, ' ', SHARD_METADATA_MAX);
        ch.ch.metadata = big;
        ch.ch.metadata_size = SHARD_METADATA_MAX + 1;
        ck_assert_int_eq(shard_store_apply(s, "docs", &ch.ch, 1, NULL, NULL), -E2BIG);
        ch.ch.metadata_size = SHARD_METADATA_MAX;
        ck_assert_int_eq(shard_store_apply(s, "docs", &ch.ch, 1, NULL, NULL), 1);
        change_put(&ch, "meta2", version(4, NODE_A), "t");
        ch.ch.metadata = "[1, 2]";
        ch.ch.metadata_size = 6;
        ck_assert_int_eq(shard_store_apply(s, "docs", &ch.ch, 1, NULL, NULL), -EINVAL);
        ch.ch.metadata = "{\"a\": 1} x";
        ch.ch.metadata_size = 10;
        ck_assert_int_eq(shard_store_apply(s, "docs", &ch.ch, 1, NULL, NULL), -EINVAL);
        ch.ch.metadata = "{\"a\": 1";
        ch.ch.metadata_size = 7;
        ck_assert_int_eq(shard_store_apply(s, "docs", &ch.ch, 1, NULL, NULL), -EINVAL);

        /* Embeddings: the collection's dimension, finite values. */
        change_put(&ch, "emb", version(5, NODE_A), "t");
        ch.ch.dimension = DIM - 1;
        ck_assert_int_eq(shard_store_apply(s, "docs", &ch.ch, 1, NULL, NULL), -EINVAL);
        ch.ch.dimension = DIM;
        ch.embedding[3] = NAN;
        ck_assert_int_eq(shard_store_apply(s, "docs", &ch.ch, 1, NULL, NULL), -EINVAL);
        ch.embedding[3] = INFINITY;
        ck_assert_int_eq(shard_store_apply(s, "docs", &ch.ch, 1, NULL, NULL), -EINVAL);
        ch.embedding[3] = 0;
        ch.ch.embedding = NULL;
        ck_assert_int_eq(shard_store_apply(s, "docs", &ch.ch, 1, NULL, NULL), -EINVAL);

        /* Versions: zero is no version. */
        change_delete(&ch, "v0", (ShardVersion) {});
        ck_assert_int_eq(shard_store_apply(s, "docs", &ch.ch, 1, NULL, NULL), -EINVAL);
        ck_assert_int_eq(shard_store_apply(s, "docs", &ch.ch, SHARD_BATCH_MAX + 1, NULL, NULL), -E2BIG);

        /* One bad change fails the whole batch, cursor included. */
        change_put(&batch[0], "good", version(6, NODE_A), "good");
        change_put(&batch[1], "bad", version(7, NODE_A), "bad");
        batch[1].embedding[0] = NAN;
        {
                ShardChange chs[2] = { batch[0].ch, batch[1].ch };
                ShardSourceCursor sc = { NODE_B, 0, { 5, 5 } };
                ShardCursor cursor;

                ck_assert_int_eq(shard_store_apply(s, "docs", chs, 2, &sc, NULL), -EINVAL);
                assert_text(s, "docs", "good", NULL);
                ck_assert_int_eq(shard_store_cursor_get(s, "docs", 0, NODE_B, &cursor), -ENOENT);
                ck_assert_int_eq(shard_store_apply(s, "docs", chs, 1, &sc, NULL), 1);
                ck_assert_int_eq(shard_store_cursor_get(s, "docs", 0, NODE_B, &cursor), 0);
                ck_assert_uint_eq(cursor.log_id, 5);
                sc.shard = 4;
                ck_assert_int_eq(shard_store_cursor_set(s, "docs", &sc), -EINVAL);
                sc = (ShardSourceCursor) { NODE_A, 1, { 9, 10 } };
                ck_assert_int_eq(shard_store_cursor_set(s, "docs", &sc), 0);
                ck_assert_int_eq(shard_store_cursor_get(s, "docs", 1, NODE_A, &cursor), 0);
                ck_assert_uint_eq(cursor.seq, 10);
        }
        for (unsigned shard = 0; shard < 4; shard++)
                ck_assert_int_eq(shard_store_foreach_doc(s, "docs", shard, NULL, 0, count_doc, &count), 0);
        ck_assert_uint_eq(count, 4);
        assert_digests_verified(s, "docs", 4);
}
END_TEST

static int count_collection(const ShardCollection *c, void *userdata) {
        (*(unsigned *) userdata)++;
        return 0;
}

static void raw_delete(const char *path, const char *db, const char *key) {
        MDB_env *env;
        MDB_txn *txn;
        MDB_dbi dbi;
        MDB_val k = { strlen(key), (void *) key };

        ck_assert_int_eq(mdb_env_create(&env), 0);
        ck_assert_int_eq(mdb_env_set_maxdbs(env, 8), 0);
        ck_assert_int_eq(mdb_env_open(env, path, 0, 0600), 0);
        ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
        ck_assert_int_eq(mdb_dbi_open(txn, db, 0, &dbi), 0);
        ck_assert_int_eq(mdb_del(txn, dbi, &k, NULL), 0);
        ck_assert_int_eq(mdb_txn_commit(txn), 0);
        mdb_env_close(env);
}

START_TEST(test_drop_and_delete) {
        char id[16];

        {
                _cleanup_(shard_store_freep) ShardStore *s = open_store(path_a, NULL);
                _cleanup_(shard_collection_freep) ShardCollection *c = NULL;
                unsigned shard = (unsigned) shard_of("docs", "doc0", 4), count = 0, n_in_shard = 0;
                ShardInfo info;

                create(s, "docs", 4);
                create(s, "keep", 4);
                for (unsigned i = 0; i < 100; i++) {
                        snprintf(id, sizeof(id), "doc%u", i);
                        ck_assert(put(s, "docs", id, version(10 + i, NODE_A), id));
                        ck_assert(put(s, "keep", id, version(10 + i, NODE_A), id));
                        n_in_shard += shard_of("docs", id, 4) == (int) shard;
                }
                ck_assert_int_eq(shard_store_cursor_set(s, "docs", &(ShardSourceCursor) { NODE_B, shard, { 1, 1 } }), 0);

                /* Dropping a shard removes it and only it. */
                ck_assert_int_eq(shard_store_drop_shard(s, "docs", shard), 0);
                ck_assert_int_eq(shard_store_shard_info(s, "docs", shard, &info), -ENOENT);
                ck_assert_int_eq(shard_store_foreach_doc(s, "docs", shard, NULL, SHARD_READ_TOMBSTONES, count_doc, &count), 0);
                ck_assert_uint_eq(count, 0);
                ck_assert_int_eq(shard_store_cursor_get(s, "docs", shard, NODE_B, &(ShardCursor) {}), -ENOENT);
                assert_text(s, "docs", "doc0", NULL);
                for (unsigned sh = 0; sh < 4; sh++)
                        ck_assert_int_eq(shard_store_foreach_doc(s, "docs", sh, NULL, 0, count_doc, &count), 0);
                ck_assert_uint_eq(count, 100 - n_in_shard);
                ck_assert_int_eq(shard_store_drop_shard(s, "docs", shard), 0);
                ck_assert_int_eq(shard_store_drop_shard(s, "docs", 4), -EINVAL);

                /* Deleting a collection: gone at once, the name free again, other collections kept. */
                ck_assert_int_eq(shard_store_collection_delete(s, "docs"), 0);
                ck_assert_int_eq(shard_store_collection_get(s, "docs", &c), -ENOENT);
                ck_assert_int_eq(shard_store_collection_delete(s, "docs"), -ENOENT);
                create(s, "docs", 4);
                assert_text(s, "docs", "doc1", NULL);
                ck_assert_int_eq(shard_store_shard_info(s, "docs", 0, &info), -ENOENT);
                assert_text(s, "keep", "doc1", "doc1");
                count = 0;
                ck_assert_int_eq(shard_store_foreach_collection(s, count_collection, &count), 0);
                ck_assert_uint_eq(count, 2);
        }
        /* Only "keep" has data left. */
        ck_assert_uint_eq(raw_entries(path_a, "docs"), 100);
        ck_assert_uint_eq(raw_entries(path_a, "log"), 100);

        /* A crash right after a delete committed: the next open removes what is left. */
        raw_delete(path_a, "collections", "keep");
        ck_assert_uint_eq(raw_entries(path_a, "docs"), 100);
        {
                _cleanup_(shard_store_freep) ShardStore *s = open_store(path_a, NULL);
        }
        ck_assert_uint_eq(raw_entries(path_a, "docs"), 0);
        ck_assert_uint_eq(raw_entries(path_a, "log"), 0);
        ck_assert_uint_eq(raw_entries(path_a, "shards"), 0);
}
END_TEST

START_TEST(test_purge_tombstones) {
        ShardStoreConfig config = { .tombstone_age_ms = 1000 };
        _cleanup_(shard_store_freep) ShardStore *s = open_store(path_a, &config);
        ShardInfo info;
        char id[16];
        int purged = 0;

        create(s, "docs", 1);
        /* 600 tombstones, spread over pages, half old, and live documents between them. */
        for (unsigned i = 0; i < 600; i++) {
                snprintf(id, sizeof(id), "t%03u", i);
                ck_assert(delete(s, "docs", id, version(i % 2 ? 5000 : 10000, NODE_A)));
                snprintf(id, sizeof(id), "l%03u", i);
                ck_assert(put(s, "docs", id, version(1, NODE_A), id));
        }
        ck_assert_int_eq(shard_store_purge_tombstones(s, "docs", 0, 5500), 0);
        purged = shard_store_purge_tombstones(s, "docs", 0, 10500);
        ck_assert_int_eq(purged, 300);
        ck_assert_int_eq(shard_store_shard_info(s, "docs", 0, &info), 0);
        ck_assert_uint_eq(info.n_tombstones, 300);
        ck_assert_uint_eq(info.n_live, 600);
        assert_digests_verified(s, "docs", 1);
        ck_assert_int_eq(get_rc(s, "docs", "t001", SHARD_READ_TOMBSTONES), -ENOENT);
        ck_assert_int_eq(get_rc(s, "docs", "t000", SHARD_READ_TOMBSTONES), 0);
        ck_assert_int_eq(shard_store_purge_tombstones(s, "docs", 0, 1000000), 300);
        ck_assert_int_eq(shard_store_shard_info(s, "docs", 0, &info), 0);
        ck_assert_uint_eq(info.n_tombstones, 0);
        assert_digests_verified(s, "docs", 1);
}
END_TEST

START_TEST(test_map_grows) {
        ShardStoreConfig config = { .map_size = 1 << 20, .map_size_max = 64 << 20 };
        _cleanup_free_ char *text = malloc(64 * 1024);
        char id[16];

        ck_assert_ptr_nonnull(text);
        memset(text, 'g', 64 * 1024 - 1);
        text[64 * 1024 - 1] = '\0';
        {
                _cleanup_(shard_store_freep) ShardStore *s = open_store(path_a, &config);

                create(s, "docs", 4);
                /* About 6 MiB through a 1 MiB map. */
                for (unsigned i = 0; i < 100; i++) {
                        Change c;

                        snprintf(id, sizeof(id), "g%u", i);
                        change_put(&c, id, version(1 + i, NODE_A), "");
                        c.ch.text = text;
                        c.ch.text_size = strlen(text);
                        ck_assert(apply(s, "docs", &c));
                }
                assert_digests_verified(s, "docs", 4);
        }
        /* At its maximum the map refuses writes with -ENOSPC, and what was committed stays. */
        config.map_size_max = config.map_size = 8 << 20;
        {
                _cleanup_(shard_store_freep) ShardStore *s = open_store(path_a, &config);
                int r = 0;

                for (unsigned i = 100; i < 400 && r >= 0; i++) {
                        Change c;

                        snprintf(id, sizeof(id), "g%u", i);
                        change_put(&c, id, version(1 + i, NODE_A), "");
                        c.ch.text = text;
                        c.ch.text_size = strlen(text);
                        r = shard_store_apply(s, "docs", &c.ch, 1, NULL, NULL);
                }
                ck_assert_int_eq(r, -ENOSPC);
                assert_text(s, "docs", "g99", text);
                assert_digests_verified(s, "docs", 4);
        }
}
END_TEST

/* Writes documents from `first` on until killed, reporting each one on fd once apply returned. */
static _Noreturn void write_until_killed(const char *path, unsigned first, int fd) {
        ShardStore *s = NULL;

        if (shard_store_open(path, NULL, &s) < 0)
                _exit(EXIT_FAILURE);
        for (unsigned i = first;; i++) {
                Change c;
                char id[16];

                snprintf(id, sizeof(id), "k%u", i);
                change_put(&c, id, version(1 + i, NODE_A), id);
                /* 0 when this write committed before the last kill, unreported. */
                if (shard_store_apply(s, "docs", &c.ch, 1, NULL, NULL) < 0 ||
                    write(fd, &i, sizeof(i)) != sizeof(i))
                        _exit(EXIT_FAILURE);
        }
}

START_TEST(test_kill_9) {
        unsigned next = 0, acked = 0;

        {
                _cleanup_(shard_store_freep) ShardStore *s = open_store(path_a, NULL);

                create(s, "docs", 4);
        }
        srand((unsigned) time(NULL));
        for (unsigned round = 0; round < 8; round++) {
                struct timespec pause = { 0, (long) (20 + rand() % 80) * 1000000L };
                int fds[2], status;
                unsigned i;
                pid_t pid;

                ck_assert_int_eq(pipe(fds), 0);
                pid = fork();
                ck_assert_int_ge(pid, 0);
                if (pid == 0) {
                        close(fds[0]);
                        write_until_killed(path_a, next, fds[1]);
                }
                close(fds[1]);
                (void) nanosleep(&pause, NULL);
                ck_assert_int_eq(kill(pid, SIGKILL), 0);
                ck_assert_int_eq(waitpid(pid, &status, 0), pid);
                ck_assert(WIFSIGNALED(status));
                while (read(fds[0], &i, sizeof(i)) == sizeof(i)) {
                        ck_assert_uint_eq(i, next);
                        next++;
                        acked++;
                }
                close(fds[0]);

                /* Every acknowledged write is there, and the shards add up. */
                {
                        _cleanup_(shard_store_freep) ShardStore *s = open_store(path_a, NULL);
                        uint64_t live = 0;

                        for (unsigned k = 0; k < next; k++) {
                                char id[16];

                                snprintf(id, sizeof(id), "k%u", k);
                                assert_text(s, "docs", id, id);
                        }
                        assert_digests_verified(s, "docs", 4);
                        for (unsigned shard = 0; shard < 4; shard++) {
                                ShardInfo info;

                                if (shard_store_shard_info(s, "docs", shard, &info) == 0) {
                                        live += info.n_live;
                                        ck_assert_uint_eq(info.head.seq, info.n_live);
                                }
                        }
                        /* The write in flight when the kill came may have committed, unreported. */
                        ck_assert(live == next || live == next + 1);
                        next = (unsigned) live;
                }
        }
        ck_assert_uint_gt(acked, 8);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shard-store");
        TCase *pure = tcase_create("pure"), *store = tcase_create("store");

        tcase_add_test(pure, test_clock);
        tcase_add_test(pure, test_digest_pure);
        suite_add_tcase(s, pure);

        tcase_add_checked_fixture(store, setup, teardown);
        tcase_set_timeout(store, 60);
        tcase_add_test(store, test_round_trip);
        tcase_add_test(store, test_last_writer_wins);
        tcase_add_test(store, test_log_catch_up);
        tcase_add_test(store, test_log_drop_new_log);
        tcase_add_test(store, test_digest_order_independent);
        tcase_add_test(store, test_foreach_and_reopen);
        tcase_add_test(store, test_corrupt_values);
        tcase_add_test(store, test_limits);
        tcase_add_test(store, test_drop_and_delete);
        tcase_add_test(store, test_purge_tombstones);
        tcase_add_test(store, test_map_grows);
        tcase_add_test(store, test_kill_9);
        suite_add_tcase(s, store);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
