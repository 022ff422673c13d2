/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The shard store on LMDB (shard-store.h; the layout is in docs/shard-store.md). Every value is
 * framed and checked before use (shard-value.c); every write is one durable transaction (LMDB's
 * calls in shard-db.c): document, log entry and shard state commit together or not at all. */
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <math.h>
#include <stddef.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "json-cleanup.h"
#include "json-document.h"
#include "shard-db.h"
#include "shard-store.h"

/* Documents and log entries a drop removes per transaction. */
#define DROP_CHUNK 4096

/* ---- The environment ---- */

struct ShardStore {
        MDB_env *env;
        MDB_dbi meta;           /* "format", "next-collection", "max-version" */
        MDB_dbi collections;    /* name -> JSON config */
        MDB_dbi docs;           /* cid be32, shard be16, id -> document */
        MDB_dbi log;            /* cid be32, shard be16, seq be64 -> log entry */
        MDB_dbi shards;         /* cid be32, shard be16 -> shard state */
        MDB_dbi cursors;        /* cid be32, shard be16, source -> cursor */
        ShardStoreConfig config;
        bool in_callback;
};

/* Runs a caller's callback; the store refuses calls from inside it (-EBUSY). */
#define CALLBACK(s, call)                               \
        ({                                              \
                int _r_;                                \
                (s)->in_callback = true;                \
                _r_ = (call);                           \
                (s)->in_callback = false;               \
                _r_;                                    \
        })

static int read_begin(ShardStore *s, MDB_txn **ret) {
        if (s->in_callback)
                return -EBUSY;
        return shard_db_errno(mdb_txn_begin(s->env, NULL, MDB_RDONLY, ret));
}

typedef int (*WriteFunc)(ShardStore *s, MDB_txn *txn, void *userdata);

/* Runs f in a write transaction and commits it when f returns >= 0 (which is returned). On
 * MDB_MAP_FULL the map doubles, up to map_size_max, and f runs again from the start: f must
 * keep nothing across runs but what it writes to the transaction. */
static int store_write(ShardStore *s, WriteFunc f, void *userdata) {
        if (s->in_callback)
                return -EBUSY;
        for (;;) {
                _cleanup_txn_ MDB_txn *txn = NULL;
                MDB_envinfo info;
                int r;

                r = shard_db_errno(mdb_txn_begin(s->env, NULL, 0, &txn));
                if (r < 0)
                        return r;
                r = f(s, txn, userdata);
                if (r >= 0) {
                        int k = shard_db_errno(mdb_txn_commit(TAKE_PTR(txn)));

                        if (k >= 0)
                                return r;
                        r = k;
                }
                if (r != -EFBIG)
                        return r;
                if (txn)
                        mdb_txn_abort(TAKE_PTR(txn));
                /* No transaction of ours is open here (callbacks may not write), which is what
                 * mdb_env_set_mapsize() asks. */
                (void) mdb_env_info(s->env, &info);
                if (info.me_mapsize >= s->config.map_size_max)
                        return -ENOSPC;
                r = shard_db_errno(mdb_env_set_mapsize(s->env, MIN((uint64_t) info.me_mapsize * 2,
                                                                    s->config.map_size_max)));
                if (r < 0)
                        return r;
        }
}

/* ---- Collections ---- */

/* A stored config: its name is the key, its value framed JSON. */
static int collection_decode(const MDB_val *key, const MDB_val *val, ShardCollection **ret) {
        uint16_t flags;
        ShardReader r;

        if (shard_frame_open(val->mv_data, val->mv_size, SHARD_VALUE_COLLECTION, &flags, &r) < 0)
                return -EBADMSG;
        return shard_collection_from_json(key->mv_data, key->mv_size, (const char *) r.p, r.left, ret);
}

static int collection_load(ShardStore *s, MDB_txn *txn, const char *name, ShardCollection **ret) {
        MDB_val key, val;
        int r;

        if (!shard_collection_name_valid(name))
                return -EINVAL;
        key = (MDB_val) { strlen(name), (void *) name };
        r = shard_db_errno(mdb_get(txn, s->collections, &key, &val));
        if (r < 0)
                return r;
        return collection_decode(&key, &val, ret);
}

/* Passed for a shard number: the caller names no shard. */
#define SHARD_NONE UINT_MAX

/* The collection and a shard number checked against it (unless SHARD_NONE). */
static int collection_load_shard(ShardStore *s, MDB_txn *txn, const char *name, unsigned shard, ShardCollection **ret) {
        _cleanup_(shard_collection_freep) ShardCollection *c = NULL;
        int r;

        r = collection_load(s, txn, name, &c);
        if (r < 0)
                return r;
        if (shard != SHARD_NONE && shard >= c->n_shards)
                return -EINVAL;
        *ret = TAKE_PTR(c);
        return 0;
}

/* A read transaction, the collection and a shard number checked against it (unless SHARD_NONE). */
static int read_shard(ShardStore *s, const char *collection, unsigned shard, MDB_txn **ret_txn, ShardCollection **ret_c) {
        _cleanup_txn_ MDB_txn *txn = NULL;
        int r;

        r = read_begin(s, &txn);
        if (r < 0)
                return r;
        r = collection_load_shard(s, txn, collection, shard, ret_c);
        if (r < 0)
                return r;
        *ret_txn = TAKE_PTR(txn);
        return 0;
}

/* ---- Documents ---- */

void shard_doc_embedding(const ShardDoc *d, float *ret) {
#if __BYTE_ORDER == __LITTLE_ENDIAN
        memcpy(ret, d->embedding, d->dimension * sizeof(float));
#else
        for (unsigned i = 0; i < d->dimension; i++) {
                uint32_t u;

                memcpy(&u, (const uint8_t *) d->embedding + i * sizeof(u), sizeof(u));
                u = le32toh(u);
                memcpy(&ret[i], &u, sizeof(u));
        }
#endif
}

static int doc_write(ShardStore *s, MDB_txn *txn, const uint8_t *key, size_t key_size, const ShardChange *ch) {
        uint8_t *v;
        int r;

        r = shard_db_reserve(txn, s->docs, key, key_size, shard_doc_payload_size(ch), &v);
        if (r < 0)
                return r;
        shard_doc_encode(v, ch);
        return 0;
}

/* An owned copy of a view: one allocation, strings NUL-terminated, embedding aligned. */
static int doc_copy(const ShardDoc *d, ShardDoc **ret) {
        size_t id_size = strlen(d->id), floats = (size_t) d->dimension * sizeof(float);
        ShardDoc *c;
        char *p;

        c = malloc(sizeof(ShardDoc) + floats + d->text_size + 1 + d->metadata_size + 1 + id_size + 1);
        if (!c)
                return -ENOMEM;
        *c = *d;
        p = (char *) (c + 1);
        shard_doc_embedding(d, (float *) p);
        c->embedding = p;
        p += floats;
        c->text = memcpy(p, d->text, d->text_size);
        p[d->text_size] = '\0';
        p += d->text_size + 1;
        if (d->metadata) {
                c->metadata = memcpy(p, d->metadata, d->metadata_size);
                p[d->metadata_size] = '\0';
                p += d->metadata_size + 1;
        }
        c->id = memcpy(p, d->id, id_size + 1);
        *ret = c;
        return 0;
}

/* The document under key (docs): a view, and the size of its value. -ENOENT, -EBADMSG. */
static int doc_lookup(ShardStore *s, MDB_txn *txn, const ShardCollection *c, const uint8_t *key, size_t key_size,
                      char id[static SHARD_ID_MAX + 1], ShardDoc *ret, size_t *ret_size) {
        MDB_val k = { key_size, (void *) key }, val;
        int r;

        r = shard_db_errno(mdb_get(txn, s->docs, &k, &val));
        if (r < 0)
                return r;
        r = shard_doc_decode(k.mv_data, k.mv_size, val.mv_data, val.mv_size, c->dimension, id, ret);
        if (r < 0)
                return r;
        if (ret_size)
                *ret_size = val.mv_size;
        return 0;
}

static ShardDigest doc_digest(const ShardDoc *d) {
        return shard_digest_entry(d->id, strlen(d->id), &d->version, d->deleted);
}

int shard_change_validate(const ShardCollection *c, const ShardChange *ch) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        size_t id_size;
        int r;

        if (!ch->id || !IN_SET(ch->op, SHARD_OP_PUT, SHARD_OP_DELETE) || (ch->version.hlc == 0 && ch->version.node == 0))
                return -EINVAL;
        id_size = strnlen(ch->id, SHARD_ID_MAX + 1);
        if (id_size == 0)
                return -EINVAL;
        if (id_size > SHARD_ID_MAX)
                return -E2BIG;
        if (ch->op == SHARD_OP_DELETE)
                return 0;

        if (ch->text_size > SHARD_TEXT_MAX || ch->metadata_size > SHARD_METADATA_MAX)
                return -E2BIG;
        if (ch->dimension != c->dimension || !ch->embedding || (!ch->text && ch->text_size > 0) ||
            (!ch->metadata && ch->metadata_size > 0))
                return -EINVAL;
        for (unsigned i = 0; i < ch->dimension; i++)
                if (!isfinite(ch->embedding[i]))
                        return -EINVAL;
        if (ch->metadata_size > 0) {
                r = json_document_parse(ch->metadata, ch->metadata_size, &o);
                if (r == -ENOMEM)
                        return r;
                if (r < 0 || !json_object_is_type(o, json_type_object))
                        return -EINVAL;
        }
        return 0;
}

/* ---- Shard state ---- */

typedef struct ShardState {
        ShardInfo info;
        uint16_t flags;
        bool loaded;            /* read (or made) in this transaction */
        bool dirty;             /* to be written back */
        bool fresh;             /* made in this transaction: the shard had no state */
} ShardState;

static int state_decode(const MDB_val *key, const MDB_val *val, ShardState *ret) {
        ShardState st = { .loaded = true };
        int r;

        r = shard_state_decode(key->mv_data, key->mv_size, val->mv_data, val->mv_size, &st.info, &st.flags);
        if (r < 0)
                return r;
        *ret = st;
        return 0;
}

/* -ENOENT when the shard has no state; a shard being dropped has none as far as callers go. */
static int state_read(ShardStore *s, MDB_txn *txn, uint32_t cid, unsigned shard, ShardState *ret) {
        uint8_t key[SHARD_KEY_SIZE];
        MDB_val k = { shard_key_shard(key, cid, shard), key }, val;
        ShardState st;
        int r;

        r = shard_db_errno(mdb_get(txn, s->shards, &k, &val));
        if (r < 0)
                return r;
        r = state_decode(&k, &val, &st);
        if (r < 0)
                return r;
        if (st.flags & SHARD_STATE_DROPPING)
                return -ENOENT;
        *ret = st;
        return 0;
}

/* The state of a shard new on this node, with a new log: a random id, so no cursor of an earlier
 * log of the same shard (dropped, or lost with a wiped store) matches it. */
static int state_new(unsigned shard, ShardState *ret) {
        uint64_t log_id = 0;

        while (log_id == 0)
                if (getrandom(&log_id, sizeof(log_id), 0) != sizeof(log_id))
                        return -errno_or_eio();
        *ret = (ShardState) {
                .info = { .shard = shard, .head = { .log_id = log_id } },
                .loaded = true,
                .dirty = true,
                .fresh = true,
        };
        return 0;
}

static int state_read_or_new(ShardStore *s, MDB_txn *txn, uint32_t cid, unsigned shard, ShardState *ret) {
        int r;

        r = state_read(s, txn, cid, shard, ret);
        return r == -ENOENT ? state_new(shard, ret) : r;
}

static int state_write(ShardStore *s, MDB_txn *txn, uint32_t cid, const ShardState *st) {
        uint8_t key[SHARD_KEY_SIZE], payload[SHARD_STATE_SIZE];

        shard_state_encode(payload, &st->info);
        return shard_db_put_frame(txn, s->shards, key, shard_key_shard(key, cid, st->info.shard), SHARD_VALUE_STATE,
                                  st->flags, payload, sizeof(payload));
}

/* Adds (sign > 0) or removes a document's share of the state. */
static void state_account(ShardState *st, const ShardDoc *d, size_t value_size, int sign) {
        ShardDigest e = doc_digest(d);
        uint64_t *count = d->deleted ? &st->info.n_tombstones : &st->info.n_live;

        if (sign > 0) {
                shard_digest_add(&st->info.digest, &e);
                (*count)++;
                st->info.bytes += value_size;
        } else {
                shard_digest_remove(&st->info.digest, &e);
                (*count)--;
                st->info.bytes -= value_size;
        }
        st->dirty = true;
}

/* ---- The log ---- */

static int log_trim_to(ShardStore *s, MDB_txn *txn, uint32_t cid, ShardState *st, uint64_t keep) {
        while (st->info.head.seq - st->info.floor_seq > keep) {
                uint8_t key[SHARD_LOG_KEY_SIZE];
                int r;

                r = shard_db_del(txn, s->log, key, shard_key_log(key, cid, st->info.shard, st->info.floor_seq + 1));
                if (r < 0)
                        return r;
                st->info.floor_seq++;
                st->dirty = true;
        }
        return 0;
}

static int log_append(ShardStore *s, MDB_txn *txn, uint32_t cid, ShardState *st, const ShardChange *ch) {
        uint8_t key[SHARD_LOG_KEY_SIZE], *v;
        int r;

        r = shard_db_reserve(txn, s->log, key, shard_key_log(key, cid, st->info.shard, ++st->info.head.seq),
                       shard_log_payload_size(ch), &v);
        if (r < 0)
                return r;
        st->dirty = true;
        shard_log_encode(v, ch);
        return log_trim_to(s, txn, cid, st, s->config.log_max_entries);
}

/* ---- Meta ---- */

#define META_FORMAT "format"
#define META_NEXT_COLLECTION "next-collection"
#define META_MAX_VERSION "max-version"
#define STORE_FORMAT 1

static int meta_read(ShardStore *s, MDB_txn *txn, const char *name, ShardReader *ret) {
        MDB_val val;
        uint16_t flags;
        int r;

        r = shard_db_get(txn, s->meta, name, strlen(name), &val);
        if (r < 0)
                return r;
        return shard_frame_open(val.mv_data, val.mv_size, SHARD_VALUE_META, &flags, ret);
}

static int meta_write(ShardStore *s, MDB_txn *txn, const char *name, const void *payload, size_t size) {
        return shard_db_put_frame(txn, s->meta, name, strlen(name), SHARD_VALUE_META, 0, payload, size);
}

static int max_version_read(ShardStore *s, MDB_txn *txn, ShardVersion *ret) {
        ShardReader r;
        int k;

        k = meta_read(s, txn, META_MAX_VERSION, &r);
        if (k == -ENOENT) {
                *ret = (ShardVersion) {};
                return 0;
        }
        if (k < 0)
                return k;
        return r.left == SHARD_VERSION_SIZE && shard_read_version(&r, ret) ? 0 : -EBADMSG;
}

/* ---- Writing changes ---- */

static bool source_valid(const char *source) {
        return source && source[0] != '\0' && strnlen(source, SHARD_SOURCE_MAX + 1) <= SHARD_SOURCE_MAX;
}

static int cursor_write(ShardStore *s, MDB_txn *txn, const ShardCollection *c, const ShardSourceCursor *sc) {
        uint8_t key[SHARD_CURSOR_KEY_MAX], payload[SHARD_CURSOR_SIZE];

        if (!source_valid(sc->source) || sc->shard >= c->n_shards)
                return -EINVAL;
        shard_cursor_encode(payload, &sc->cursor);
        return shard_db_put_frame(txn, s->cursors, key,
                                  shard_key_shard_with(key, c->id, sc->shard, sc->source, strlen(sc->source)),
                                  SHARD_VALUE_CURSOR, 0, payload, sizeof(payload));
}

typedef struct ApplyContext {
        const char *collection;
        const ShardChange *changes;
        size_t n_changes;
        const ShardSourceCursor *cursor;
        bool *applied;
} ApplyContext;

/* One change: 1 applied, 0 not newer than what is stored. */
static int apply_one(ShardStore *s, MDB_txn *txn, const ShardCollection *c, ShardState *states, const ShardChange *ch) {
        uint8_t key[SHARD_DOC_KEY_MAX];
        char old_id[SHARD_ID_MAX + 1];
        ShardDoc old, new;
        ShardState *st;
        size_t key_size, old_size;
        int shard, r;

        shard = shard_of(c->name, ch->id, c->n_shards);
        if (shard < 0)
                return shard;
        key_size = shard_key_shard_with(key, c->id, (unsigned) shard, ch->id, strlen(ch->id));
        st = &states[shard];
        if (!st->loaded) {
                r = state_read_or_new(s, txn, c->id, (unsigned) shard, st);
                if (r < 0)
                        return r;
        }

        r = doc_lookup(s, txn, c, key, key_size, old_id, &old, &old_size);
        if (r >= 0) {
                if (!shard_version_newer(&ch->version, &old.version))
                        return 0;
                state_account(st, &old, old_size, -1);
        } else if (r != -ENOENT)
                return r;

        r = doc_write(s, txn, key, key_size, ch);
        if (r < 0)
                return r;
        new = (ShardDoc) { .id = ch->id, .version = ch->version, .deleted = ch->op == SHARD_OP_DELETE };
        state_account(st, &new, SHARD_FRAME_HEADER + shard_doc_payload_size(ch), +1);
        r = log_append(s, txn, c->id, st, ch);
        return r < 0 ? r : 1;
}

static int apply_run(ShardStore *s, MDB_txn *txn, void *userdata) {
        ApplyContext *ctx = userdata;
        _cleanup_(shard_collection_freep) ShardCollection *c = NULL;
        _cleanup_free_ ShardState *states = NULL;
        ShardVersion newest, stored;
        int r, n = 0;

        r = collection_load(s, txn, ctx->collection, &c);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ctx->n_changes; i++) {
                r = shard_change_validate(c, &ctx->changes[i]);
                if (r < 0)
                        return r;
        }
        states = calloc(c->n_shards, sizeof(ShardState));
        if (!states)
                return -ENOMEM;

        r = max_version_read(s, txn, &stored);
        if (r < 0)
                return r;
        newest = stored;
        for (size_t i = 0; i < ctx->n_changes; i++) {
                r = apply_one(s, txn, c, states, &ctx->changes[i]);
                if (r < 0)
                        return r;
                ctx->applied[i] = r > 0;
                n += r;
                if (r > 0 && shard_version_newer(&ctx->changes[i].version, &newest))
                        newest = ctx->changes[i].version;
        }

        for (unsigned i = 0; i < c->n_shards; i++)
                if (states[i].dirty) {
                        r = state_write(s, txn, c->id, &states[i]);
                        if (r < 0)
                                return r;
                }
        if (shard_version_newer(&newest, &stored)) {
                uint8_t payload[SHARD_VERSION_SIZE];
                ShardWriter w = { payload };

                shard_write_version(&w, &newest);
                r = meta_write(s, txn, META_MAX_VERSION, payload, sizeof(payload));
                if (r < 0)
                        return r;
        }
        if (ctx->cursor) {
                r = cursor_write(s, txn, c, ctx->cursor);
                if (r < 0)
                        return r;
        }
        return n;
}

int shard_store_apply(ShardStore *s, const char *collection, const ShardChange *changes, size_t n_changes,
                      const ShardSourceCursor *cursor, bool *ret_applied) {
        _cleanup_free_ bool *applied = NULL;
        ApplyContext ctx;
        int r;

        if (n_changes > SHARD_BATCH_MAX)
                return -E2BIG;
        applied = calloc(MAX(n_changes, (size_t) 1), sizeof(bool));
        if (!applied)
                return -ENOMEM;
        ctx = (ApplyContext) {
                .collection = collection,
                .changes = changes,
                .n_changes = n_changes,
                .cursor = cursor,
                .applied = applied,
        };
        r = store_write(s, apply_run, &ctx);
        if (r >= 0 && ret_applied)
                memcpy(ret_applied, applied, n_changes * sizeof(bool));
        return r;
}

/* ---- Collections, public ---- */

static int collection_create_run(ShardStore *s, MDB_txn *txn, void *userdata) {
        const ShardCollection *c = userdata;
        ShardCollection stored = *c;
        _cleanup_free_ char *json = NULL;
        uint8_t next[4];
        MDB_val key = { strlen(c->name), c->name }, val;
        MDB_stat st;
        size_t size;
        ShardReader r;
        ShardWriter w;
        int k;

        k = shard_db_errno(mdb_get(txn, s->collections, &key, &val));
        if (k >= 0)
                return -EEXIST;
        if (k != -ENOENT)
                return k;
        k = shard_db_errno(mdb_stat(txn, s->collections, &st));
        if (k < 0)
                return k;
        if (st.ms_entries >= s->config.collections_max)
                return -EDQUOT;

        /* Ids count up from 1 and are never reused: data of a deleted collection that is still
         * being removed cannot be mistaken for a new one's. */
        k = meta_read(s, txn, META_NEXT_COLLECTION, &r);
        if (k == -ENOENT)
                stored.id = 1;
        else if (k < 0)
                return k;
        else if (r.left != 4 || !shard_read_be32(&r, &stored.id) || stored.id == 0)
                return -EBADMSG;
        if (stored.id == UINT32_MAX)
                return -EDQUOT;
        w = (ShardWriter) { next };
        shard_write_be32(&w, stored.id + 1);
        k = meta_write(s, txn, META_NEXT_COLLECTION, next, sizeof(next));
        if (k < 0)
                return k;

        k = shard_collection_to_json(&stored, &json, &size);
        if (k < 0)
                return k;
        return shard_db_put_frame(txn, s->collections, c->name, strlen(c->name), SHARD_VALUE_COLLECTION, 0, json, size);
}

int shard_store_collection_create(ShardStore *s, const ShardCollection *c) {
        if (!shard_collection_valid(c))
                return -EINVAL;
        return store_write(s, collection_create_run, (void *) c);
}

int shard_store_collection_get(ShardStore *s, const char *name, ShardCollection **ret) {
        _cleanup_txn_ MDB_txn *txn = NULL;

        return read_shard(s, name, SHARD_NONE, &txn, ret);
}

int shard_store_foreach_collection(ShardStore *s, ShardCollectionFunc f, void *userdata) {
        _cleanup_txn_ MDB_txn *txn = NULL;
        _cleanup_cursor_ MDB_cursor *cur = NULL;
        MDB_val key, val;
        int r;

        r = read_begin(s, &txn);
        if (r < 0)
                return r;
        r = shard_db_errno(mdb_cursor_open(txn, s->collections, &cur));
        for (MDB_cursor_op op = MDB_FIRST; r >= 0; op = MDB_NEXT) {
                _cleanup_(shard_collection_freep) ShardCollection *c = NULL;

                r = shard_db_errno(mdb_cursor_get(cur, &key, &val, op));
                if (r == -ENOENT)
                        return 0;
                if (r >= 0)
                        r = collection_decode(&key, &val, &c);
                if (r < 0)
                        return r;
                r = CALLBACK(s, f(c, userdata));
                if (r != 0)
                        return r;
        }
        return r;
}

/* ---- Dropping shards ---- */

typedef struct DropContext {
        uint32_t cid;
        unsigned shard;
} DropContext;

/* One bounded step of a drop: 1 when there is more to do. The state is marked first, so an
 * interrupted drop is finished by shard_store_open() and the shard reads as not stored. */
static int drop_step(ShardStore *s, MDB_txn *txn, void *userdata) {
        const DropContext *ctx = userdata;
        uint8_t prefix[SHARD_KEY_SIZE];
        MDB_val k = { shard_key_shard(prefix, ctx->cid, ctx->shard), prefix }, val;
        ShardState st;
        int r;

        r = shard_db_errno(mdb_get(txn, s->shards, &k, &val));
        if (r >= 0 && state_decode(&k, &val, &st) >= 0 && !(st.flags & SHARD_STATE_DROPPING)) {
                st.flags |= SHARD_STATE_DROPPING;
                r = state_write(s, txn, ctx->cid, &st);
                if (r < 0)
                        return r;
        } else if (r < 0 && r != -ENOENT)
                return r;

        for (size_t i = 0; i < 2; i++) {
                r = shard_db_delete_prefix(txn, i == 0 ? s->docs : s->log, prefix, sizeof(prefix), DROP_CHUNK);
                if (r != 0)
                        return r < 0 ? r : 1;
        }
        r = shard_db_delete_prefix(txn, s->cursors, prefix, sizeof(prefix), SIZE_MAX);
        if (r < 0)
                return r;
        return shard_db_del(txn, s->shards, prefix, sizeof(prefix));
}

static int drop_cid_shard(ShardStore *s, uint32_t cid, unsigned shard) {
        DropContext ctx = { cid, shard };
        int r;

        do
                r = store_write(s, drop_step, &ctx);
        while (r > 0);
        return r;
}

int shard_store_drop_shard(ShardStore *s, const char *collection, unsigned shard) {
        _cleanup_(shard_collection_freep) ShardCollection *c = NULL;
        _cleanup_txn_ MDB_txn *txn = NULL;
        int r;

        r = read_shard(s, collection, shard, &txn, &c);
        if (r < 0)
                return r;
        mdb_txn_abort(TAKE_PTR(txn));
        return drop_cid_shard(s, c->id, shard);
}

static int cid_cmp(const void *a, const void *b) {
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;

        return x < y ? -1 : x > y;
}

/* Finishes what deletions left: the shards of collections that no longer exist and shards whose
 * drop was interrupted. */
static int store_collect_garbage(ShardStore *s) {
        _cleanup_free_ uint32_t *live = NULL;
        _cleanup_free_ DropContext *drops = NULL;
        size_t n_live = 0, n_drops = 0, n_alloc = 0;
        _cleanup_txn_ MDB_txn *txn = NULL;
        _cleanup_(shard_scan_done) ShardScan sc = {};
        bool all_known = true;
        MDB_stat st;
        int r;

        r = read_begin(s, &txn);
        if (r < 0)
                return r;
        r = shard_db_errno(mdb_stat(txn, s->collections, &st));
        if (r < 0)
                return r;
        live = calloc(st.ms_entries + 1, sizeof(uint32_t));
        if (!live)
                return -ENOMEM;
        r = shard_scan_start(&sc, txn, s->collections, "", 0, NULL, 0);
        while (r >= 0 && n_live < st.ms_entries && (r = shard_scan_next(&sc)) > 0) {
                _cleanup_(shard_collection_freep) ShardCollection *c = NULL;

                if (collection_decode(&sc.key, &sc.val, &c) >= 0)
                        live[n_live++] = c->id;
                else
                        all_known = false;
        }
        if (r < 0)
                return r;
        shard_scan_done(&sc);
        qsort(live, n_live, sizeof(uint32_t), cid_cmp);

        r = shard_scan_start(&sc, txn, s->shards, "", 0, NULL, 0);
        while (r >= 0 && (r = shard_scan_next(&sc)) > 0) {
                ShardState state;
                uint32_t cid;
                unsigned shard;
                bool dropping;

                shard_key_parse_shard(sc.key.mv_data, sc.key.mv_size, &cid, &shard);
                dropping = state_decode(&sc.key, &sc.val, &state) >= 0 && (state.flags & SHARD_STATE_DROPPING);
                /* While a collection's config does not decode, nobody's data counts as left over:
                 * it may be that collection's. */
                if (!dropping && (!all_known || bsearch(&cid, live, n_live, sizeof(uint32_t), cid_cmp)))
                        continue;
                if (n_drops == n_alloc) {
                        DropContext *v = reallocarray(drops, MAX(n_alloc * 2, (size_t) 16), sizeof(DropContext));

                        if (!v)
                                return -ENOMEM;
                        drops = v;
                        n_alloc = MAX(n_alloc * 2, (size_t) 16);
                }
                drops[n_drops++] = (DropContext) { cid, shard };
        }
        if (r < 0)
                return r;
        shard_scan_done(&sc);
        mdb_txn_abort(TAKE_PTR(txn));

        for (size_t i = 0; i < n_drops; i++) {
                r = drop_cid_shard(s, drops[i].cid, drops[i].shard);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int collection_delete_run(ShardStore *s, MDB_txn *txn, void *userdata) {
        const char *name = userdata;
        _cleanup_(shard_collection_freep) ShardCollection *c = NULL;
        int r;

        r = collection_load(s, txn, name, &c);
        if (r < 0 && r != -EBADMSG)
                return r;
        return shard_db_del(txn, s->collections, name, strlen(name));
}

int shard_store_collection_delete(ShardStore *s, const char *name) {
        int r;

        r = store_write(s, collection_delete_run, (void *) name);
        if (r < 0)
                return r;
        return store_collect_garbage(s);
}

/* ---- Reading documents ---- */

/* Called per document of a shard; d is NULL when its value is corrupt. */
typedef int (*DocVisitFunc)(ShardScan *sc, const ShardDoc *d, void *userdata);

/* Visits the documents of a shard by id, after after_id (NULL: all). Stops at the first non-zero
 * return of v and returns it. */
static int docs_visit(ShardStore *s, MDB_txn *txn, const ShardCollection *c, unsigned shard, const char *after_id,
                      DocVisitFunc v, void *userdata) {
        _cleanup_(shard_scan_done) ShardScan sc = {};
        uint8_t prefix[SHARD_KEY_SIZE], from[SHARD_DOC_KEY_MAX];
        size_t from_size = 0;
        int r;

        shard_key_shard(prefix, c->id, shard);
        if (after_id) {
                if (strnlen(after_id, SHARD_ID_MAX + 1) > SHARD_ID_MAX)
                        return -E2BIG;
                from_size = shard_key_shard_with(from, c->id, shard, after_id, strlen(after_id));
        }
        r = shard_scan_start(&sc, txn, s->docs, prefix, sizeof(prefix), after_id ? from : NULL, from_size);
        while (r >= 0 && (r = shard_scan_next(&sc)) > 0) {
                char id[SHARD_ID_MAX + 1];
                ShardDoc d;

                if (after_id && sc.key.mv_size == from_size && memcmp(sc.key.mv_data, from, from_size) == 0)
                        continue;
                r = shard_doc_decode(sc.key.mv_data, sc.key.mv_size, sc.val.mv_data, sc.val.mv_size, c->dimension,
                                     id, &d);
                r = v(&sc, r >= 0 ? &d : NULL, userdata);
                if (r != 0)
                        return r;
        }
        return r;
}

int shard_store_get(ShardStore *s, const char *collection, const char *id, unsigned flags, ShardDoc **ret) {
        _cleanup_(shard_collection_freep) ShardCollection *c = NULL;
        _cleanup_txn_ MDB_txn *txn = NULL;
        uint8_t key[SHARD_DOC_KEY_MAX];
        char buf[SHARD_ID_MAX + 1];
        size_t id_size = id ? strnlen(id, SHARD_ID_MAX + 1) : 0;
        ShardDoc d;
        int shard, r;

        if (id_size == 0)
                return -EINVAL;
        if (id_size > SHARD_ID_MAX)
                return -E2BIG;
        r = read_shard(s, collection, SHARD_NONE, &txn, &c);
        if (r < 0)
                return r;
        shard = shard_of(c->name, id, c->n_shards);
        if (shard < 0)
                return shard;
        r = doc_lookup(s, txn, c, key, shard_key_shard_with(key, c->id, (unsigned) shard, id, id_size), buf, &d, NULL);
        if (r < 0)
                return r;
        if (d.deleted && !(flags & SHARD_READ_TOMBSTONES))
                return -ENOENT;
        return doc_copy(&d, ret);
}

typedef struct ForeachDoc {
        ShardStore *store;
        unsigned flags;
        ShardDocFunc f;
        void *userdata;
} ForeachDoc;

static int foreach_doc_visit(ShardScan *sc, const ShardDoc *d, void *userdata) {
        ForeachDoc *ctx = userdata;

        if (!d)
                return -EBADMSG;
        if (d->deleted && !(ctx->flags & SHARD_READ_TOMBSTONES))
                return 0;
        return CALLBACK(ctx->store, ctx->f(d, ctx->userdata));
}

int shard_store_foreach_doc(ShardStore *s, const char *collection, unsigned shard, const char *after_id,
                            unsigned flags, ShardDocFunc f, void *userdata) {
        _cleanup_(shard_collection_freep) ShardCollection *c = NULL;
        _cleanup_txn_ MDB_txn *txn = NULL;
        ForeachDoc ctx = { s, flags, f, userdata };
        int r;

        r = read_shard(s, collection, shard, &txn, &c);
        if (r < 0)
                return r;
        return docs_visit(s, txn, c, shard, after_id, foreach_doc_visit, &ctx);
}

/* ---- Shard state, public ---- */

int shard_store_shard_info(ShardStore *s, const char *collection, unsigned shard, ShardInfo *ret) {
        _cleanup_(shard_collection_freep) ShardCollection *c = NULL;
        _cleanup_txn_ MDB_txn *txn = NULL;
        ShardState st;
        int r;

        r = read_shard(s, collection, shard, &txn, &c);
        if (r < 0)
                return r;
        r = state_read(s, txn, c->id, shard, &st);
        if (r < 0)
                return r;
        *ret = st.info;
        return 0;
}

int shard_store_foreach_shard(ShardStore *s, const char *collection, ShardInfoFunc f, void *userdata) {
        _cleanup_(shard_collection_freep) ShardCollection *c = NULL;
        _cleanup_txn_ MDB_txn *txn = NULL;
        _cleanup_(shard_scan_done) ShardScan sc = {};
        uint8_t prefix[SHARD_COLLECTION_KEY_SIZE];
        int r;

        r = read_shard(s, collection, SHARD_NONE, &txn, &c);
        if (r < 0)
                return r;
        r = shard_scan_start(&sc, txn, s->shards, prefix, shard_key_collection(prefix, c->id), NULL, 0);
        while (r >= 0 && (r = shard_scan_next(&sc)) > 0) {
                ShardState st;

                r = state_decode(&sc.key, &sc.val, &st);
                if (r < 0)
                        return r;
                if (st.flags & SHARD_STATE_DROPPING)
                        continue;
                r = CALLBACK(s, f(&st.info, userdata));
                if (r != 0)
                        return r;
        }
        return r;
}

static int digest_visit(ShardScan *sc, const ShardDoc *d, void *userdata) {
        ShardState *st = userdata;

        if (!d)
                return -EBADMSG;
        state_account(st, d, sc->val.mv_size, +1);
        return 0;
}

int shard_store_digest_compute(ShardStore *s, const char *collection, unsigned shard,
                               ShardDigest *ret_digest, uint64_t *ret_entries) {
        _cleanup_(shard_collection_freep) ShardCollection *c = NULL;
        _cleanup_txn_ MDB_txn *txn = NULL;
        ShardState st = {};
        int r;

        r = read_shard(s, collection, shard, &txn, &c);
        if (r < 0)
                return r;
        r = docs_visit(s, txn, c, shard, NULL, digest_visit, &st);
        if (r < 0)
                return r;
        *ret_digest = st.info.digest;
        if (ret_entries)
                *ret_entries = st.info.n_live + st.info.n_tombstones;
        return 0;
}

/* Maintenance of one shard (rebuild, purge, trim) in one write transaction. */
typedef struct ShardJob ShardJob;
struct ShardJob {
        const char *collection;
        unsigned shard;
        uint64_t arg;           /* purge: the cutoff in ms; trim: entries to keep */
        /* The work, on the loaded state (purge, trim); the state is written back when dirty. */
        int (*step)(ShardStore *s, MDB_txn *txn, const ShardCollection *c, ShardJob *job);
        ShardState state;
        uint64_t count;         /* removed */
};

static int rebuild_visit(ShardScan *sc, const ShardDoc *d, void *userdata) {
        ShardJob *job = userdata;

        if (d) {
                state_account(&job->state, d, sc->val.mv_size, +1);
                return 0;
        }
        job->count++;
        return shard_scan_delete(sc);
}

static int rebuild_run(ShardStore *s, MDB_txn *txn, void *userdata) {
        ShardJob *job = userdata;
        _cleanup_(shard_collection_freep) ShardCollection *c = NULL;
        int r;

        r = collection_load_shard(s, txn, job->collection, job->shard, &c);
        if (r < 0)
                return r;
        job->count = 0;
        r = state_read(s, txn, c->id, job->shard, &job->state);
        if (r == -EBADMSG) {
                /* A corrupt state takes its log along: a new log, so that no cursor is read against
                 * entries whose head and floor are lost. */
                uint8_t prefix[SHARD_KEY_SIZE];

                r = shard_db_delete_prefix(txn, s->log, prefix, shard_key_shard(prefix, c->id, job->shard), SIZE_MAX);
                if (r < 0)
                        return r;
                r = -ENOENT;
        }
        if (r == -ENOENT)
                r = state_new(job->shard, &job->state);
        if (r < 0)
                return r;
        job->state.info.digest = (ShardDigest) {};
        job->state.info.n_live = job->state.info.n_tombstones = job->state.info.bytes = 0;
        r = docs_visit(s, txn, c, job->shard, NULL, rebuild_visit, job);
        if (r < 0)
                return r;
        /* A shard that had no state and has no documents stays without one. */
        if (job->state.fresh && job->state.info.n_live + job->state.info.n_tombstones == 0)
                return 0;
        return state_write(s, txn, c->id, &job->state);
}

int shard_store_shard_rebuild(ShardStore *s, const char *collection, unsigned shard, uint64_t *ret_removed) {
        ShardJob job = { .collection = collection, .shard = shard };
        int r;

        r = store_write(s, rebuild_run, &job);
        if (r < 0)
                return r;
        if (ret_removed)
                *ret_removed = job.count;
        return 0;
}

static int purge_visit(ShardScan *sc, const ShardDoc *d, void *userdata) {
        ShardJob *job = userdata;

        if (!d)
                return -EBADMSG;
        if (!d->deleted || shard_hlc_ms(d->version.hlc) >= job->arg)
                return 0;
        state_account(&job->state, d, sc->val.mv_size, -1);
        job->count++;
        return shard_scan_delete(sc);
}

static int purge_step(ShardStore *s, MDB_txn *txn, const ShardCollection *c, ShardJob *job) {
        return docs_visit(s, txn, c, job->shard, NULL, purge_visit, job);
}

/* Runs job->step on a shard that has a state; a shard without one has nothing to do. */
static int job_run(ShardStore *s, MDB_txn *txn, void *userdata) {
        ShardJob *job = userdata;
        _cleanup_(shard_collection_freep) ShardCollection *c = NULL;
        int r;

        job->count = 0;
        r = collection_load_shard(s, txn, job->collection, job->shard, &c);
        if (r < 0)
                return r;
        r = state_read(s, txn, c->id, job->shard, &job->state);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        r = job->step(s, txn, c, job);
        if (r < 0)
                return r;
        return job->state.dirty ? state_write(s, txn, c->id, &job->state) : 0;
}

int shard_store_purge_tombstones(ShardStore *s, const char *collection, unsigned shard, uint64_t now_ms) {
        ShardJob job = { .collection = collection, .shard = shard, .step = purge_step };
        int r;

        /* The cutoff, in the ms of the versions: tombstones older than it go. */
        job.arg = now_ms > s->config.tombstone_age_ms ? now_ms - s->config.tombstone_age_ms : 0;
        r = store_write(s, job_run, &job);
        return r < 0 ? r : (int) MIN(job.count, (uint64_t) INT_MAX);
}

/* ---- The log, public ---- */

static bool cursor_usable(const ShardInfo *i, const ShardCursor *c) {
        if (c->log_id == 0 && c->seq == 0)
                return i->floor_seq == 0;
        return c->log_id == i->head.log_id && c->seq >= i->floor_seq && c->seq <= i->head.seq;
}

int shard_store_log_after(ShardStore *s, const char *collection, unsigned shard, const ShardCursor *cursor,
                          size_t max, ShardLogFunc f, void *userdata) {
        _cleanup_(shard_collection_freep) ShardCollection *c = NULL;
        _cleanup_txn_ MDB_txn *txn = NULL;
        _cleanup_(shard_scan_done) ShardScan sc = {};
        uint8_t prefix[SHARD_KEY_SIZE], from[SHARD_LOG_KEY_SIZE];
        ShardState st;
        int r, n = 0;

        r = read_shard(s, collection, shard, &txn, &c);
        if (r < 0)
                return r;
        r = state_read(s, txn, c->id, shard, &st);
        if (r < 0)
                return r;
        if (!cursor_usable(&st.info, cursor))
                return -ESTALE;

        shard_key_shard(prefix, c->id, shard);
        r = shard_scan_start(&sc, txn, s->log, prefix, sizeof(prefix), from,
                             shard_key_log(from, c->id, shard, cursor->seq + 1));
        while (r >= 0 && (max == 0 || (size_t) n < max) && n < INT_MAX && (r = shard_scan_next(&sc)) > 0) {
                char id[SHARD_ID_MAX + 1], doc_id[SHARD_ID_MAX + 1];
                uint8_t key[SHARD_DOC_KEY_MAX];
                ShardLogEntry e;
                ShardDoc d;

                r = shard_log_decode(sc.key.mv_data, sc.key.mv_size, sc.val.mv_data, sc.val.mv_size, id, &e);
                if (r < 0)
                        return r;
                r = doc_lookup(s, txn, c, key, shard_key_shard_with(key, c->id, shard, e.id, strlen(e.id)), doc_id,
                               &d, NULL);
                if (r < 0 && r != -ENOENT)
                        return r;
                r = CALLBACK(s, f(&e, r >= 0 ? &d : NULL, userdata));
                if (r != 0)
                        return r;
                n++;
        }
        return r < 0 ? r : n;
}

static int trim_step(ShardStore *s, MDB_txn *txn, const ShardCollection *c, ShardJob *job) {
        return log_trim_to(s, txn, c->id, &job->state, job->arg);
}

int shard_store_log_trim(ShardStore *s, const char *collection, unsigned shard, uint64_t keep) {
        ShardJob job = { .collection = collection, .shard = shard, .arg = keep, .step = trim_step };

        return store_write(s, job_run, &job);
}

/* ---- Cursors ---- */

int shard_store_cursor_get(ShardStore *s, const char *collection, unsigned shard, const char *source,
                           ShardCursor *ret) {
        _cleanup_(shard_collection_freep) ShardCollection *c = NULL;
        _cleanup_txn_ MDB_txn *txn = NULL;
        uint8_t key[SHARD_CURSOR_KEY_MAX];
        MDB_val val;
        int r;

        if (!source_valid(source))
                return -EINVAL;
        r = read_shard(s, collection, shard, &txn, &c);
        if (r < 0)
                return r;
        r = shard_db_get(txn, s->cursors, key, shard_key_shard_with(key, c->id, shard, source, strlen(source)), &val);
        if (r < 0)
                return r;
        return shard_cursor_decode(val.mv_data, val.mv_size, ret);
}

typedef struct CursorSet {
        const char *collection;
        const ShardSourceCursor *cursor;
} CursorSet;

static int cursor_set_run(ShardStore *s, MDB_txn *txn, void *userdata) {
        const CursorSet *ctx = userdata;
        _cleanup_(shard_collection_freep) ShardCollection *c = NULL;
        int r;

        r = collection_load(s, txn, ctx->collection, &c);
        if (r < 0)
                return r;
        return cursor_write(s, txn, c, ctx->cursor);
}

int shard_store_cursor_set(ShardStore *s, const char *collection, const ShardSourceCursor *cursor) {
        return store_write(s, cursor_set_run, &(CursorSet) { collection, cursor });
}

int shard_store_max_version(ShardStore *s, ShardVersion *ret) {
        _cleanup_txn_ MDB_txn *txn = NULL;
        int r;

        r = read_begin(s, &txn);
        if (r < 0)
                return r;
        return max_version_read(s, txn, ret);
}

/* ---- Opening ---- */

static int open_run(ShardStore *s, MDB_txn *txn, void *userdata) {
        static const struct {
                const char *name;
                size_t offset;
        } dbs[] = {
                { "meta", offsetof(ShardStore, meta) },
                { "collections", offsetof(ShardStore, collections) },
                { "docs", offsetof(ShardStore, docs) },
                { "log", offsetof(ShardStore, log) },
                { "shards", offsetof(ShardStore, shards) },
                { "cursors", offsetof(ShardStore, cursors) },
        };
        uint8_t payload[4];
        ShardWriter w = { payload };
        uint32_t format;
        ShardReader r;
        int k;

        for (size_t i = 0; i < ELEMENTSOF(dbs); i++) {
                k = shard_db_errno(mdb_dbi_open(txn, dbs[i].name, MDB_CREATE,
                                                (MDB_dbi *) ((uint8_t *) s + dbs[i].offset)));
                if (k < 0)
                        return k;
        }
        k = meta_read(s, txn, META_FORMAT, &r);
        if (k >= 0)
                return r.left == 4 && shard_read_be32(&r, &format) && format == STORE_FORMAT ? 0 : -EMEDIUMTYPE;
        if (k != -ENOENT)
                return k;
        shard_write_be32(&w, STORE_FORMAT);
        return meta_write(s, txn, META_FORMAT, payload, sizeof(payload));
}

/* LMDB syncs the files it writes, not the directory that names them: without this a power
 * loss right after the first start could lose data.mdb itself. */
static int fsync_directory(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0 || fsync(fd) < 0)
                return -errno_or_eio();
        return 0;
}

int shard_store_open(const char *path, const ShardStoreConfig *config, ShardStore **ret) {
        _cleanup_(shard_store_freep) ShardStore *s = NULL;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        if (config)
                s->config = *config;
        if (s->config.map_size == 0)
                s->config.map_size = SHARD_STORE_MAP_SIZE_DEFAULT;
        if (s->config.map_size_max == 0)
                s->config.map_size_max = 8 * s->config.map_size;
        s->config.map_size_max = MAX(s->config.map_size_max, s->config.map_size);
        if (s->config.log_max_entries == 0)
                s->config.log_max_entries = SHARD_STORE_LOG_MAX_DEFAULT;
        if (s->config.tombstone_age_ms == 0)
                s->config.tombstone_age_ms = SHARD_STORE_TOMBSTONE_AGE_DEFAULT_MS;
        if (s->config.collections_max == 0)
                s->config.collections_max = SHARD_STORE_COLLECTIONS_MAX_DEFAULT;

        if (mkdir(path, 0700) < 0 && errno != EEXIST)
                return -errno;
        r = shard_db_errno(mdb_env_create(&s->env));
        if (r < 0)
                return r;
        r = shard_db_errno(mdb_env_set_maxdbs(s->env, 6));
        if (r < 0)
                return r;
        r = shard_db_errno(mdb_env_set_mapsize(s->env, s->config.map_size));
        if (r < 0)
                return r;
        /* No MDB_NOSYNC, MDB_NOMETASYNC, MDB_WRITEMAP or MDB_MAPASYNC: a commit returns after the
         * data pages and then the meta page are on disk (docs/shard-store.md, crash safety). */
        r = shard_db_errno(mdb_env_open(s->env, path, 0, 0600));
        if (r < 0)
                return r;
        /* Reader slots of a process killed with -9 are freed here instead of pinning old pages. */
        (void) mdb_reader_check(s->env, NULL);
        r = store_write(s, open_run, NULL);
        if (r < 0)
                return r;
        r = fsync_directory(path);
        if (r < 0)
                return r;
        r = store_collect_garbage(s);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

ShardStore *shard_store_free(ShardStore *s) {
        if (!s)
                return NULL;
        if (s->env)
                mdb_env_close(s->env);
        free(s);
        return NULL;
}
