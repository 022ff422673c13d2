/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* LMDB's calls with negative errnos, framed puts and prefix scans for the shard store
 * (shard-db.h). */
#include "shard-db.h"

int shard_db_errno(int rc) {
        switch (rc) {
        case MDB_SUCCESS:
                return 0;
        case MDB_NOTFOUND:
                return -ENOENT;
        case MDB_KEYEXIST:
                return -EEXIST;
        case MDB_MAP_FULL:
                return -EFBIG;
        case MDB_TXN_FULL:
        case MDB_BAD_VALSIZE:
                return -E2BIG;
        case MDB_READERS_FULL:
                return -EAGAIN;
        case MDB_CORRUPTED:
        case MDB_PAGE_NOTFOUND:
        case MDB_INVALID:
        case MDB_VERSION_MISMATCH:
                return -EBADMSG;
        default:
                return rc > 0 ? -rc : -EIO;
        }
}

int shard_db_get(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t key_size, MDB_val *ret) {
        MDB_val k = { key_size, (void *) key };

        return shard_db_errno(mdb_get(txn, dbi, &k, ret));
}

int shard_db_reserve(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t key_size, size_t payload_size, uint8_t **ret) {
        MDB_val k = { key_size, (void *) key }, v = { SHARD_FRAME_HEADER + payload_size, NULL };
        int r;

        r = shard_db_errno(mdb_put(txn, dbi, &k, &v, MDB_RESERVE));
        if (r < 0)
                return r;
        *ret = v.mv_data;
        return 0;
}

int shard_db_del(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t key_size) {
        MDB_val k = { key_size, (void *) key };
        int r = shard_db_errno(mdb_del(txn, dbi, &k, NULL));

        return r == -ENOENT ? 0 : r;
}

int shard_db_put_frame(MDB_txn *txn, MDB_dbi dbi, const void *key, size_t key_size, uint8_t kind,
                       uint16_t flags, const void *payload, size_t payload_size) {
        uint8_t *v;
        int r;

        r = shard_db_reserve(txn, dbi, key, key_size, payload_size, &v);
        if (r < 0)
                return r;
        memcpy(v + SHARD_FRAME_HEADER, payload, payload_size);
        shard_frame_seal(v, kind, flags, payload_size);
        return 0;
}

void shard_scan_done(ShardScan *sc) {
        shard_db_cursor_closep(&sc->cursor);
        sc->cursor = NULL;
}

int shard_scan_start(ShardScan *sc, MDB_txn *txn, MDB_dbi dbi, const void *prefix, size_t prefix_size,
                     const void *from, size_t from_size) {
        *sc = (ShardScan) { .prefix_size = prefix_size, .op = MDB_SET_RANGE };
        memcpy(sc->prefix, prefix, prefix_size);
        if (!from) {
                from = prefix;
                from_size = prefix_size;
        }
        if (from_size == 0)
                sc->op = MDB_FIRST;     /* LMDB seeks no empty key */
        memcpy(sc->seek, from, from_size);
        sc->key = (MDB_val) { from_size, sc->seek };
        return shard_db_errno(mdb_cursor_open(txn, dbi, &sc->cursor));
}

int shard_scan_next(ShardScan *sc) {
        int r;

        r = shard_db_errno(mdb_cursor_get(sc->cursor, &sc->key, &sc->val, sc->op));
        sc->op = MDB_NEXT;
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        return shard_key_has_prefix(sc->key.mv_data, sc->key.mv_size, sc->prefix, sc->prefix_size);
}

int shard_scan_delete(ShardScan *sc) {
        size_t n = sc->key.mv_size;

        memcpy(sc->seek, sc->key.mv_data, n);
        sc->key = (MDB_val) { n, sc->seek };
        sc->op = MDB_SET_RANGE;
        return shard_db_errno(mdb_cursor_del(sc->cursor, 0));
}

int shard_db_delete_prefix(MDB_txn *txn, MDB_dbi dbi, const void *prefix, size_t prefix_size, size_t max) {
        _cleanup_(shard_scan_done) ShardScan sc = {};
        int n = 0, r;

        r = shard_scan_start(&sc, txn, dbi, prefix, prefix_size, NULL, 0);
        while (r >= 0 && (size_t) n < max && (r = shard_scan_next(&sc)) > 0) {
                r = shard_scan_delete(&sc);
                n++;
        }
        return r < 0 ? r : n;
}
