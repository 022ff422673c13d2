/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the embedding fan-out (services/shimd/shim-embed.c): a client's body counted, planned
 * over the nodes and cut into chunk bodies, and the nodes' answers merged back (both APIs).
 * Input: the request body on the first line, then one answer per line (one per node, 1 to 4). */
#include "fuzz.h"
#include "json-document.h"
#include "shim-embed.h"

#define NODES_MAX 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const unsigned weights[NODES_MAX] = { 1, 0, 3, 2 };
        json_object *body = NULL, *answers[NODES_MAX] = {};
        ShimEmbedChunk chunks[NODES_MAX];
        size_t n_nodes = 0, n_inputs = 0, sum = 0, line_size;
        const uint8_t *line;

        line = fuzz_next_line(&data, &size, &line_size);
        if (json_document_parse(line, line_size, &body) < 0)
                return 0;
        while (size > 0 && n_nodes < NODES_MAX) {
                line = fuzz_next_line(&data, &size, &line_size);
                (void) json_document_parse(line, line_size, &answers[n_nodes]);
                n_nodes++;
        }
        if (n_nodes == 0 || shim_embed_count(body, &n_inputs) < 0)
                goto finish;

        shim_embed_plan(n_inputs, weights, n_nodes, chunks);
        for (size_t i = 0; i < n_nodes; i++) {
                char *chunk_body = NULL;
                size_t chunk_size;

                fuzz_check(chunks[i].first == sum);
                sum += chunks[i].n;
                if (chunks[i].n == 0)
                        continue;
                if (shim_embed_chunk_body(body, &chunks[i], &chunk_body, &chunk_size) >= 0)
                        fuzz_check(strlen(chunk_body) == chunk_size);
                free(chunk_body);
        }
        fuzz_check(sum == n_inputs);

        for (ShimApi api = SHIM_API_OLLAMA; api <= SHIM_API_OPENAI; api++) {
                char *merged = NULL;
                size_t merged_size;

                if (shim_embed_merge(api, answers, chunks, n_nodes, &merged, &merged_size) >= 0)
                        fuzz_check(strlen(merged) == merged_size);
                free(merged);
        }

finish:
        for (size_t i = 0; i < NODES_MAX; i++)
                json_object_put(answers[i]);
        json_object_put(body);
        return 0;
}
