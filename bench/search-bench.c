/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-search-bench: loads raw float32 vectors and queries, builds one shard index, and times
 * exact top-k searches one query at a time and in batches, single-threaded (bench/search.py). */
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shard-search.h"

static double now_seconds(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* The whole file, which must hold whole vectors of dim floats; *ret_n of them. */
static float *load_vectors(const char *path, size_t dim, size_t *ret_n) {
        FILE *f = fopen(path, "rb");
        float *v = NULL;
        long size;

        if (!f) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                return NULL;
        }
        if (fseek(f, 0, SEEK_END) < 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0)
                goto fail;
        if (size == 0 || (size_t) size % (dim * sizeof(float)) != 0) {
                fprintf(stderr, "%s: %ld bytes is not a whole number of %zu-float vectors\n", path, size, dim);
                goto fail;
        }
        v = malloc((size_t) size);
        if (!v || fread(v, 1, (size_t) size, f) != (size_t) size) {
                fprintf(stderr, "%s: cannot read\n", path);
                free(v);
                v = NULL;
                goto fail;
        }
        *ret_n = (size_t) size / (dim * sizeof(float));
fail:
        fclose(f);
        return v;
}

/* Runs count queries in batches of batch, prints "<label> qps <q/s> seconds <s>" and then one
 * line "<label> <query> <ids best first>" per query. */
static int run(const ShardIndex *x, const float *queries, size_t count, size_t batch, size_t k, const char *label) {
        ShardHit *hits = malloc(batch * k * sizeof(ShardHit)), *all = malloc(count * k * sizeof(ShardHit));
        size_t *n = malloc(count * sizeof(size_t));
        double t0, dt;
        int r = 0;

        if (!hits || !all || !n) {
                r = -ENOMEM;
                goto out;
        }
        t0 = now_seconds();
        for (size_t q = 0; q < count; q += batch) {
                size_t m = batch < count - q ? batch : count - q;

                r = shard_index_search(x, queries + q * shard_index_dim(x), m, k, NULL, hits, n + q);
                if (r < 0)
                        goto out;
                for (size_t i = 0; i < m; i++)
                        memcpy(all + (q + i) * k, hits + i * k, n[q + i] * sizeof(ShardHit));
        }
        dt = now_seconds() - t0;
        printf("%s qps %.2f seconds %.4f\n", label, (double) count / dt, dt);
        for (size_t q = 0; q < count; q++) {
                printf("%s %zu", label, q);
                for (size_t i = 0; i < n[q]; i++)
                        printf(" %s", all[q * k + i].id);
                printf("\n");
        }
out:
        free(hits);
        free(all);
        free(n);
        return r;
}

static void usage(FILE *f) {
        fprintf(f, "Usage: mycelia-search-bench --dim D --vectors FILE --queries FILE [--k 10] [--batch 32] [--count N]\n"
                   "Row i of FILE is the document with id \"i\". Metric: inner product. Single-threaded.\n");
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "dim", required_argument, NULL, 'd' },
                { "vectors", required_argument, NULL, 'v' },
                { "queries", required_argument, NULL, 'q' },
                { "k", required_argument, NULL, 'k' },
                { "batch", required_argument, NULL, 'b' },
                { "count", required_argument, NULL, 'c' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        const char *vectors_path = NULL, *queries_path = NULL;
        size_t dim = 0, k = 10, batch = 32, count = 0, n_rows, n_queries;
        _cleanup_(shard_index_freep) ShardIndex *x = NULL;
        _cleanup_free_ float *rows = NULL, *queries = NULL;
        char label[32];
        double t0;
        int c, r;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'd':
                        dim = strtoul(optarg, NULL, 10);
                        break;
                case 'v':
                        vectors_path = optarg;
                        break;
                case 'q':
                        queries_path = optarg;
                        break;
                case 'k':
                        k = strtoul(optarg, NULL, 10);
                        break;
                case 'b':
                        batch = strtoul(optarg, NULL, 10);
                        break;
                case 'c':
                        count = strtoul(optarg, NULL, 10);
                        break;
                case 'h':
                        usage(stdout);
                        return EXIT_SUCCESS;
                default:
                        usage(stderr);
                        return EXIT_FAILURE;
                }
        if (dim == 0 || dim > SHARD_INDEX_DIM_MAX || !vectors_path || !queries_path || k == 0 ||
            k > SHARD_SEARCH_K_MAX || batch == 0 || batch > SHARD_SEARCH_QUERIES_MAX) {
                usage(stderr);
                return EXIT_FAILURE;
        }

        /* One thread, as faiss gets in bench/search.py: the numbers compare kernels, not cores. */
        openblas_set_num_threads(1);

        rows = load_vectors(vectors_path, dim, &n_rows);
        queries = load_vectors(queries_path, dim, &n_queries);
        if (!rows || !queries)
                return EXIT_FAILURE;
        if (count == 0 || count > n_queries)
                count = n_queries;

        t0 = now_seconds();
        r = shard_index_new(dim, SHARD_METRIC_INNER_PRODUCT, n_rows, &x);
        for (size_t i = 0; r >= 0 && i < n_rows; i++) {
                char id[24];

                snprintf(id, sizeof(id), "%zu", i);
                r = shard_index_add(x, id, rows + i * dim, NULL);
        }
        if (r < 0) {
                fprintf(stderr, "Failed to build the index: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        /* The index holds its own copy. */
        free(TAKE_PTR(rows));
        printf("build rows %zu dim %zu seconds %.3f\n", n_rows, dim, now_seconds() - t0);

        /* A warm-up query, not timed: first-touch page faults and BLAS's own start-up. */
        r = run(x, queries, 1, 1, k, "warmup");
        if (r >= 0)
                r = run(x, queries, count, 1, k, "single");
        snprintf(label, sizeof(label), "batch%zu", batch);
        if (r >= 0)
                r = run(x, queries, count, batch, k, label);
        if (r < 0) {
                fprintf(stderr, "Search failed: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        return EXIT_SUCCESS;
}
