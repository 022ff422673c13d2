/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the decoder of shardd's transfer bodies (services/shardd/shard-wire.c), a peer's bytes:
 * as they are, and with the checksum made right so that the fuzzer gets past it; a body that
 * decodes must encode again (the encoder refuses only what the decoder would) and that decode.
 * Input: the body (without its trailing checksum for the second pass). */
#include <xxhash.h>

#include "fuzz.h"
#include "shard-wire.h"

static void decode(const uint8_t *data, size_t size) {
        _cleanup_(shard_wire_batch_done) ShardWireBatch b = {};
        uint8_t *again = NULL;
        size_t again_size;

        if (shard_wire_batch_decode(data, size, &b) < 0)
                return;
        fuzz_check(b.n_changes <= SHARD_BATCH_MAX);
        fuzz_check(shard_wire_batch_encode(b.collection, b.has_cursor ? &b.cursor : NULL, b.changes, b.n_changes,
                                           &again, &again_size) == 0);
        {
                _cleanup_(shard_wire_batch_done) ShardWireBatch b2 = {};

                fuzz_check(shard_wire_batch_decode(again, again_size, &b2) == 0);
                fuzz_check(b2.n_changes == b.n_changes && streq(b2.collection, b.collection));
        }
        free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        uint8_t *fixed;
        uint64_t sum;

        decode(data, size);

        fixed = malloc(size + 8);
        if (!fixed)
                return 0;
        if (size > 0)
                memcpy(fixed, data, size);
        sum = htole64(XXH3_64bits(data, size));
        memcpy(fixed + size, &sum, 8);
        decode(fixed, size + 8);
        free(fixed);
        return 0;
}
