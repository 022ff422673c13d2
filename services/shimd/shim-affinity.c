/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The affinity chain of a request and the index of who served which block (shim-affinity.h).
 * Pure: the proxy feeds it parsed bodies and node ids; test-shim-affinity drives it. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

#include "shim-affinity.h"

/* Separators between the fields and the messages of the serialized context. A string may hold
 * them too, which at worst makes two different requests alike; what the chain needs holds
 * anyway: a request always serializes the same way, and a conversation's earlier turn is a
 * prefix of its later one. */
#define FIELD_END "\x1f"
#define MESSAGE_END "\x1e"

void affinity_chain_init(AffinityChain *c) {
        *c = (AffinityChain) {};
}

void affinity_chain_done(AffinityChain *c) {
        free(c->hashes);
        *c = (AffinityChain) {};
}

static int chain_push_block(AffinityChain *c) {
        uint64_t h;

        if (c->n >= AFFINITY_BLOCKS_MAX)
                return 0;
        if (c->n == c->n_alloc) {
                size_t n = MAX(c->n_alloc * 2, (size_t) 16);
                uint64_t *v = realloc(c->hashes, n * sizeof(uint64_t));

                if (!v)
                        return -ENOMEM;
                c->hashes = v;
                c->n_alloc = n;
        }
        h = XXH3_64bits_withSeed(c->block, AFFINITY_BLOCK_SIZE, c->seed);
        c->hashes[c->n++] = h;
        c->seed = h;
        c->block_len = 0;
        return 0;
}

int affinity_chain_add(AffinityChain *c, const void *data, size_t size) {
        const uint8_t *p = data;

        while (size > 0 && c->n < AFFINITY_BLOCKS_MAX) {
                size_t k = MIN(size, AFFINITY_BLOCK_SIZE - c->block_len);
                int r;

                memcpy(c->block + c->block_len, p, k);
                c->block_len += k;
                p += k;
                size -= k;
                if (c->block_len == AFFINITY_BLOCK_SIZE) {
                        r = chain_push_block(c);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int chain_add_string(AffinityChain *c, const char *s) {
        return affinity_chain_add(c, s, strlen(s));
}

void affinity_chain_anchor(AffinityChain *c) {
        if (c->anchored)
                return;
        c->anchored = true;
        /* Everything so far: the full blocks through the seed, the partial one by its bytes.
         * Never 0, which means "no context". */
        c->anchor = XXH3_64bits_withSeed(c->block, c->block_len, c->seed) | 1;
        c->anchor_blocks = c->n + (c->block_len > 0);
}

/* A content that is a string, or OpenAI's array of parts (text, image_url). */
static int chain_add_content(AffinityChain *c, json_object *content) {
        int r = 0;

        if (json_object_is_type(content, json_type_string))
                return chain_add_string(c, json_object_get_string(content));
        if (!json_object_is_type(content, json_type_array))
                return 0;
        for (size_t i = 0; i < json_object_array_length(content) && r >= 0; i++) {
                json_object *part = json_object_array_get_idx(content, i), *v, *url;

                if (json_object_object_get_ex(part, "text", &v) && json_object_is_type(v, json_type_string))
                        r = chain_add_string(c, json_object_get_string(v));
                else if (json_object_object_get_ex(part, "image_url", &v)) {
                        if (json_object_object_get_ex(v, "url", &url))
                                v = url;
                        if (json_object_is_type(v, json_type_string)) {
                                char digest[32];

                                snprintf(digest, sizeof(digest), "<image %016llx>",
                                         (unsigned long long) XXH3_64bits(json_object_get_string(v),
                                                                          (size_t) json_object_get_string_len(v)));
                                r = chain_add_string(c, digest);
                        }
                }
                if (r >= 0)
                        r = chain_add_string(c, FIELD_END);
        }
        return r;
}

/* Ollama's images: base64 strings, each by a digest (a 10 MB image costs one hash, and the
 * chain stays about the text). */
static int chain_add_images(AffinityChain *c, json_object *images) {
        int r = 0;

        if (!json_object_is_type(images, json_type_array))
                return 0;
        for (size_t i = 0; i < json_object_array_length(images) && r >= 0; i++) {
                json_object *img = json_object_array_get_idx(images, i);
                char digest[32];

                if (!json_object_is_type(img, json_type_string))
                        continue;
                snprintf(digest, sizeof(digest), "<image %016llx>",
                         (unsigned long long) XXH3_64bits(json_object_get_string(img),
                                                          (size_t) json_object_get_string_len(img)));
                r = chain_add_string(c, digest);
        }
        return r;
}

static int chain_from_messages(AffinityChain *c, json_object *messages) {
        size_t n;
        int r = 0;

        if (!json_object_is_type(messages, json_type_array) || (n = json_object_array_length(messages)) == 0)
                return -ENOENT;
        for (size_t i = 0; i < n && r >= 0; i++) {
                json_object *m = json_object_array_get_idx(messages, i), *v;
                const char *role = "";

                if (!json_object_is_type(m, json_type_object))
                        continue;
                if (json_object_object_get_ex(m, "role", &v) && json_object_is_type(v, json_type_string))
                        role = json_object_get_string(v);
                r = chain_add_string(c, role);
                if (r >= 0)
                        r = chain_add_string(c, FIELD_END);
                if (r >= 0 && json_object_object_get_ex(m, "content", &v))
                        r = chain_add_content(c, v);
                if (r >= 0 && json_object_object_get_ex(m, "images", &v))
                        r = chain_add_images(c, v);
                if (r >= 0)
                        r = chain_add_string(c, MESSAGE_END);
                if (streq(role, "user"))
                        affinity_chain_anchor(c);
        }
        if (r < 0)
                return r;
        affinity_chain_anchor(c);
        return 0;
}

static int chain_from_prompt(AffinityChain *c, json_object *body) {
        json_object *v;
        bool any = false;
        int r = 0;

        if (json_object_object_get_ex(body, "system", &v) && json_object_is_type(v, json_type_string)) {
                r = chain_add_string(c, json_object_get_string(v));
                any = true;
        }
        if (r >= 0)
                r = chain_add_string(c, FIELD_END);
        /* The context of an earlier /api/generate: its tokens, in decimal. */
        if (r >= 0 && json_object_object_get_ex(body, "context", &v) && json_object_is_type(v, json_type_array)) {
                for (size_t i = 0; i < json_object_array_length(v) && r >= 0; i++) {
                        char num[24];

                        snprintf(num, sizeof(num), "%" PRId64 ",",
                                 json_object_get_int64(json_object_array_get_idx(v, i)));
                        r = chain_add_string(c, num);
                        any = true;
                }
        }
        if (r >= 0)
                r = chain_add_string(c, FIELD_END);
        if (r >= 0 && json_object_object_get_ex(body, "prompt", &v) && json_object_is_type(v, json_type_string) &&
            json_object_get_string_len(v) > 0) {
                r = chain_add_string(c, json_object_get_string(v));
                any = true;
        }
        if (r >= 0 && json_object_object_get_ex(body, "images", &v))
                r = chain_add_images(c, v);
        if (r < 0)
                return r;
        if (!any)
                return -ENOENT;
        affinity_chain_anchor(c);
        return 0;
}

int affinity_chain_from_request(AffinityChain *c, AffinityContext kind, json_object *body) {
        json_object *messages;

        if (!json_object_is_type(body, json_type_object))
                return -ENOENT;
        if (kind == AFFINITY_CONTEXT_MESSAGES && json_object_object_get_ex(body, "messages", &messages))
                return chain_from_messages(c, messages);
        if (kind == AFFINITY_CONTEXT_PROMPT)
                return chain_from_prompt(c, body);
        return -ENOENT;
}

int affinity_chain_from_key(AffinityChain *c, const char *key) {
        if (isempty(key))
                return -ENOENT;
        c->anchor = XXH3_64bits(key, strlen(key)) | 1;
        c->anchored = true;
        return 0;
}

/* ---- the index: open addressing over a power-of-two table, LRU list through indexes ---- */

#define NIL UINT32_MAX

typedef struct Entry {
        uint64_t key;           /* 0: free slot (hashes are never 0: see entry_key) */
        char node[NODE_ID_LEN + 1];
        uint32_t prev, next;    /* LRU list, most recent at head */
} Entry;

struct AffinityIndex {
        Entry *slots;
        size_t n_slots;         /* power of two, at least twice max */
        size_t n, max;
        uint32_t head, tail;
};

static uint64_t entry_key(uint64_t h) {
        return h ?: 1;
}

int affinity_index_new(size_t max_entries, AffinityIndex **ret) {
        AffinityIndex *x;
        size_t n = 16;

        if (max_entries == 0 || max_entries > (1U << 24))
                return -EINVAL;
        while (n < max_entries * 2)
                n *= 2;
        x = calloc(1, sizeof(*x));
        if (!x)
                return -ENOMEM;
        x->slots = calloc(n, sizeof(Entry));
        if (!x->slots) {
                free(x);
                return -ENOMEM;
        }
        x->n_slots = n;
        x->max = max_entries;
        x->head = x->tail = NIL;
        *ret = x;
        return 0;
}

AffinityIndex *affinity_index_free(AffinityIndex *x) {
        if (!x)
                return NULL;
        free(x->slots);
        free(x);
        return NULL;
}

size_t affinity_index_size(const AffinityIndex *x) {
        return x->n;
}

static uint32_t slot_find(const AffinityIndex *x, uint64_t key) {
        size_t mask = x->n_slots - 1;

        for (size_t i = key & mask;; i = (i + 1) & mask) {
                if (x->slots[i].key == key)
                        return (uint32_t) i;
                if (x->slots[i].key == 0)
                        return NIL;
        }
}

static void lru_unlink(AffinityIndex *x, uint32_t i) {
        Entry *e = &x->slots[i];

        if (e->prev != NIL)
                x->slots[e->prev].next = e->next;
        else
                x->head = e->next;
        if (e->next != NIL)
                x->slots[e->next].prev = e->prev;
        else
                x->tail = e->prev;
}

static void lru_push_head(AffinityIndex *x, uint32_t i) {
        Entry *e = &x->slots[i];

        e->prev = NIL;
        e->next = x->head;
        if (x->head != NIL)
                x->slots[x->head].prev = i;
        x->head = i;
        if (x->tail == NIL)
                x->tail = i;
}

/* Moving an entry within the probe sequence changes its slot: its neighbours in the LRU list
 * must point at the new one. */
static void slot_move(AffinityIndex *x, uint32_t from, uint32_t to) {
        Entry *e;

        x->slots[to] = x->slots[from];
        e = &x->slots[to];
        if (e->prev != NIL)
                x->slots[e->prev].next = to;
        else
                x->head = to;
        if (e->next != NIL)
                x->slots[e->next].prev = to;
        else
                x->tail = to;
        x->slots[from].key = 0;
}

/* Removes slot i and closes the gap (backward shift deletion: no tombstones). */
static void slot_remove(AffinityIndex *x, uint32_t i) {
        size_t mask = x->n_slots - 1;
        uint32_t hole = i;

        lru_unlink(x, i);
        x->slots[i].key = 0;
        x->n--;
        for (uint32_t j = (uint32_t) ((i + 1) & mask); x->slots[j].key != 0; j = (uint32_t) ((j + 1) & mask)) {
                size_t home = x->slots[j].key & mask;

                /* j may move into the hole unless its home lies cyclically in (hole, j]. */
                if ((j > hole && (home <= hole || home > j)) || (j < hole && home <= hole && home > j)) {
                        slot_move(x, j, hole);
                        hole = j;
                }
        }
}

static int index_put(AffinityIndex *x, uint64_t h, const char *node_id) {
        uint64_t key = entry_key(h);
        uint32_t i = slot_find(x, key);
        size_t mask = x->n_slots - 1;

        if (i != NIL) {
                snprintf(x->slots[i].node, sizeof(x->slots[i].node), "%s", node_id);
                lru_unlink(x, i);
                lru_push_head(x, i);
                return 0;
        }
        if (x->n >= x->max)
                slot_remove(x, x->tail);
        for (i = (uint32_t) (key & mask); x->slots[i].key != 0; i = (uint32_t) ((i + 1) & mask))
                ;
        x->slots[i].key = key;
        snprintf(x->slots[i].node, sizeof(x->slots[i].node), "%s", node_id);
        lru_push_head(x, i);
        x->n++;
        return 0;
}

int affinity_index_learn(AffinityIndex *x, const AffinityChain *c, const char *node_id) {
        if (isempty(node_id))
                return -EINVAL;
        /* The last blocks are the freshest: learned last, they are the most recently used. */
        for (size_t i = 0; i < c->n; i++)
                (void) index_put(x, c->hashes[i], node_id);
        if (c->anchor != 0)
                (void) index_put(x, c->anchor, node_id);
        return 0;
}

const char *affinity_index_holder(AffinityIndex *x, const AffinityChain *c, size_t *ret_blocks) {
        /* Longest first: a block hash covers its whole prefix, so the first found is the
         * longest match. Matches shorter than the anchor blocks are a shared start only. */
        for (size_t i = c->n; i > 0 && i >= MAX(c->anchor_blocks, (size_t) 1); i--) {
                uint32_t k = slot_find(x, entry_key(c->hashes[i - 1]));

                if (k != NIL) {
                        lru_unlink(x, k);
                        lru_push_head(x, k);
                        if (ret_blocks)
                                *ret_blocks = i;
                        return x->slots[k].node;
                }
        }
        /* A conversation too short for a block past its anchor: the anchor itself. */
        if (c->anchor != 0) {
                uint32_t k = slot_find(x, entry_key(c->anchor));

                if (k != NIL) {
                        lru_unlink(x, k);
                        lru_push_head(x, k);
                        if (ret_blocks)
                                *ret_blocks = 0;
                        return x->slots[k].node;
                }
        }
        return NULL;
}
