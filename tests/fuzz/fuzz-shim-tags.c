/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the mesh's model list (services/shimd/shim-tags.c): this node's Ollama's /api/tags or
 * /v1/models answer merged with model names from gossip. Input: the answer on the first line,
 * then one remote name per line (at most 64); the first byte's low bit picks the API. */
#include "fuzz.h"
#include "shim-tags.h"

#define REMOTE_MAX 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *remote[REMOTE_MAX] = {}, *merged = NULL;
        size_t n_remote = 0, local_size, merged_size;
        const uint8_t *local;
        ShimApi api;

        if (size < 1)
                return 0;
        api = data[0] & 1 ? SHIM_API_OPENAI : SHIM_API_OLLAMA;
        local = fuzz_next_line(&data, &size, &local_size);
        while (size > 0 && n_remote < REMOTE_MAX) {
                const uint8_t *line;
                size_t line_size;

                line = fuzz_next_line(&data, &size, &line_size);
                remote[n_remote] = fuzz_strndup(line, line_size);
                if (!remote[n_remote])
                        goto finish;
                n_remote++;
        }

        if (shim_tags_merge(api, (const char *) local, local_size, remote, n_remote, &merged, &merged_size) >= 0)
                fuzz_check(strlen(merged) == merged_size);

finish:
        free(merged);
        for (size_t i = 0; i < n_remote; i++)
                free(remote[i]);
        return 0;
}
