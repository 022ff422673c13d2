/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* One shard's vectors and their exact top-k search (shard-search.h). Pure: no I/O, no clock;
 * the store loads rows into it, scatter-gather asks it, test-shard-search checks it by brute force. */
#include <cblas.h>
#include <math.h>
#include <xxhash.h>

#include "shard-search.h"

#define NIL UINT32_MAX
/* Rows are kept 64-byte aligned, one cache line, which the BLAS kernels load fastest. */
#define ROWS_ALIGN 64
#define ROWS_ALLOC_MIN 64
/* Scores of one BLAS call: queries x rows of the block, 256 KiB, so they stay in L2 beside the
 * block sgemm packs (2048 rows for 32 queries; measured in docs/shard-search.md). */
#define BLOCK_SCORES (64 * 1024)
#define BLOCK_ROWS_MIN 1024
#define BLOCK_ROWS_MAX 16384
/* Queries scored together by one sgemm; more only grows the score buffer. */
#define QUERY_CHUNK 64

/* The id -> row map: open addressing, linear probing, at most half full; a slot keeps the low
 * 32 bits of the id's XXH3 (which also place it) to skip most strcmp()s. */
typedef struct Slot {
        uint32_t hash;
        uint32_t row;           /* NIL: free */
} Slot;

struct ShardIndex {
        size_t dim;
        ShardMetric metric;
        size_t n, n_alloc, max_rows;
        float *rows;            /* n_alloc rows of dim floats, row-major */
        char **ids;
        json_object **metadata;
        Slot *slots;
        size_t n_slots;         /* a power of two, at least 2 n */
};

/* One kept result while searching: the heap is ordered worst first. */
typedef struct HeapEntry {
        float score;
        uint32_t row;
} HeapEntry;

int shard_index_new(size_t dim, ShardMetric metric, size_t max_rows, ShardIndex **ret) {
        _cleanup_(shard_index_freep) ShardIndex *x = NULL;

        if (dim == 0 || dim > SHARD_INDEX_DIM_MAX || max_rows == 0 || max_rows > SHARD_INDEX_ROWS_MAX ||
            !IN_SET(metric, SHARD_METRIC_INNER_PRODUCT, SHARD_METRIC_COSINE))
                return -EINVAL;
        x = calloc(1, sizeof(ShardIndex));
        if (!x)
                return -ENOMEM;
        *x = (ShardIndex) { .dim = dim, .metric = metric, .max_rows = max_rows, .n_slots = 16 };
        x->slots = malloc(x->n_slots * sizeof(Slot));
        if (!x->slots)
                return -ENOMEM;
        for (size_t i = 0; i < x->n_slots; i++)
                x->slots[i].row = NIL;
        *ret = TAKE_PTR(x);
        return 0;
}

ShardIndex *shard_index_free(ShardIndex *x) {
        if (!x)
                return NULL;
        for (size_t i = 0; i < x->n; i++) {
                free(x->ids[i]);
                json_object_put(x->metadata[i]);
        }
        free(x->rows);
        free(x->ids);
        free(x->metadata);
        free(x->slots);
        free(x);
        return NULL;
}

size_t shard_index_count(const ShardIndex *x) {
        return x->n;
}

size_t shard_index_dim(const ShardIndex *x) {
        return x->dim;
}

ShardMetric shard_index_metric(const ShardIndex *x) {
        return x->metric;
}

/* ---- the id map ---- */

static uint32_t id_hash(const char *id) {
        return (uint32_t) XXH3_64bits(id, strlen(id));
}

/* The slot holding id, or the free slot where its probe ends. */
static size_t slot_find(const ShardIndex *x, const char *id, uint32_t hash) {
        size_t mask = x->n_slots - 1;

        for (size_t i = hash & mask;; i = (i + 1) & mask) {
                const Slot *s = &x->slots[i];

                if (s->row == NIL || (s->hash == hash && streq(x->ids[s->row], id)))
                        return i;
        }
}

static void slot_put(Slot *slots, size_t n_slots, Slot s) {
        size_t mask = n_slots - 1, i;

        for (i = s.hash & mask; slots[i].row != NIL; i = (i + 1) & mask)
                ;
        slots[i] = s;
}

/* Doubles the map when one more id would fill it past half. */
static int slots_reserve(ShardIndex *x) {
        Slot *slots;
        size_t n;

        if ((x->n + 1) * 2 <= x->n_slots)
                return 0;
        n = x->n_slots * 2;
        slots = malloc(n * sizeof(Slot));
        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                slots[i].row = NIL;
        for (size_t i = 0; i < x->n_slots; i++)
                if (x->slots[i].row != NIL)
                        slot_put(slots, n, x->slots[i]);
        free(x->slots);
        x->slots = slots;
        x->n_slots = n;
        return 0;
}

/* Empties slot i and closes the gap behind it (backward shift: no tombstones, so probes stay
 * short under churn). */
static void slot_remove(ShardIndex *x, size_t i) {
        size_t mask = x->n_slots - 1, hole = i;

        x->slots[hole].row = NIL;
        for (size_t j = (i + 1) & mask; x->slots[j].row != NIL; j = (j + 1) & mask) {
                size_t home = x->slots[j].hash & mask;

                /* j may move into the hole unless its home lies cyclically in (hole, j]. */
                if (hole <= j ? home <= hole || home > j : home <= hole && home > j) {
                        x->slots[hole] = x->slots[j];
                        x->slots[j].row = NIL;
                        hole = j;
                }
        }
}

/* ---- rows ---- */

static int rows_reserve(ShardIndex *x) {
        size_t n = MIN(MAX(x->n_alloc * 2, (size_t) ROWS_ALLOC_MIN), x->max_rows);
        float *rows = NULL;
        char **ids;
        json_object **metadata;

        if (x->n < x->n_alloc)
                return 0;
        if (x->n >= x->max_rows)
                return -ENOSPC;
        /* Aligned, so no realloc(): the copy is what geometric growth amortizes anyway. */
        if (posix_memalign((void **) &rows, ROWS_ALIGN, n * x->dim * sizeof(float)) != 0)
                return -ENOMEM;
        ids = reallocarray(x->ids, n, sizeof(char *));
        if (!ids) {
                free(rows);
                return -ENOMEM;
        }
        x->ids = ids;
        metadata = reallocarray(x->metadata, n, sizeof(json_object *));
        if (!metadata) {
                free(rows);
                return -ENOMEM;
        }
        x->metadata = metadata;
        if (x->n > 0)
                memcpy(rows, x->rows, x->n * x->dim * sizeof(float));
        free(x->rows);
        x->rows = rows;
        x->n_alloc = n;
        return 0;
}

/* Checks vec: finite, and not zero under cosine. *ret_scale: what its components are divided by
 * when stored or searched with (the norm under cosine, else 1). */
static int vector_check(ShardMetric metric, size_t dim, const float *vec, double *ret_scale) {
        double norm = 0;

        for (size_t i = 0; i < dim; i++) {
                if (!isfinite(vec[i]))
                        return -EINVAL;
                norm += (double) vec[i] * vec[i];
        }
        if (metric == SHARD_METRIC_INNER_PRODUCT) {
                *ret_scale = 1;
                return 0;
        }
        if (norm == 0)
                return -EINVAL;
        *ret_scale = sqrt(norm);
        return 0;
}

static void vector_store(size_t dim, const float *vec, double scale, float *out) {
        if (scale == 1) {
                memcpy(out, vec, dim * sizeof(float));
                return;
        }
        for (size_t i = 0; i < dim; i++)
                out[i] = (float) (vec[i] / scale);
}

int shard_index_add(ShardIndex *x, const char *id, const float *vec, json_object *metadata) {
        _cleanup_free_ char *copy = NULL;
        double scale;
        uint32_t hash;
        size_t i;
        int r;

        if (isempty(id) || strlen(id) > SHARD_INDEX_ID_MAX)
                return -EINVAL;
        r = vector_check(x->metric, x->dim, vec, &scale);
        if (r < 0)
                return r;

        hash = id_hash(id);
        i = slot_find(x, id, hash);
        if (x->slots[i].row != NIL) {
                uint32_t k = x->slots[i].row;

                vector_store(x->dim, vec, scale, x->rows + (size_t) k * x->dim);
                json_object_put(x->metadata[k]);
                x->metadata[k] = json_object_get(metadata);
                return 1;
        }

        copy = strdup(id);
        if (!copy)
                return -ENOMEM;
        r = rows_reserve(x);
        if (r < 0)
                return r;
        r = slots_reserve(x);
        if (r < 0)
                return r;
        vector_store(x->dim, vec, scale, x->rows + x->n * x->dim);
        x->ids[x->n] = TAKE_PTR(copy);
        x->metadata[x->n] = json_object_get(metadata);
        slot_put(x->slots, x->n_slots, (Slot) { .hash = hash, .row = (uint32_t) x->n });
        x->n++;
        return 0;
}

int shard_index_remove(ShardIndex *x, const char *id) {
        size_t i, last;
        uint32_t row;

        if (isempty(id))
                return -ENOENT;
        i = slot_find(x, id, id_hash(id));
        row = x->slots[i].row;
        if (row == NIL)
                return -ENOENT;
        slot_remove(x, i);
        free(x->ids[row]);
        json_object_put(x->metadata[row]);

        last = x->n - 1;
        if (row != last) {
                /* The last row fills the hole, so rows stay contiguous for the BLAS calls. */
                memcpy(x->rows + (size_t) row * x->dim, x->rows + last * x->dim, x->dim * sizeof(float));
                x->ids[row] = x->ids[last];
                x->metadata[row] = x->metadata[last];
                x->slots[slot_find(x, x->ids[row], id_hash(x->ids[row]))].row = row;
        }
        x->n--;
        return 0;
}

int shard_index_get(const ShardIndex *x, const char *id, const float **ret_vec, json_object **ret_metadata) {
        uint32_t row;

        if (isempty(id))
                return -ENOENT;
        row = x->slots[slot_find(x, id, id_hash(id))].row;
        if (row == NIL)
                return -ENOENT;
        if (ret_vec)
                *ret_vec = x->rows + (size_t) row * x->dim;
        if (ret_metadata)
                *ret_metadata = x->metadata[row];
        return 0;
}

/* ---- search ---- */

/* a ranks below b: a lower score, or the same score and a later id. */
static bool entry_worse(const ShardIndex *x, HeapEntry a, HeapEntry b) {
        if (a.score != b.score)
                return a.score < b.score;
        return strcmp(x->ids[a.row], x->ids[b.row]) > 0;
}

static void heap_sift_down(const ShardIndex *x, HeapEntry *h, size_t n, size_t i) {
        HeapEntry e = h[i];

        for (;;) {
                size_t c = 2 * i + 1;

                if (c >= n)
                        break;
                if (c + 1 < n && entry_worse(x, h[c + 1], h[c]))
                        c++;
                if (!entry_worse(x, h[c], e))
                        break;
                h[i] = h[c];
                i = c;
        }
        h[i] = e;
}

static void heap_push(const ShardIndex *x, HeapEntry *h, size_t *n, HeapEntry e) {
        size_t i = (*n)++;

        while (i > 0 && entry_worse(x, e, h[(i - 1) / 2])) {
                h[i] = h[(i - 1) / 2];
                i = (i - 1) / 2;
        }
        h[i] = e;
}

/* Pops the worst to the end until the heap is sorted best first. */
static void heap_sort(const ShardIndex *x, HeapEntry *h, size_t n) {
        for (size_t end = n; end > 1; end--) {
                HeapEntry t = h[0];

                h[0] = h[end - 1];
                h[end - 1] = t;
                heap_sift_down(x, h, end - 1, 0);
        }
}

/* Whether row passes the filter, asked once per block whatever the number of queries:
 * *cache is 0 until known, then 1 (passes) or 2. */
static bool row_passes(const ShardIndex *x, const ShardFilter *filter, size_t row, uint8_t *cache) {
        if (!filter)
                return true;
        if (*cache == 0)
                *cache = shard_filter_match(filter, x->metadata[row]) ? 1 : 2;
        return *cache == 1;
}

/* Offers one block's scores of one query to its heap of at most k. Nearly every score falls
 * below the heap's minimum once the heap is full: that test is all they cost. */
static void block_select(const ShardIndex *x, const float *scores, size_t row0, size_t nb, const ShardFilter *filter,
                         uint8_t *pass, HeapEntry *h, size_t *n, size_t k) {
        float min = *n < k ? -INFINITY : h[0].score;

        for (size_t j = 0; j < nb; j++) {
                HeapEntry e = { .score = scores[j], .row = (uint32_t) (row0 + j) };

                /* Written so that NaN (an overflowing product) never enters. */
                if (!(e.score >= min))
                        continue;
                if (*n == k && !entry_worse(x, h[0], e))
                        continue;
                if (!row_passes(x, filter, row0 + j, &pass[j]))
                        continue;
                if (*n < k)
                        heap_push(x, h, n, e);
                else {
                        h[0] = e;
                        heap_sift_down(x, h, k, 0);
                }
                if (*n == k)
                        min = h[0].score;
        }
}

/* The scores of m queries against rows [row0, row0 + nb): scores[q * nb + j]. */
static void block_score(const ShardIndex *x, const float *q, size_t m, size_t row0, size_t nb, float *scores) {
        const float *rows = x->rows + row0 * x->dim;

        if (m == 1)
                cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint) nb, (blasint) x->dim, 1.0f, rows,
                            (blasint) x->dim, q, 1, 0.0f, scores, 1);
        else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint) m, (blasint) nb, (blasint) x->dim,
                            1.0f, q, (blasint) x->dim, rows, (blasint) x->dim, 0.0f, scores, (blasint) nb);
}

static size_t block_rows(size_t m) {
        return MIN(MAX(BLOCK_SCORES / m, (size_t) BLOCK_ROWS_MIN), (size_t) BLOCK_ROWS_MAX);
}

int shard_index_search(const ShardIndex *x, const float *queries, size_t nq, size_t k, const ShardFilter *filter,
                       ShardHit *hits, size_t *n_hits) {
        _cleanup_free_ float *normalized = NULL, *scores = NULL;
        _cleanup_free_ HeapEntry *heaps = NULL;
        _cleanup_free_ size_t *sizes = NULL;
        _cleanup_free_ uint8_t *pass = NULL;
        const float *q = queries;
        size_t chunk = MIN(nq, (size_t) QUERY_CHUNK);
        int r;

        if (k == 0 || k > SHARD_SEARCH_K_MAX || nq == 0 || nq > SHARD_SEARCH_QUERIES_MAX)
                return -EINVAL;
        if (x->metric == SHARD_METRIC_COSINE) {
                normalized = malloc(nq * x->dim * sizeof(float));
                if (!normalized)
                        return -ENOMEM;
                q = normalized;
        }
        for (size_t i = 0; i < nq; i++) {
                double scale;

                r = vector_check(x->metric, x->dim, queries + i * x->dim, &scale);
                if (r < 0)
                        return r;
                if (normalized)
                        vector_store(x->dim, queries + i * x->dim, scale, normalized + i * x->dim);
        }

        heaps = malloc(nq * k * sizeof(HeapEntry));
        sizes = calloc(nq, sizeof(size_t));
        /* m * block_rows(m) is at most this for every m <= chunk, the last chunk's too. */
        scores = malloc(MIN(chunk * BLOCK_ROWS_MAX, MAX((size_t) BLOCK_SCORES, chunk * BLOCK_ROWS_MIN)) * sizeof(float));
        pass = malloc(BLOCK_ROWS_MAX);
        if (!heaps || !sizes || !scores || !pass)
                return -ENOMEM;

        for (size_t q0 = 0; q0 < nq; q0 += chunk) {
                size_t m = MIN(chunk, nq - q0), rows = block_rows(m);

                for (size_t row0 = 0; row0 < x->n; row0 += rows) {
                        size_t nb = MIN(rows, x->n - row0);

                        block_score(x, q + q0 * x->dim, m, row0, nb, scores);
                        if (filter)
                                memset(pass, 0, nb);
                        for (size_t j = 0; j < m; j++)
                                block_select(x, scores + j * nb, row0, nb, filter, pass, heaps + (q0 + j) * k,
                                             &sizes[q0 + j], k);
                }
        }

        for (size_t i = 0; i < nq; i++) {
                HeapEntry *h = heaps + i * k;

                heap_sort(x, h, sizes[i]);
                for (size_t j = 0; j < sizes[i]; j++)
                        hits[i * k + j] = (ShardHit) {
                                .id = x->ids[h[j].row],
                                .metadata = x->metadata[h[j].row],
                                .score = h[j].score,
                        };
                n_hits[i] = sizes[i];
        }
        return 0;
}

/* ---- scatter-gather ---- */

static int hit_rank(const void *a, const void *b) {
        const ShardHit *x = a, *y = b;

        if (x->score != y->score)
                return x->score > y->score ? -1 : 1;
        return strcmp(x->id, y->id);
}

static int hit_by_id(const void *a, const void *b) {
        const ShardHit *x = a, *y = b;

        return strcmp(x->id, y->id) ?: hit_rank(a, b);
}

int shard_hits_merge(const ShardHitList *lists, size_t n_lists, size_t k, ShardHit *ret, size_t *ret_n) {
        _cleanup_free_ ShardHit *all = NULL;
        size_t total = 0, n = 0, kept = 0;

        if (k == 0 || k > SHARD_SEARCH_K_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n_lists; i++) {
                if (lists[i].n > SIZE_MAX / sizeof(ShardHit) - total)
                        return -ENOMEM;
                total += lists[i].n;
        }
        all = malloc(MAX(total, (size_t) 1) * sizeof(ShardHit));
        if (!all)
                return -ENOMEM;
        for (size_t i = 0; i < n_lists; i++)
                for (size_t j = 0; j < lists[i].n; j++)
                        if (lists[i].hits[j].id && !isnan(lists[i].hits[j].score))
                                all[n++] = lists[i].hits[j];

        /* Each id once, with its best score: sorted by id, best first within an id. */
        qsort(all, n, sizeof(ShardHit), hit_by_id);
        for (size_t i = 0; i < n; i++)
                if (kept == 0 || !streq(all[kept - 1].id, all[i].id))
                        all[kept++] = all[i];

        qsort(all, kept, sizeof(ShardHit), hit_rank);
        kept = MIN(kept, k);
        memcpy(ret, all, kept * sizeof(ShardHit));
        *ret_n = kept;
        return 0;
}
