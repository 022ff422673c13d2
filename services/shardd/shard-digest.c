/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Per-shard digests (shard-digest.h). The store adds and removes entries as it writes; holders
 * compare the sums, and a mismatch is what anti-entropy repairs. */
#include <endian.h>
#include <inttypes.h>
#include <stdio.h>
#include <xxhash.h>

#include "shard-digest.h"

/* XXH3-128 of the id, seeded with XXH3-64 of hlc and node (big-endian) and the deleted byte.
 * Fixed and documented in docs/shard-store.md, since nodes compare the sums. */
ShardDigest shard_digest_entry(const char *id, size_t id_size, const ShardVersion *v, bool deleted) {
        uint8_t fields[17];
        uint64_t hlc = htobe64(v->hlc), node = htobe64(v->node);
        XXH128_hash_t h;

        memcpy(fields, &hlc, sizeof(hlc));
        memcpy(fields + 8, &node, sizeof(node));
        fields[16] = deleted;
        h = XXH3_128bits_withSeed(id, id_size, XXH3_64bits(fields, sizeof(fields)));
        return (ShardDigest) { .hi = h.high64, .lo = h.low64 };
}

void shard_digest_add(ShardDigest *d, const ShardDigest *entry) {
        uint64_t lo = d->lo + entry->lo;

        d->hi += entry->hi + (lo < d->lo);
        d->lo = lo;
}

void shard_digest_remove(ShardDigest *d, const ShardDigest *entry) {
        uint64_t lo = d->lo - entry->lo;

        d->hi -= entry->hi + (lo > d->lo);
        d->lo = lo;
}

char *shard_digest_to_string(const ShardDigest *d, char buf[static SHARD_DIGEST_STRING_MAX]) {
        (void) snprintf(buf, SHARD_DIGEST_STRING_MAX, "%016" PRIx64 "%016" PRIx64, d->hi, d->lo);
        return buf;
}
