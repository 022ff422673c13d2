/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The bodies of shardd's transfer protocol: a batch of changes for one collection, from a
 * coordinator or pushed from a holder's log with its cursor (docs/shardd.md, "Wire format").
 * Pure: no I/O; the HTTP side authenticates and bounds the body, this checks every byte of it. */
#pragma once

#include "shard-store.h"

#define SHARD_WIRE_MAGIC "MSW1"
#define SHARD_WIRE_VERSION 1

/* Bytes of a body besides its changes, at the most: magic and version, the collection (u16
 * length), flags, the cursor (source with u16 length, shard u32, log id and sequence u64), the
 * count u32 and the checksum. A body is this plus the shard_wire_change_size() of its changes,
 * at the most. */
#define SHARD_WIRE_OVERHEAD_MAX                                                                 \
        (4 + 1 + 2 + SHARD_COLLECTION_NAME_MAX + 1 + 2 + SHARD_SOURCE_MAX + 4 + 8 + 8 + 4 + 8)

/* The bytes a valid change takes in a body: to split a transfer into batches under a budget. */
size_t shard_wire_change_size(const ShardChange *c);

/* Encodes a batch into a malloc()ed *ret of *ret_size bytes. cursor may be NULL (a coordinator's
 * write); else it is where the receiver will be in the source's log once it applied changes.
 * Refuses what the decoder would: -EINVAL for a bad collection name, a cursor without source or
 * with a shard >= SHARD_COUNT_MAX, a change shard_change_validate() refuses for its shape (no or
 * empty id, unknown op, zero version, a put with dimension 0, no embedding or non-finite
 * values); -E2BIG for more than SHARD_BATCH_MAX changes, a source, id, text or metadata over its
 * limit, a dimension over SHARD_DIMENSION_MAX; -ENOMEM. Whether metadata is a JSON object and
 * the dimension the collection's is the receiving store's to check. */
int shard_wire_batch_encode(const char *collection, const ShardSourceCursor *cursor, const ShardChange *changes,
                            size_t n_changes, uint8_t **ret, size_t *ret_size);

typedef struct ShardWireBatch {
        char *collection;
        bool has_cursor;
        ShardSourceCursor cursor;       /* its source is owned by the batch */
        ShardChange *changes;           /* ids, text and metadata NUL-terminated, embeddings aligned */
        size_t n_changes;
        /* private: one allocation holding all of the above */
        void *storage;
} ShardWireBatch;

/* Decodes a body of size bytes into *ret, which owns its memory (no pointer into data). Checks
 * everything: the checksum, magic and version, every length against what is left and against
 * its limit, counts (<= SHARD_BATCH_MAX), the collection name, ids and sources without NUL,
 * dimensions 1..SHARD_DIMENSION_MAX, finite floats, non-zero versions, no byte left over.
 * -EBADMSG for anything malformed or truncated (never reading outside data), -ENOMEM. */
int shard_wire_batch_decode(const void *data, size_t size, ShardWireBatch *ret);
/* Frees what the batch holds and zeroes it; for _cleanup_(shard_wire_batch_done) too. */
void shard_wire_batch_done(ShardWireBatch *b);
