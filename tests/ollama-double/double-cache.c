/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Ollama test double's prompt cache: which slot a request takes and how much of its prompt it
 * need not evaluate, as Ollama's runner decides it. Pure: no I/O, no clock. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "double-cache.h"

typedef struct CacheSlot {
        char *bytes;            /* what the slot's KV cache holds, in rendered-prompt bytes */
        size_t len;
        size_t prompt_len;      /* the whole prompt of the request that holds the slot */
        uint64_t last_used;     /* the acquisition that last took it; 0: never */
        bool busy;
        bool drop;              /* the model was unloaded while busy: empty the slot on release */
} CacheSlot;

typedef struct CacheModel {
        char *name;
        CacheSlot *slots;
} CacheModel;

struct DoubleCache {
        DoubleCacheConfig config;
        CacheModel *models;
        unsigned n_models;
        size_t bytes;
        unsigned busy;
        uint64_t clock;
        DoubleCacheStats stats;
};

int double_cache_new(const DoubleCacheConfig *config, DoubleCache **ret) {
        DoubleCache *c;

        if (!config || !ret || config->slots < 1 || config->slots > DOUBLE_CACHE_MAX_SLOTS ||
            config->max_prefix < 1 || config->max_prefix > DOUBLE_CACHE_MAX_PREFIX ||
            config->max_bytes < config->max_prefix || config->max_models < 1 ||
            (config->policy != DOUBLE_CACHE_LONGEST && config->policy != DOUBLE_CACHE_MULTIUSER))
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->config = *config;
        *ret = c;
        return 0;
}

DoubleCache *double_cache_free(DoubleCache *c) {
        if (!c)
                return NULL;
        for (unsigned i = 0; i < c->n_models; i++) {
                for (unsigned k = 0; k < c->config.slots; k++)
                        free(c->models[i].slots[k].bytes);
                free(c->models[i].slots);
                free(c->models[i].name);
        }
        free(c->models);
        free(c);
        return NULL;
}

void double_cache_freep(DoubleCache **c) {
        double_cache_free(*c);
}

static CacheModel *cache_find_model(const DoubleCache *c, const char *name) {
        for (unsigned i = 0; i < c->n_models; i++)
                if (strcmp(c->models[i].name, name ?: "") == 0)
                        return &c->models[i];
        return NULL;
}

static int cache_get_model(DoubleCache *c, const char *name, CacheModel **ret) {
        CacheModel *m = cache_find_model(c, name), *models;

        if (m) {
                *ret = m;
                return 0;
        }
        if (c->n_models >= c->config.max_models)
                return -ENOSPC;
        models = realloc(c->models, (c->n_models + 1) * sizeof(CacheModel));
        if (!models)
                return -ENOMEM;
        c->models = models;
        m = &c->models[c->n_models];
        *m = (CacheModel) {
                .name = strdup(name ?: ""),
                .slots = calloc(c->config.slots, sizeof(CacheSlot)),
        };
        if (!m->name || !m->slots) {
                free(m->name);
                free(m->slots);
                return -ENOMEM;
        }
        c->n_models++;
        *ret = m;
        return 0;
}

static size_t common_prefix(const char *a, size_t alen, const char *b, size_t blen) {
        size_t n = alen < blen ? alen : blen, i = 0;

        while (i < n && a[i] == b[i])
                i++;
        return i;
}

static void slot_empty(DoubleCache *c, CacheSlot *s) {
        c->bytes -= s->len;
        free(s->bytes);
        s->bytes = NULL;
        s->len = 0;
}

/* Makes room for want bytes in keep (replacing what it holds) by emptying free slots, least
 * recently used first (the first of equals in model and slot order); returns how much of want
 * fits, less when busy slots hold the rest of the budget. */
static size_t cache_make_room(DoubleCache *c, const CacheSlot *keep, size_t want) {
        for (;;) {
                size_t others = c->bytes - keep->len;
                CacheSlot *victim = NULL;

                if (others + want <= c->config.max_bytes)
                        return want;
                for (unsigned i = 0; i < c->n_models; i++)
                        for (unsigned k = 0; k < c->config.slots; k++) {
                                CacheSlot *s = &c->models[i].slots[k];

                                if (s != keep && !s->busy && s->len > 0 &&
                                    (!victim || s->last_used < victim->last_used))
                                        victim = s;
                        }
                if (!victim)
                        return others < c->config.max_bytes ? c->config.max_bytes - others : 0;
                slot_empty(c, victim);
                c->stats.evictions++;
        }
}

/* The slot's content becomes a[:alen] + b[:blen], cut at max_prefix and at the byte budget. a may
 * point into the slot's own content. */
static int slot_set(DoubleCache *c, CacheSlot *s, const char *a, size_t alen, const char *b, size_t blen) {
        size_t n = alen + blen;
        char *p = NULL;

        if (n < alen || n > c->config.max_prefix)
                n = c->config.max_prefix;
        n = cache_make_room(c, s, n);
        if (alen > n)
                alen = n;
        blen = n - alen;
        if (n > 0) {
                p = malloc(n);
                if (!p)
                        return -ENOMEM;
                if (alen > 0)
                        memcpy(p, a, alen);
                if (blen > 0)
                        memcpy(p + alen, b, blen);
        }
        slot_empty(c, s);
        s->bytes = p;
        s->len = n;
        c->bytes += n;
        return 0;
}

static int cache_pick_longest(const CacheModel *m, unsigned n_slots, const char *prompt, size_t len,
                              unsigned *ret_slot, size_t *ret_hit) {
        bool found = false;
        size_t best = 0;
        unsigned pick = 0;

        for (unsigned k = 0; k < n_slots; k++) {
                const CacheSlot *s = &m->slots[k];
                size_t n;

                if (s->busy)
                        continue;
                n = common_prefix(s->bytes, s->len, prompt, len);
                if (!found || n > best) {
                        found = true;
                        best = n;
                        pick = k;
                }
        }
        if (!found)
                return -EBUSY;
        *ret_slot = pick;
        *ret_hit = best;
        return 0;
}

static int cache_pick_best(const CacheModel *m, unsigned n_slots, const char *prompt, size_t len,
                           unsigned *ret_slot, size_t *ret_hit) {
        bool have_longest = false, have_oldest = false;
        size_t longest = 0;
        unsigned li = 0, oi = 0;

        for (unsigned k = 0; k < n_slots; k++) {
                const CacheSlot *s = &m->slots[k];
                size_t n = common_prefix(s->bytes, s->len, prompt, len);

                if (!have_longest || n > longest) {
                        have_longest = true;
                        longest = n;
                        li = k;
                }
                if (!s->busy && (!have_oldest || s->last_used < m->slots[oi].last_used)) {
                        have_oldest = true;
                        oi = k;
                }
        }
        /* The prompt extends all the slot holds: continue there. */
        if (longest == m->slots[li].len && !m->slots[li].busy) {
                *ret_slot = li;
                *ret_hit = longest;
                return 0;
        }
        if (!have_oldest)
                return -EBUSY;
        /* Evict the least recently used free slot, forking the longest prefix into it: the
         * prompt will hold those bytes anyway, so the fork is the hit. */
        *ret_slot = oi;
        *ret_hit = longest;
        return 0;
}

int double_cache_acquire(DoubleCache *c, const char *model, const char *prompt, size_t len,
                         DoubleCacheLease *ret) {
        CacheModel *m;
        CacheSlot *s;
        unsigned pick;
        size_t hit;
        int r;

        if (!c || !ret || !prompt || len == 0)
                return -EINVAL;
        r = cache_get_model(c, model, &m);
        if (r < 0)
                return r;
        if (c->config.policy == DOUBLE_CACHE_MULTIUSER)
                r = cache_pick_best(m, c->config.slots, prompt, len, &pick, &hit);
        else
                r = cache_pick_longest(m, c->config.slots, prompt, len, &pick, &hit);
        if (r < 0)
                return r;
        /* Leave one input to sample from, so a response can be generated. */
        if (hit == len)
                hit--;

        s = &m->slots[pick];
        r = slot_set(c, s, prompt, len, NULL, 0);
        if (r < 0)
                return r;
        s->prompt_len = len;
        s->busy = true;
        s->drop = false;
        s->last_used = ++c->clock;
        c->busy++;

        c->stats.lookups++;
        if (hit > 0)
                c->stats.hits++;
        c->stats.hit_bytes += hit;
        c->stats.prefill_bytes += len - hit;
        *ret = (DoubleCacheLease) {
                .model = (unsigned) (m - c->models),
                .slot = pick,
                .hit_bytes = hit,
                .prefill_bytes = len - hit,
        };
        return 0;
}

int double_cache_release(DoubleCache *c, const DoubleCacheLease *lease, bool evaluated, const char *generated,
                         size_t generated_len) {
        CacheSlot *s;
        int r = 0;

        if (!c || !lease || lease->model >= c->n_models || lease->slot >= c->config.slots)
                return -EINVAL;
        s = &c->models[lease->model].slots[lease->slot];
        if (!s->busy)
                return -ESTALE;

        if (s->drop)
                slot_empty(c, s);
        else if (!evaluated)
                r = slot_set(c, s, s->bytes, lease->hit_bytes < s->len ? lease->hit_bytes : s->len, NULL, 0);
        else if (s->len == s->prompt_len)
                /* A slot cut short of its prompt holds no prefix the answer could extend. */
                r = slot_set(c, s, s->bytes, s->len, generated, generated ? generated_len : 0);
        if (r < 0)
                slot_empty(c, s);
        s->busy = false;
        s->drop = false;
        c->busy--;
        return r;
}

void double_cache_drop_model(DoubleCache *c, const char *model) {
        CacheModel *m = c ? cache_find_model(c, model) : NULL;

        if (!m)
                return;
        for (unsigned k = 0; k < c->config.slots; k++) {
                CacheSlot *s = &m->slots[k];

                if (s->busy)
                        s->drop = true;
                else
                        slot_empty(c, s);
        }
}

const DoubleCacheStats *double_cache_get_stats(const DoubleCache *c) {
        return &c->stats;
}

size_t double_cache_bytes(const DoubleCache *c) {
        return c->bytes;
}

unsigned double_cache_busy(const DoubleCache *c) {
        return c->busy;
}

int double_cache_peek(const DoubleCache *c, const char *model, unsigned slot, const char **ret_bytes,
                      size_t *ret_len, bool *ret_busy) {
        const CacheModel *m = cache_find_model(c, model);
        const CacheSlot *s;

        if (!m)
                return -ENOENT;
        if (slot >= c->config.slots)
                return -EINVAL;
        s = &m->slots[slot];
        if (ret_bytes)
                *ret_bytes = s->bytes;
        if (ret_len)
                *ret_len = s->len;
        if (ret_busy)
                *ret_busy = s->busy;
        return 0;
}
