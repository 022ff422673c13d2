/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* LMDB as the shard store uses it: errors as negative errno, transactions and cursors closed by
 * _cleanup_, framed values (shard-value.h) written in place, scans over the keys under a prefix.
 * No store logic: that is shard-store.c (docs/shard-store.md). */
#pragma once

#include <lmdb.h>

#include "shard-value.h"

/* An LMDB return code as 0 or a negative errno. MDB_MAP_FULL is -EFBIG, which the store never
 * returns: it grows the map on it, and only what it cannot grow leaves it as -ENOSPC. */
int shard_db_errno(int rc);

static inline void shard_db_txn_abortp(MDB_txn **txn) {
        if (*txn)
                mdb_txn_abort(*txn);
}

static inline void shard_db_cursor_closep(MDB_cursor **c) {
        if (*c)
                mdb_cursor_close(*c);
}

#define _cleanup_txn_ _cleanup_(shard_db_txn_abortp)
#define _cleanup_cursor_ _cleanup_(shard_db_cursor_closep)

int shard_db_get(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t key_size, MDB_val *ret);
/* Reserves a value of SHARD_FRAME_HEADER + payload_size bytes under key; returns where it goes.
 * The caller fills and seals it before anything else touches the transaction. */
int shard_db_reserve(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t key_size, size_t payload_size, uint8_t **ret);
/* A key that is not there is not an error. */
int shard_db_del(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t key_size);
/* Writes a small framed value (its payload built on the stack) under key. */
int shard_db_put_frame(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t key_size, uint8_t kind,
                       uint16_t flags, const void *payload, size_t payload_size);

/* A walk over the keys that start with a prefix of at most SHARD_KEY_SIZE bytes. */
typedef struct ShardScan {
        MDB_cursor *cursor;
        uint8_t prefix[SHARD_KEY_SIZE];
        size_t prefix_size;
        uint8_t seek[512];              /* LMDB's largest key */
        MDB_val key, val;
        MDB_cursor_op op;
} ShardScan;

/* Visits the keys that start with prefix, from the first >= from (NULL: the prefix). */
int shard_scan_start(ShardScan *sc, MDB_txn *txn, MDB_dbi dbi, const void *prefix, size_t prefix_size,
                     const void *from, size_t from_size);
/* 1 with the next entry in key and val, 0 past the last. */
int shard_scan_next(ShardScan *sc);
/* Deletes the current entry; the next shard_scan_next() finds the one after it by seeking again. */
int shard_scan_delete(ShardScan *sc);
/* Closes the cursor; for _cleanup_ too. */
void shard_scan_done(ShardScan *sc);

/* Deletes up to max entries under prefix; returns how many. */
int shard_db_delete_prefix(MDB_txn *txn, MDB_dbi dbi, const void *prefix, size_t prefix_size, size_t max);
