/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Ollama test double's prompt cache, modelled on Ollama's runner (InputCache in
 * runner/ollamarunner/cache.go): per model, N slots each remembering the prompt it last evaluated. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The double has no tokenizer: a "token" here is a byte of the rendered prompt. No I/O and no
 * clock: recency is the order of acquisitions, so every choice is a function of the call sequence. */

/* Hard limits, so that what clients can make the cache hold stays bounded. */
#define DOUBLE_CACHE_MAX_SLOTS 1024u                    /* per model: --parallel's maximum */
#define DOUBLE_CACHE_MAX_PREFIX ((size_t) 1 << 20)      /* bytes one slot remembers, at most */
#define DOUBLE_CACHE_MAX_BYTES ((size_t) 256 << 20)     /* bytes all slots together remember */

typedef enum DoubleCachePolicy {
        /* Ollama's default (findLongestCacheSlot): the free slot with the longest common prefix,
         * the lowest index among equals. */
        DOUBLE_CACHE_LONGEST,
        /* OLLAMA_MULTIUSER_CACHE=1 (findBestCacheSlot): a free slot whose whole content the prompt
         * extends; otherwise the least recently used free slot, seeded with the longest prefix
         * any slot (busy ones included) shares with the prompt. */
        DOUBLE_CACHE_MULTIUSER,
} DoubleCachePolicy;

typedef struct DoubleCacheConfig {
        unsigned slots;         /* per model, 1..DOUBLE_CACHE_MAX_SLOTS */
        size_t max_prefix;      /* per slot, 1..DOUBLE_CACHE_MAX_PREFIX */
        size_t max_bytes;       /* all slots, >= max_prefix; least recently used free slots go first */
        unsigned max_models;    /* distinct model names, >= 1 */
        DoubleCachePolicy policy;
} DoubleCacheConfig;

/* What a request got: its slot and how much of its prompt it need not evaluate. */
typedef struct DoubleCacheLease {
        unsigned model;         /* index of the model's entry */
        unsigned slot;
        size_t hit_bytes;       /* the common prefix reused (< the prompt's length, see acquire) */
        size_t prefill_bytes;   /* prompt length - hit_bytes: what the request pays prefill for */
} DoubleCacheLease;

typedef struct DoubleCacheStats {
        uint64_t lookups;       /* acquisitions */
        uint64_t hits;          /* acquisitions with hit_bytes > 0 */
        uint64_t hit_bytes;
        uint64_t prefill_bytes;
        uint64_t evictions;     /* free slots emptied to stay within max_bytes */
} DoubleCacheStats;

typedef struct DoubleCache DoubleCache;

/* -EINVAL when the configuration is out of the bounds above. */
int double_cache_new(const DoubleCacheConfig *config, DoubleCache **ret);
DoubleCache *double_cache_free(DoubleCache *c);
void double_cache_freep(DoubleCache **c);

/* Takes a free slot of model for prompt, as LoadCacheSlot does, and marks it busy. The slot holds
 * the prompt (its first max_prefix bytes) from now on. A prompt found whole in a slot still
 * evaluates its last byte (Ollama leaves one input to sample from), so prefill_bytes >= 1 for a
 * non-empty prompt. -EBUSY when every slot of the model is busy, -ENOSPC when model would be one
 * model name too many, -ENOMEM. */
int double_cache_acquire(DoubleCache *c, const char *model, const char *prompt, size_t len,
                         DoubleCacheLease *ret);

/* Frees the lease's slot. evaluated: the prompt was evaluated, and the slot keeps prompt +
 * generated (up to max_prefix), as Ollama's slot keeps the prompt and the sampled tokens;
 * otherwise (the request ended during its prefill) the slot keeps only the reused prefix.
 * -ESTALE when the lease's slot is not busy, -EINVAL for a lease of no slot. */
int double_cache_release(DoubleCache *c, const DoubleCacheLease *lease, bool evaluated, const char *generated,
                         size_t generated_len);

/* The model was unloaded: its free slots are emptied now, its busy ones when they are released. */
void double_cache_drop_model(DoubleCache *c, const char *model);

/* Inspection, for tests and the stats endpoint. */
const DoubleCacheStats *double_cache_get_stats(const DoubleCache *c);
size_t double_cache_bytes(const DoubleCache *c);        /* bytes held by all slots */
unsigned double_cache_busy(const DoubleCache *c);       /* busy slots, all models */
/* A slot's content; -ENOENT for a model never seen, -EINVAL for a slot out of range. */
int double_cache_peek(const DoubleCache *c, const char *model, unsigned slot, const char **ret_bytes,
                      size_t *ret_len, bool *ret_busy);
