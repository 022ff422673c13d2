/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Shards and their holders (shard-placement.h): every node computes the same placement from the
 * same member list, so nobody has to announce it. test-shard-placement drives it. */
#include <xxhash.h>

#include "route-table.h"
#include "shard-placement.h"

int shard_of(const char *collection, const char *id, unsigned n_shards) {
        uint64_t seed;

        if (n_shards < 1 || n_shards > SHARD_COUNT_MAX)
                return -EINVAL;
        seed = XXH3_64bits(collection, strlen(collection));
        return (int) (XXH3_64bits_withSeed(id, strlen(id), seed) % n_shards);
}

uint64_t shard_seed(const char *collection, unsigned shard) {
        return XXH3_64bits_withSeed(collection, strlen(collection), shard);
}

/* a ranks before b: the higher score, or the smaller id on equal scores. */
static bool ranks_before(uint64_t score_a, const char *a, uint64_t score_b, const char *b) {
        return score_a != score_b ? score_a > score_b : strcmp(a, b) < 0;
}

int shard_holders(const char *collection, unsigned shard, char *const *members, size_t n_members,
                  unsigned r, const char *ret_holders[static SHARD_REPLICAS_MAX]) {
        uint64_t seed, scores[SHARD_REPLICAS_MAX];
        const char *top[SHARD_REPLICAS_MAX];
        size_t n = 0;

        if (r < 1 || r > SHARD_REPLICAS_MAX || n_members > SHARD_MEMBERS_MAX)
                return -EINVAL;
        seed = shard_seed(collection, shard);
        for (size_t i = 0; i < n_members; i++) {
                const char *id = members[i];
                uint64_t score;
                size_t at;
                bool dup = false;

                if (isempty(id))
                        return -EINVAL;
                score = route_rendezvous_score(id, seed);
                /* Insertion into the best r so far, kept in rank order. */
                for (at = n; at > 0 && ranks_before(score, id, scores[at - 1], top[at - 1]); at--)
                        ;
                for (size_t j = 0; j < n && !dup; j++)
                        dup = streq(top[j], id);
                if (dup || at >= r)
                        continue;
                if (n < r)
                        n++;
                memmove(top + at + 1, top + at, (n - 1 - at) * sizeof(top[0]));
                memmove(scores + at + 1, scores + at, (n - 1 - at) * sizeof(scores[0]));
                top[at] = id;
                scores[at] = score;
        }
        memcpy(ret_holders, top, n * sizeof(top[0]));
        return (int) n;
}

static bool listed(const char *const *ids, size_t n, const char *id) {
        for (size_t i = 0; i < n; i++)
                if (streq(ids[i], id))
                        return true;
        return false;
}

int shard_plan(const char *collection, unsigned n_shards, unsigned r,
               char *const *old_members, size_t n_old, char *const *new_members, size_t n_new,
               ShardMove **ret_moves, size_t *ret_n_moves) {
        _cleanup_free_ ShardMove *moves = NULL;
        size_t n_moves = 0;

        if (n_shards < 1 || n_shards > SHARD_COUNT_MAX)
                return -EINVAL;
        for (unsigned shard = 0; shard < n_shards; shard++) {
                const char *old[SHARD_REPLICAS_MAX], *new[SHARD_REPLICAS_MAX];
                ShardMove m = { .shard = shard };
                int n_o, n_n;
                bool same;

                n_o = shard_holders(collection, shard, old_members, n_old, r, old);
                if (n_o < 0)
                        return n_o;
                n_n = shard_holders(collection, shard, new_members, n_new, r, new);
                if (n_n < 0)
                        return n_n;

                same = n_o == n_n;
                for (int i = 0; i < n_n && same; i++)
                        same = listed(old, (size_t) n_o, new[i]);
                if (same)
                        continue;

                for (int i = 0; i < n_o; i++) {
                        if (listed((const char *const *) new_members, n_new, old[i]))
                                m.senders[m.n_senders++] = old[i];
                        if (!listed(new, (size_t) n_n, old[i]))
                                m.droppers[m.n_droppers++] = old[i];
                }
                for (int i = 0; i < n_n; i++)
                        if (!listed(old, (size_t) n_o, new[i]))
                                m.receivers[m.n_receivers++] = new[i];

                if ((n_moves & (n_moves - 1)) == 0) {
                        /* Grows at 1, 2, 4, ...: a join moves about R/(N+1) of the shards. */
                        ShardMove *v = reallocarray(moves, MAX(n_moves * 2, (size_t) 1), sizeof(ShardMove));

                        if (!v)
                                return -ENOMEM;
                        moves = v;
                }
                moves[n_moves++] = m;
        }
        *ret_moves = TAKE_PTR(moves);
        *ret_n_moves = n_moves;
        return 0;
}
