/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The shard store: a node's collections, documents, per-shard change logs, digests and catch-up
 * cursors in one LMDB environment (docs/shard-store.md). Disk I/O but no loop and no bus: the
 * daemon calls it from its one thread, test-shard-store drives it in a temporary directory. */
#pragma once

#include "shard-collection.h"
#include "shard-digest.h"
#include "shard-version.h"

/* Hard limits; beyond them a write is refused with -E2BIG (sizes) or -EINVAL (a collection's are in
 * shard-collection.h). */
#define SHARD_ID_MAX 256                        /* bytes of a document id */
#define SHARD_TEXT_MAX (1024 * 1024)            /* bytes of a document's text */
#define SHARD_METADATA_MAX (64 * 1024)          /* bytes of a document's metadata (a JSON object) */
#define SHARD_SOURCE_MAX 64                     /* bytes of a cursor's source (a node id) */
#define SHARD_BATCH_MAX 65536                   /* changes in one shard_store_apply() */

#define SHARD_STORE_MAP_SIZE_DEFAULT (UINT64_C(8) << 30)
#define SHARD_STORE_LOG_MAX_DEFAULT 100000                      /* log entries kept per shard */
#define SHARD_STORE_TOMBSTONE_AGE_DEFAULT_MS (UINT64_C(7) * 24 * 3600 * 1000)
#define SHARD_STORE_COLLECTIONS_MAX_DEFAULT 1024

typedef struct ShardStoreConfig {
        uint64_t map_size;              /* 0: SHARD_STORE_MAP_SIZE_DEFAULT */
        uint64_t map_size_max;          /* the map doubles on MDB_MAP_FULL up to this; 0: 8 x map_size */
        uint64_t log_max_entries;       /* per shard; 0: SHARD_STORE_LOG_MAX_DEFAULT */
        uint64_t tombstone_age_ms;      /* 0: SHARD_STORE_TOMBSTONE_AGE_DEFAULT_MS */
        unsigned collections_max;       /* 0: SHARD_STORE_COLLECTIONS_MAX_DEFAULT */
} ShardStoreConfig;

typedef struct ShardStore ShardStore;

/* Opens (creating when missing, 0700) the environment in directory path; config NULL or zero
 * fields: defaults. Finishes the deletions of collections a crash interrupted. -EMEDIUMTYPE for a
 * store of an unknown format, or the errno of what failed. */
int shard_store_open(const char *path, const ShardStoreConfig *config, ShardStore **ret);
ShardStore *shard_store_free(ShardStore *s);
DEFINE_TRIVIAL_CLEANUP_FUNC(ShardStore *, shard_store_free);

/* The store is used by one thread. Functions that take a callback hold a read transaction while
 * it runs; the callback must not call into the store (-EBUSY if it does). Every write returns
 * after its LMDB transaction committed: on disk (docs/shard-store.md, crash safety). Errors
 * common to all: -ENOENT unknown collection, -EINVAL a bad collection name or shard number,
 * -EBADMSG a stored value failed validation (never used), -ENOSPC the map is full at
 * map_size_max or the disk is, -EIO what LMDB could not say better. */

/* Stores c (its id is assigned, c->id ignored). -EEXIST, -EINVAL for a bad name or config,
 * -EDQUOT at collections_max. */
int shard_store_collection_create(ShardStore *s, const ShardCollection *c);
int shard_store_collection_get(ShardStore *s, const char *name, ShardCollection **ret);
typedef int (*ShardCollectionFunc)(const ShardCollection *c, void *userdata);
/* By name. Stops at the first non-zero return of f and returns it. */
int shard_store_foreach_collection(ShardStore *s, ShardCollectionFunc f, void *userdata);
/* The collection is gone when this returns (its name may be created again at once); its data is
 * removed in bounded transactions, resumed by shard_store_open() after a crash. */
int shard_store_collection_delete(ShardStore *s, const char *name);

typedef enum ShardOp {
        SHARD_OP_PUT,
        SHARD_OP_DELETE,
} ShardOp;

/* A write, as the coordinator made it (version from its ShardClock) or as a peer sent it. */
typedef struct ShardChange {
        ShardOp op;
        const char *id;                 /* 1..SHARD_ID_MAX bytes */
        ShardVersion version;
        /* Put only. */
        const float *embedding;         /* dimension finite floats */
        unsigned dimension;             /* must be the collection's */
        const char *text;               /* text_size bytes; NULL with 0: none */
        size_t text_size;
        const char *metadata;           /* a JSON object, metadata_size bytes; NULL with 0: none */
        size_t metadata_size;
} ShardChange;

/* What shard_store_apply() checks of each change, for callers that want to say which one is bad:
 * -E2BIG for an id, text or metadata over its limit, -EINVAL for an empty id, a wrong dimension,
 * a value that is NaN or infinite, metadata that is not a JSON object, a zero version. */
int shard_change_validate(const ShardCollection *c, const ShardChange *ch);

/* A position in a shard's log on the node that keeps it. log_id names the log's incarnation (new
 * when the shard is created on that node, again after a drop), so a cursor is never read against
 * another log that happens to have reached the same sequence. { 0, 0 }: the start of any log. */
typedef struct ShardCursor {
        uint64_t log_id;
        uint64_t seq;
} ShardCursor;

/* Where a receiver got to in a source's log, stored with the changes it applied. */
typedef struct ShardSourceCursor {
        const char *source;             /* the source node's id, 1..SHARD_SOURCE_MAX bytes */
        unsigned shard;
        ShardCursor cursor;
} ShardSourceCursor;

/* Applies changes to a collection in one transaction: each goes to shard_of(collection, id) and
 * takes effect only if its version is newer than the one stored for its id (a delete leaves a
 * tombstone with its version). An applied change is logged in its shard and updates the shard's
 * digest and counts. cursor (may be NULL) is stored in the same transaction. ret_applied (may be
 * NULL) gets, per change, whether it took effect. Returns how many did, or the first change's
 * error from shard_change_validate() (nothing applied), -E2BIG for more than SHARD_BATCH_MAX. */
int shard_store_apply(ShardStore *s, const char *collection, const ShardChange *changes, size_t n_changes,
                      const ShardSourceCursor *cursor, bool *ret_applied);

/* A document as stored. In a callback its pointers are into the map, valid until the callback
 * returns; text and metadata are then not NUL-terminated and embedding may be unaligned (copy it
 * with shard_doc_embedding()). A ShardDoc from shard_store_get() is one allocation, free()d, with
 * id, text and metadata NUL-terminated and embedding aligned. */
typedef struct ShardDoc {
        const char *id;                 /* NUL-terminated */
        unsigned shard;
        ShardVersion version;
        bool deleted;                   /* a tombstone: no embedding, text or metadata */
        const void *embedding;          /* dimension float32, little-endian */
        unsigned dimension;
        const char *text;
        size_t text_size;
        const char *metadata;           /* NULL: none */
        size_t metadata_size;
} ShardDoc;

void shard_doc_embedding(const ShardDoc *d, float *ret);

/* Flags of the reads. */
#define SHARD_READ_TOMBSTONES (1u << 0)         /* tombstones too (replication); else skipped */

/* -ENOENT when there is no such document (or a tombstone, without SHARD_READ_TOMBSTONES). */
int shard_store_get(ShardStore *s, const char *collection, const char *id, unsigned flags, ShardDoc **ret);

typedef int (*ShardDocFunc)(const ShardDoc *d, void *userdata);
/* The documents of a shard by id, from the first id after after_id (NULL: from the start), in one
 * read transaction: a consistent snapshot. Stops at the first non-zero return of f and returns
 * it; a corrupt value stops it with -EBADMSG (shard_store_shard_rebuild() removes it). */
int shard_store_foreach_doc(ShardStore *s, const char *collection, unsigned shard, const char *after_id,
                            unsigned flags, ShardDocFunc f, void *userdata);

typedef struct ShardInfo {
        unsigned shard;
        ShardCursor head;               /* the log's id and last sequence */
        uint64_t floor_seq;             /* every entry after it is kept; cursors below it are stale */
        uint64_t n_live;
        uint64_t n_tombstones;
        uint64_t bytes;                 /* of the stored values */
        ShardDigest digest;
} ShardInfo;

/* -ENOENT (ret untouched) when this node stores nothing of the shard. */
int shard_store_shard_info(ShardStore *s, const char *collection, unsigned shard, ShardInfo *ret);
typedef int (*ShardInfoFunc)(const ShardInfo *i, void *userdata);
/* The shards of the collection this node stores, by number. */
int shard_store_foreach_shard(ShardStore *s, const char *collection, ShardInfoFunc f, void *userdata);

/* The digest and entry count computed from the documents, to verify the incremental ones. */
int shard_store_digest_compute(ShardStore *s, const char *collection, unsigned shard,
                               ShardDigest *ret_digest, uint64_t *ret_entries);
/* Recomputes digest, counts and bytes from the documents and removes those whose value is corrupt
 * (anti-entropy then brings them back from a holder). ret_removed (may be NULL): how many. */
int shard_store_shard_rebuild(ShardStore *s, const char *collection, unsigned shard, uint64_t *ret_removed);

/* Removes the shard's documents, log, state and cursors, in bounded transactions (a crash leaves
 * a smaller but consistent shard; drop again). A shard not stored is not an error. */
int shard_store_drop_shard(ShardStore *s, const char *collection, unsigned shard);

/* Removes the tombstones whose version is older than now_ms - tombstone_age_ms. Returns how many. */
int shard_store_purge_tombstones(ShardStore *s, const char *collection, unsigned shard, uint64_t now_ms);

typedef struct ShardLogEntry {
        uint64_t seq;
        ShardOp op;
        const char *id;                 /* NUL-terminated */
        ShardVersion version;
} ShardLogEntry;

/* current: the document as it is now (tombstones included; it may be newer than the entry, which
 * is what a catch-up should send), or NULL when it is gone (a purged tombstone: send the entry's
 * delete). */
typedef int (*ShardLogFunc)(const ShardLogEntry *e, const ShardDoc *current, void *userdata);
/* Catch-up: the log entries after cursor, at most max (0: all), oldest first. Returns how many
 * were passed to f, or its first non-zero return. -ESTALE when the cursor is of another log, below
 * the floor (trimmed) or beyond the head: the caller falls back to a full copy of the shard.
 * { 0, 0 } is accepted while the log still holds every entry since the shard was created. */
int shard_store_log_after(ShardStore *s, const char *collection, unsigned shard, const ShardCursor *cursor,
                          size_t max, ShardLogFunc f, void *userdata);
/* Keeps the last keep entries (writes trim to log_max_entries by themselves). */
int shard_store_log_trim(ShardStore *s, const char *collection, unsigned shard, uint64_t keep);

/* The cursor stored for source in this shard. -ENOENT when there is none. */
int shard_store_cursor_get(ShardStore *s, const char *collection, unsigned shard, const char *source,
                           ShardCursor *ret);
int shard_store_cursor_set(ShardStore *s, const char *collection, const ShardSourceCursor *cursor);

/* The newest version ever applied here, to seed the ShardClock at start (so a wall clock that
 * went backwards over a restart does not make new writes older than old ones). { 0, 0 }: none. */
int shard_store_max_version(ShardStore *s, ShardVersion *ret);
