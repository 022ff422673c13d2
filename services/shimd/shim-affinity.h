/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Context gravity, with no I/O: the affinity chain of a request (hashes of its context in fixed
 * blocks, each seeded with the one before, so a later turn extends an earlier turn's chain), and
 * the bounded LRU index from block hash to the node that last served it (docs/context-gravity.md). */
#pragma once

#include <json-c/json.h>

#include "route-table.h"

/* Context is cut in blocks of this many bytes; the last, partial block is not hashed. */
#define AFFINITY_BLOCK_SIZE 256
/* Context beyond this many blocks (1 MiB) is not looked at: the start decides. */
#define AFFINITY_BLOCKS_MAX 4096
/* Block hashes the index remembers, least recently used forgotten first. */
#define AFFINITY_INDEX_DEFAULT_SIZE 65536

typedef struct AffinityChain {
        uint64_t *hashes;       /* one per full block, in order */
        size_t n;
        /* The hash of the context up to the end of its first user message (or of all of it):
         * what a conversation starts with, the same on every turn. 0: no context. */
        uint64_t anchor;
        /* Blocks a match must cover to be this conversation's and not just a shared start
         * (a common system prompt): those up to the anchor. */
        size_t anchor_blocks;

        /* While building. */
        uint8_t block[AFFINITY_BLOCK_SIZE];
        size_t block_len;
        uint64_t seed;
        size_t n_alloc;
        bool anchored;
} AffinityChain;

void affinity_chain_init(AffinityChain *c);
void affinity_chain_done(AffinityChain *c);
/* Appends context bytes. -ENOMEM; bytes past AFFINITY_BLOCKS_MAX blocks are ignored. */
int affinity_chain_add(AffinityChain *c, const void *data, size_t size);
/* Here ends what identifies the conversation (the first user message): sets the anchor from
 * everything added so far. Later calls do nothing, so calling it again at the end of the
 * context anchors a context that had no such point there. */
void affinity_chain_anchor(AffinityChain *c);

/* What carries a request's context: the messages of /api/chat and /v1/chat/completions, the
 * system, context and prompt of /api/generate and /v1/completions, or nothing. */
typedef enum AffinityContext {
        AFFINITY_CONTEXT_NONE,
        AFFINITY_CONTEXT_MESSAGES,
        AFFINITY_CONTEXT_PROMPT,
} AffinityContext;

/* The chain of a request body (parsed JSON): the messages in order (role, content, images by
 * digest), anchored after the first user message; or system, context and prompt, anchored after
 * the prompt. -ENOENT when the request carries no context. */
int affinity_chain_from_request(AffinityChain *c, AffinityContext kind, json_object *body);
/* The chain of an explicit key (X-Mycelia-Affinity): one anchor, no blocks. */
int affinity_chain_from_key(AffinityChain *c, const char *key);

typedef struct AffinityIndex AffinityIndex;

int affinity_index_new(size_t max_entries, AffinityIndex **ret);
AffinityIndex *affinity_index_free(AffinityIndex *x);
DEFINE_TRIVIAL_CLEANUP_FUNC(AffinityIndex *, affinity_index_free);

/* The node that served every block of c: remembered for each block hash (most recent first). */
int affinity_index_learn(AffinityIndex *x, const AffinityChain *c, const char *node_id);
/* The node holding the longest prefix of c that covers its anchor blocks, else the node that
 * served the same anchor last (a second turn whose first ended mid-block), else NULL. The
 * pointer stays valid until the next call that changes x. ret_blocks: the blocks matched. A
 * node that left is not forgotten here: the pick skips a holder that is not a candidate, and
 * the next answer relearns the blocks for the new node. */
const char *affinity_index_holder(AffinityIndex *x, const AffinityChain *c, size_t *ret_blocks);
size_t affinity_index_size(const AffinityIndex *x);
