/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shardd/shard-search.c: exact top-k against a brute-force reference in
 * double precision on seeded random data (both metrics, 1 and 7 queries, k 1/10/100, filters,
 * before and after removals and replacements), ties, the scatter-gather merge, limits, churn. */
#include <math.h>
#include <stdio.h>
#include <xxhash.h>

#include "json-cleanup.h"
#include "shard-search.h"
#include "unit-test.h"

#define DIM 24
/* Odd: not a multiple of any block size the index cuts its rows in. */
#define N_ROWS (40000 + 37)
#define N_ADDED 1000
#define DOCS_MAX (N_ROWS + N_ADDED)
#define N_QUERIES 7
/* Scores of float32 BLAS against double: relative error far below this at DIM floats. */
#define TOLERANCE 1e-4

static uint64_t rng_state;

/* xorshift64*: the same numbers on every machine. */
static uint64_t rng_next(void) {
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 0x2545F4914F6CDD1DULL;
}

static float rng_float(void) {
        return (float) ((double) (rng_next() >> 11) / (double) (1ULL << 53) * 2.0 - 1.0);
}

static void rng_vector(float *v, size_t dim) {
        for (size_t i = 0; i < dim; i++)
                v[i] = rng_float();
}

/* What the index should hold, kept by the test: doc i is "doc-<i>". */
typedef struct Doc {
        bool alive;
        char id[16];
        float vec[DIM];
        bool has_metadata;
        int group, bucket;
        bool even;
} Doc;

static Doc docs[DOCS_MAX];

static json_object *doc_metadata(const Doc *d) {
        json_object *m;

        if (!d->has_metadata)
                return NULL;
        m = json_object_new_object();
        json_object_object_add(m, "group", json_object_new_int(d->group));
        json_object_object_add(m, "bucket", json_object_new_int(d->bucket));
        json_object_object_add(m, "even", json_object_new_boolean(d->even));
        return m;
}

static void doc_add(ShardIndex *x, unsigned i, int group_shift) {
        _cleanup_(json_object_putp) json_object *m = NULL;
        Doc *d = &docs[i];
        bool existed = d->alive;

        snprintf(d->id, sizeof(d->id), "doc-%u", i);
        rng_vector(d->vec, DIM);
        d->has_metadata = i % 13 != 0;
        d->group = (int) ((i + (unsigned) group_shift) % 5);
        d->bucket = (int) (i % 97);
        d->even = i % 2 == 0;
        d->alive = true;
        m = doc_metadata(d);
        ck_assert_int_eq(shard_index_add(x, d->id, d->vec, m), existed ? 1 : 0);
}

static void doc_remove(ShardIndex *x, unsigned i) {
        ck_assert_int_eq(shard_index_remove(x, docs[i].id), 0);
        docs[i].alive = false;
}

/* The filters the exactness test uses, as JSON for the index and as C for the reference. */
typedef bool (*Predicate)(const Doc *d);

static bool pass_all(const Doc *d) {
        return true;
}

static bool pass_group_odd_even(const Doc *d) {
        return d->has_metadata && (d->group == 1 || d->group == 3) && d->even;
}

/* Fewer rows than the largest k. */
static bool pass_rare(const Doc *d) {
        return d->has_metadata && d->group == 0 && d->bucket < 1;
}

static const struct {
        const char *where;
        Predicate pass;
} filters[] = {
        { NULL, pass_all },
        { "{\"group\": {\"$in\": [1, 3]}, \"even\": true}", pass_group_odd_even },
        { "{\"$and\": [{\"group\": 0}, {\"bucket\": {\"$lt\": 1}}]}", pass_rare },
};

typedef struct Ref {
        double score;
        unsigned doc;
} Ref;

static double ref_score(ShardMetric metric, const float *q, const float *v) {
        double dot = 0, nq = 0, nv = 0;

        for (size_t i = 0; i < DIM; i++) {
                dot += (double) q[i] * v[i];
                nq += (double) q[i] * q[i];
                nv += (double) v[i] * v[i];
        }
        return metric == SHARD_METRIC_COSINE ? dot / sqrt(nq) / sqrt(nv) : dot;
}

static int ref_compare(const void *a, const void *b) {
        const Ref *x = a, *y = b;

        if (x->score != y->score)
                return x->score > y->score ? -1 : 1;
        return strcmp(docs[x->doc].id, docs[y->doc].id);
}

static unsigned doc_of(const char *id) {
        unsigned i;

        ck_assert_msg(sscanf(id, "doc-%u", &i) == 1 && i < DOCS_MAX, "unknown id %s", id);
        ck_assert_msg(docs[i].alive, "removed doc %s returned", id);
        return i;
}

static bool within(double a, double b) {
        return fabs(a - b) <= TOLERANCE * MAX(1.0, fabs(b));
}

/* One query's hits against the brute-force ranking of all alive docs passing the filter. A hit
 * may differ from the reference at its rank only in a near tie (scores within the tolerance). */
static void check_hits(ShardMetric metric, const float *q, Predicate pass, size_t k, const ShardHit *hits,
                       size_t n_hits, Ref *ref) {
        size_t n_ref = 0;

        for (unsigned i = 0; i < DOCS_MAX; i++)
                if (docs[i].alive && pass(&docs[i]))
                        ref[n_ref++] = (Ref) { .score = ref_score(metric, q, docs[i].vec), .doc = i };
        qsort(ref, n_ref, sizeof(Ref), ref_compare);

        ck_assert_uint_eq(n_hits, MIN(k, n_ref));
        for (size_t j = 0; j < n_hits; j++) {
                unsigned d = doc_of(hits[j].id);

                ck_assert_msg(pass(&docs[d]), "%s does not pass the filter", hits[j].id);
                ck_assert_msg(within(hits[j].score, ref_score(metric, q, docs[d].vec)),
                              "%s: score %.7f, true %.7f", hits[j].id, hits[j].score, ref_score(metric, q, docs[d].vec));
                ck_assert_msg(streq(hits[j].id, docs[ref[j].doc].id) || within(hits[j].score, ref[j].score),
                              "rank %zu of %zu: %s (%.7f), expected %s (%.7f)", j, k, hits[j].id, hits[j].score,
                              docs[ref[j].doc].id, ref[j].score);
                if (j > 0) {
                        ck_assert(hits[j - 1].score > hits[j].score ||
                                  (hits[j - 1].score == hits[j].score && strcmp(hits[j - 1].id, hits[j].id) < 0));
                        for (size_t i = 0; i < j; i++)
                                ck_assert_str_ne(hits[i].id, hits[j].id);
                }
                /* The metadata handed back is the row's own. */
                ck_assert(!hits[j].metadata == !docs[d].has_metadata);
        }
}

/* Every metric, query count, k and filter against the reference. */
static void check_all(ShardIndex *x, ShardMetric metric, const float *queries) {
        _cleanup_free_ ShardHit *hits = malloc(N_QUERIES * 100 * sizeof(ShardHit));
        _cleanup_free_ Ref *ref = malloc(DOCS_MAX * sizeof(Ref));
        static const size_t ks[] = { 1, 10, 100 }, nqs[] = { 1, N_QUERIES };

        ck_assert_ptr_nonnull(hits);
        ck_assert_ptr_nonnull(ref);
        for (size_t fi = 0; fi < ELEMENTSOF(filters); fi++) {
                _cleanup_(shard_filter_freep) ShardFilter *f = NULL;

                if (filters[fi].where) {
                        _cleanup_(json_object_putp) json_object *w = json_tokener_parse(filters[fi].where);

                        ck_assert_int_eq(shard_filter_compile(w, &f, NULL), 0);
                }
                for (size_t ki = 0; ki < ELEMENTSOF(ks); ki++)
                        for (size_t qi = 0; qi < ELEMENTSOF(nqs); qi++) {
                                size_t n_hits[N_QUERIES], k = ks[ki], nq = nqs[qi];

                                ck_assert_int_eq(shard_index_search(x, queries, nq, k, f, hits, n_hits), 0);
                                for (size_t q = 0; q < nq; q++)
                                        check_hits(metric, queries + q * DIM, filters[fi].pass, k, hits + q * k,
                                                   n_hits[q], ref);
                        }
        }
}

static void test_exact(ShardMetric metric, uint64_t seed) {
        _cleanup_(shard_index_freep) ShardIndex *x = NULL;
        float queries[N_QUERIES * DIM];
        size_t alive = 0;

        rng_state = seed;
        memset(docs, 0, sizeof(docs));
        ck_assert_int_eq(shard_index_new(DIM, metric, DOCS_MAX, &x), 0);
        for (unsigned i = 0; i < N_ROWS; i++)
                doc_add(x, i, 0);
        ck_assert_uint_eq(shard_index_count(x), N_ROWS);
        rng_vector(queries, N_QUERIES * DIM);
        check_all(x, metric, queries);

        /* Removals move the last rows into the holes; replacements keep rows where they are. */
        for (unsigned i = 0; i < N_ROWS; i++)
                if (i % 7 == 3)
                        doc_remove(x, i);
                else if (i % 11 == 5)
                        doc_add(x, i, 1);
        for (unsigned i = N_ROWS; i < DOCS_MAX; i++)
                doc_add(x, i, 0);
        for (unsigned i = N_ROWS; i < DOCS_MAX; i += 3)
                doc_remove(x, i);
        for (unsigned i = 0; i < DOCS_MAX; i++)
                alive += docs[i].alive;
        ck_assert_uint_eq(shard_index_count(x), alive);
        check_all(x, metric, queries);
}

START_TEST(test_exact_inner_product) {
        test_exact(SHARD_METRIC_INNER_PRODUCT, 0x9E3779B97F4A7C15ULL);
}
END_TEST

START_TEST(test_exact_cosine) {
        test_exact(SHARD_METRIC_COSINE, 0xD1B54A32D192ED03ULL);
}
END_TEST

/* More queries than one sgemm takes (chunks of 64, 64 and 2): each answers as it does alone. */
START_TEST(test_many_queries) {
        _cleanup_(shard_index_freep) ShardIndex *x = NULL;
        _cleanup_free_ float *queries = malloc(130 * DIM * sizeof(float));
        _cleanup_free_ ShardHit *hits = malloc(130 * 5 * sizeof(ShardHit));
        size_t n_hits[130];
        float v[DIM];
        char id[16];

        rng_state = 99;
        ck_assert_int_eq(shard_index_new(DIM, SHARD_METRIC_COSINE, 5000, &x), 0);
        for (unsigned i = 0; i < 5000; i++) {
                snprintf(id, sizeof(id), "q%u", i);
                rng_vector(v, DIM);
                ck_assert_int_eq(shard_index_add(x, id, v, NULL), 0);
        }
        rng_vector(queries, 130 * DIM);
        ck_assert_int_eq(shard_index_search(x, queries, 130, 5, NULL, hits, n_hits), 0);
        for (size_t q = 0; q < 130; q++) {
                ShardHit alone[5];
                size_t n;

                ck_assert_int_eq(shard_index_search(x, queries + q * DIM, 1, 5, NULL, alone, &n), 0);
                ck_assert_uint_eq(n_hits[q], 5);
                ck_assert_uint_eq(n, 5);
                for (size_t j = 0; j < 5; j++) {
                        ck_assert(fabsf(hits[q * 5 + j].score - alone[j].score) <= TOLERANCE);
                        ck_assert_msg(streq(hits[q * 5 + j].id, alone[j].id) ||
                                      fabsf(hits[q * 5 + j].score - alone[j].score) <= 1e-6f,
                                      "query %zu rank %zu: %s, alone %s", q, j, hits[q * 5 + j].id, alone[j].id);
                }
        }
}
END_TEST

/* Equal scores rank by id, at the heap's boundary too, whatever the order of the rows. */
START_TEST(test_ties_by_id) {
        _cleanup_(shard_index_freep) ShardIndex *x = NULL;
        float v[4] = { 1, 2, 3, 4 }, better[4] = { 2, 2, 3, 4 }, q[4] = { 1, 1, 1, 1 };
        ShardHit hits[10];
        size_t n;
        char id[16];

        ck_assert_int_eq(shard_index_new(4, SHARD_METRIC_INNER_PRODUCT, 1000, &x), 0);
        /* 300 equal rows, ids added in a scrambled order. */
        for (unsigned i = 0; i < 300; i++) {
                snprintf(id, sizeof(id), "t%03u", (i * 7919) % 300);
                ck_assert_int_eq(shard_index_add(x, id, v, NULL), 0);
        }
        ck_assert_int_eq(shard_index_add(x, "zz-best", better, NULL), 0);
        for (unsigned nq = 1; nq <= 2; nq++) {
                float queries[8] = { 1, 1, 1, 1, 1, 1, 1, 1 };
                ShardHit h2[20];
                size_t n2[2];

                ck_assert_int_eq(shard_index_search(x, queries, nq, 10, NULL, h2, n2), 0);
                for (unsigned qi = 0; qi < nq; qi++) {
                        ck_assert_uint_eq(n2[qi], 10);
                        ck_assert_str_eq(h2[qi * 10].id, "zz-best");
                        ck_assert_float_eq(h2[qi * 10].score, 11);
                        for (unsigned j = 1; j < 10; j++) {
                                snprintf(id, sizeof(id), "t%03u", j - 1);
                                ck_assert_str_eq(h2[qi * 10 + j].id, id);
                                ck_assert_float_eq(h2[qi * 10 + j].score, 10);
                        }
                }
        }
        ck_assert_int_eq(shard_index_search(x, q, 1, 1, NULL, hits, &n), 0);
        ck_assert_uint_eq(n, 1);
        ck_assert_str_eq(hits[0].id, "zz-best");
}
END_TEST

/* Shards searched apart and merged give the top k of the union. */
START_TEST(test_merge_equals_union) {
        _cleanup_(shard_index_freep) ShardIndex *all = NULL;
        ShardIndex *shards[4] = {};
        _cleanup_free_ ShardHit *hits = malloc(4 * 100 * sizeof(ShardHit));
        ShardHit merged[100], expect[100];
        float q[DIM], v[DIM];
        char id[16];

        rng_state = 42;
        ck_assert_int_eq(shard_index_new(DIM, SHARD_METRIC_COSINE, 20000, &all), 0);
        for (unsigned s = 0; s < 4; s++)
                ck_assert_int_eq(shard_index_new(DIM, SHARD_METRIC_COSINE, 20000, &shards[s]), 0);
        for (unsigned i = 0; i < 10007; i++) {
                snprintf(id, sizeof(id), "m%u", i);
                rng_vector(v, DIM);
                ck_assert_int_eq(shard_index_add(all, id, v, NULL), 0);
                ck_assert_int_eq(shard_index_add(shards[(i * 2654435761U) % 4], id, v, NULL), 0);
        }
        for (unsigned round = 0; round < 5; round++) {
                static const size_t ks[] = { 1, 10, 100 };

                rng_vector(q, DIM);
                for (size_t ki = 0; ki < ELEMENTSOF(ks); ki++) {
                        size_t k = ks[ki], n[4], n_merged, n_expect;
                        ShardHitList lists[4];

                        for (unsigned s = 0; s < 4; s++) {
                                ck_assert_int_eq(shard_index_search(shards[s], q, 1, k, NULL, hits + s * k, &n[s]), 0);
                                lists[s] = (ShardHitList) { hits + s * k, n[s] };
                        }
                        ck_assert_int_eq(shard_hits_merge(lists, 4, k, merged, &n_merged), 0);
                        ck_assert_int_eq(shard_index_search(all, q, 1, k, NULL, expect, &n_expect), 0);
                        ck_assert_uint_eq(n_merged, k);
                        ck_assert_uint_eq(n_expect, k);
                        for (size_t j = 0; j < k; j++) {
                                ck_assert_msg(streq(merged[j].id, expect[j].id) ||
                                              fabsf(merged[j].score - expect[j].score) <= TOLERANCE,
                                              "rank %zu: %s, expected %s", j, merged[j].id, expect[j].id);
                                ck_assert(fabsf(merged[j].score - expect[j].score) <= TOLERANCE);
                        }
                }
        }
        for (unsigned s = 0; s < 4; s++)
                shard_index_free(shards[s]);
}
END_TEST

/* An id in two lists (a shard caught mid-move) counts once, with its best score; NaN goes. */
START_TEST(test_merge_duplicates) {
        const ShardHit a[] = { { "x", NULL, 0.9f }, { "y", NULL, 0.5f }, { "n", NULL, NAN } };
        const ShardHit b[] = { { "y", NULL, 0.7f }, { "x", NULL, 0.8f }, { "w", NULL, 0.5f } };
        const ShardHitList lists[] = { { a, ELEMENTSOF(a) }, { b, ELEMENTSOF(b) }, { NULL, 0 } };
        ShardHit out[10];
        size_t n = 99;

        ck_assert_int_eq(shard_hits_merge(lists, ELEMENTSOF(lists), 10, out, &n), 0);
        ck_assert_uint_eq(n, 3);
        ck_assert_str_eq(out[0].id, "x");
        ck_assert_float_eq(out[0].score, 0.9f);
        ck_assert_str_eq(out[1].id, "y");
        ck_assert_float_eq(out[1].score, 0.7f);
        ck_assert_str_eq(out[2].id, "w");
        ck_assert_int_eq(shard_hits_merge(lists, ELEMENTSOF(lists), 2, out, &n), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert_int_eq(shard_hits_merge(lists, 0, 2, out, &n), 0);
        ck_assert_uint_eq(n, 0);
        ck_assert_int_eq(shard_hits_merge(lists, 1, 0, out, &n), -EINVAL);
        ck_assert_int_eq(shard_hits_merge(lists, 1, SHARD_SEARCH_K_MAX + 1, out, &n), -EINVAL);
}
END_TEST

START_TEST(test_limits_and_errors) {
        _cleanup_(shard_index_freep) ShardIndex *x = NULL, *c = NULL;
        _cleanup_(json_object_putp) json_object *m = json_object_new_object();
        float v[3] = { 3, 0, 4 }, zero[3] = {}, bad[3] = { 1, NAN, 0 }, inf[3] = { 1, INFINITY, 0 };
        ShardHit hits[SHARD_SEARCH_K_MAX];
        _cleanup_free_ char *long_id = malloc(SHARD_INDEX_ID_MAX + 2);
        ShardIndex *none = NULL;
        const float *stored;
        json_object *meta;
        size_t n = 99;
        char id[16];

        ck_assert_int_eq(shard_index_new(0, SHARD_METRIC_COSINE, 10, &none), -EINVAL);
        ck_assert_int_eq(shard_index_new(SHARD_INDEX_DIM_MAX + 1, SHARD_METRIC_COSINE, 10, &none), -EINVAL);
        ck_assert_int_eq(shard_index_new(3, SHARD_METRIC_COSINE, 0, &none), -EINVAL);
        ck_assert_int_eq(shard_index_new(3, (ShardMetric) 7, 10, &none), -EINVAL);
        ck_assert_ptr_null(none);
        ck_assert_int_eq(shard_index_new(SHARD_INDEX_DIM_MAX, SHARD_METRIC_COSINE, 10, &none), 0);
        none = shard_index_free(none);

        ck_assert_int_eq(shard_index_new(3, SHARD_METRIC_INNER_PRODUCT, 1000, &x), 0);
        ck_assert_int_eq(shard_index_new(3, SHARD_METRIC_COSINE, 10, &c), 0);
        ck_assert_uint_eq(shard_index_dim(c), 3);
        ck_assert_int_eq(shard_index_metric(c), SHARD_METRIC_COSINE);

        /* An empty index answers nothing. */
        ck_assert_int_eq(shard_index_search(c, v, 1, 5, NULL, hits, &n), 0);
        ck_assert_uint_eq(n, 0);

        /* Bad ids and vectors. */
        memset(long_id, 'a', SHARD_INDEX_ID_MAX + 1);
        long_id[SHARD_INDEX_ID_MAX + 1] = '\0';
        ck_assert_int_eq(shard_index_add(c, "", v, NULL), -EINVAL);
        ck_assert_int_eq(shard_index_add(c, long_id, v, NULL), -EINVAL);
        long_id[SHARD_INDEX_ID_MAX] = '\0';
        ck_assert_int_eq(shard_index_add(c, long_id, v, NULL), 0);
        ck_assert_int_eq(shard_index_remove(c, long_id), 0);
        ck_assert_int_eq(shard_index_add(c, "z", zero, NULL), -EINVAL);
        ck_assert_int_eq(shard_index_add(x, "z", zero, NULL), 0);
        ck_assert_int_eq(shard_index_add(c, "n", bad, NULL), -EINVAL);
        ck_assert_int_eq(shard_index_add(x, "n", bad, NULL), -EINVAL);
        ck_assert_int_eq(shard_index_add(x, "i", inf, NULL), -EINVAL);
        ck_assert_uint_eq(shard_index_count(c), 0);

        /* Cosine stores the row normalized; the metadata is referenced, not copied. */
        json_object_object_add(m, "k", json_object_new_string("v"));
        ck_assert_int_eq(shard_index_add(c, "a", v, m), 0);
        ck_assert_int_eq(shard_index_get(c, "a", &stored, &meta), 0);
        ck_assert_ptr_eq(meta, m);
        ck_assert(fabsf(stored[0] - 0.6f) < 1e-6f && stored[1] == 0 && fabsf(stored[2] - 0.8f) < 1e-6f);
        ck_assert_int_eq(shard_index_add(c, "a", v, NULL), 1);
        ck_assert_int_eq(shard_index_get(c, "a", NULL, &meta), 0);
        ck_assert_ptr_null(meta);
        ck_assert_int_eq(shard_index_get(c, "b", NULL, NULL), -ENOENT);
        ck_assert_int_eq(shard_index_remove(c, "b"), -ENOENT);

        /* Bad searches. */
        ck_assert_int_eq(shard_index_search(c, v, 1, 0, NULL, hits, &n), -EINVAL);
        ck_assert_int_eq(shard_index_search(c, v, 1, SHARD_SEARCH_K_MAX + 1, NULL, hits, &n), -EINVAL);
        ck_assert_int_eq(shard_index_search(c, v, 0, 1, NULL, hits, &n), -EINVAL);
        ck_assert_int_eq(shard_index_search(c, v, SHARD_SEARCH_QUERIES_MAX + 1, 1, NULL, hits, &n), -EINVAL);
        ck_assert_int_eq(shard_index_search(c, zero, 1, 1, NULL, hits, &n), -EINVAL);
        ck_assert_int_eq(shard_index_search(x, bad, 1, 1, NULL, hits, &n), -EINVAL);
        ck_assert_int_eq(shard_index_search(c, v, 1, SHARD_SEARCH_K_MAX, NULL, hits, &n), 0);
        ck_assert_uint_eq(n, 1);
        ck_assert(fabsf(hits[0].score - 1) < 1e-6f);

        /* The row limit: grows up to it, refuses past it, takes again after a removal. */
        for (unsigned i = 1; i < 1000; i++) {
                snprintf(id, sizeof(id), "r%u", i);
                ck_assert_int_eq(shard_index_add(x, id, v, NULL), 0);
        }
        ck_assert_uint_eq(shard_index_count(x), 1000);
        ck_assert_int_eq(shard_index_add(x, "one-more", v, NULL), -ENOSPC);
        ck_assert_int_eq(shard_index_add(x, "r5", zero, NULL), 1);
        ck_assert_int_eq(shard_index_remove(x, "r7"), 0);
        ck_assert_int_eq(shard_index_add(x, "one-more", v, NULL), 0);
        ck_assert_int_eq(shard_index_get(x, "r5", &stored, NULL), 0);
        ck_assert(stored[0] == 0 && stored[2] == 0);
}
END_TEST

/* Random adds, replacements and removals against a model: the id map finds every id at its row
 * after backward-shift deletions (also of runs that wrap around the end of the table) and the
 * last row moving into holes. About 2000 of 3000 keys present: the map runs near half full. */
#define CHURN_KEYS 3000

static void churn_check(const ShardIndex *x, const bool *present, const float *vals) {
        char id[24];

        for (unsigned i = 0; i < CHURN_KEYS; i++) {
                const float *v;

                snprintf(id, sizeof(id), "key:%u", i);
                ck_assert_int_eq(shard_index_get(x, id, &v, NULL), present[i] ? 0 : -ENOENT);
                if (present[i])
                        ck_assert_float_eq(*v, vals[i]);
        }
}

START_TEST(test_churn) {
        _cleanup_(shard_index_freep) ShardIndex *x = NULL;
        static bool present[CHURN_KEYS];
        static float vals[CHURN_KEYS];
        size_t count = 0;
        char id[24];

        rng_state = 7;
        memset(present, 0, sizeof(present));
        ck_assert_int_eq(shard_index_new(1, SHARD_METRIC_INNER_PRODUCT, CHURN_KEYS, &x), 0);
        for (unsigned op = 0; op < 200000; op++) {
                unsigned i = (unsigned) (rng_next() % CHURN_KEYS);
                float v = (float) i + (float) (op % 100) / 1000.0f;

                snprintf(id, sizeof(id), "key:%u", i);
                if (rng_next() % 3 == 0) {
                        ck_assert_int_eq(shard_index_remove(x, id), present[i] ? 0 : -ENOENT);
                        count -= present[i];
                        present[i] = false;
                } else {
                        ck_assert_int_eq(shard_index_add(x, id, &v, NULL), present[i] ? 1 : 0);
                        count += !present[i];
                        present[i] = true;
                        vals[i] = v;
                }
                ck_assert_uint_eq(shard_index_count(x), count);
                if (op % 5000 == 0)
                        churn_check(x, present, vals);
        }
        churn_check(x, present, vals);
}
END_TEST

/* An id whose XXH3 ends in the given low bits (after skip others that do). */
static void id_with_home(unsigned home, unsigned skip, char *id, size_t size) {
        for (unsigned i = 0;; i++) {
                snprintf(id, size, "h%u", i);
                if ((XXH3_64bits(id, strlen(id)) & 15) == home && skip-- == 0)
                        return;
        }
}

/* A run of the id map that wraps around the end of its table, emptied from its start. The ids
 * are picked so that, in a 16-slot table placed by the low bits of XXH3, d sits in slot 0, a in
 * 15 and b (home 15) wraps to 1; removing d must pull b back onto its probe path. e, far from
 * them, is the last row, the one that moves into d's. Should the map place ids otherwise, the
 * test still checks the same answers, only less pointedly. */
START_TEST(test_map_wraparound) {
        _cleanup_(shard_index_freep) ShardIndex *x = NULL;
        char d[16], a[16], b[16], e[16];
        float v = 1;

        id_with_home(0, 0, d, sizeof(d));
        id_with_home(15, 0, a, sizeof(a));
        id_with_home(15, 1, b, sizeof(b));
        id_with_home(7, 0, e, sizeof(e));
        ck_assert_int_eq(shard_index_new(1, SHARD_METRIC_INNER_PRODUCT, 100, &x), 0);
        ck_assert_int_eq(shard_index_add(x, d, &v, NULL), 0);
        ck_assert_int_eq(shard_index_add(x, a, &v, NULL), 0);
        ck_assert_int_eq(shard_index_add(x, b, &v, NULL), 0);
        ck_assert_int_eq(shard_index_add(x, e, &v, NULL), 0);
        ck_assert_int_eq(shard_index_remove(x, d), 0);
        ck_assert_int_eq(shard_index_get(x, e, NULL, NULL), 0);
        ck_assert_int_eq(shard_index_get(x, a, NULL, NULL), 0);
        ck_assert_int_eq(shard_index_get(x, b, NULL, NULL), 0);
        ck_assert_int_eq(shard_index_remove(x, a), 0);
        ck_assert_int_eq(shard_index_get(x, b, NULL, NULL), 0);
        ck_assert_int_eq(shard_index_add(x, b, &v, NULL), 1);
        ck_assert_uint_eq(shard_index_count(x), 2);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shard-search");
        TCase *tc = tcase_create("core");

        tcase_set_timeout(tc, 120);
        tcase_add_test(tc, test_exact_inner_product);
        tcase_add_test(tc, test_exact_cosine);
        tcase_add_test(tc, test_ties_by_id);
        tcase_add_test(tc, test_many_queries);
        tcase_add_test(tc, test_merge_equals_union);
        tcase_add_test(tc, test_merge_duplicates);
        tcase_add_test(tc, test_limits_and_errors);
        tcase_add_test(tc, test_churn);
        tcase_add_test(tc, test_map_wraparound);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
