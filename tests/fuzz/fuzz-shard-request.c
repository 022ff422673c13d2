/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes what ShardStore1's Put and Search carry (services/shardd/shard-request.c), client JSON
 * the shim passes through, and a peer's /shard/search answer. Dimension 3, 8 shards.
 * Input: the JSON (tried as a Put, a query and a peer's answer). */
#include "fuzz.h"
#include "shard-request.h"

#define DIMENSION 3
#define N_SHARDS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        ShardPutRequest put = {};
        ShardQueryRequest query = {};
        ShardAnswer answer = {};
        bool not_ready[N_SHARDS] = {};
        char *json, *error = NULL, *out = NULL;

        json = fuzz_strndup(data, size);
        if (!json)
                return 0;

        if (shard_put_request_parse(json, DIMENSION, &put, &error) >= 0) {
                fuzz_check(put.n_docs >= 1 && put.n_docs <= SHARD_PUT_DOCS_MAX);
                shard_put_request_done(&put);
        }
        free(error);
        error = NULL;

        if (shard_query_request_parse(json, DIMENSION, &query, &error) >= 0) {
                fuzz_check(query.k >= 1 && query.embedding);
                shard_query_request_done(&query);
        }
        free(error);

        if (shard_answer_parse(&answer, data, size, not_ready, N_SHARDS) >= 0) {
                const unsigned missing[] = { 1, 5 };

                shard_answer_top(&answer, 4);
                fuzz_check(answer.n_hits <= 4);
                if (shard_answer_format(&answer, missing, ELEMENTSOF(missing), &out) >= 0)
                        free(out);
                out = NULL;
                if (shard_answer_format_peer(&answer, missing, ELEMENTSOF(missing), &out) >= 0)
                        free(out);
        }
        shard_answer_done(&answer);
        free(json);
        return 0;
}
