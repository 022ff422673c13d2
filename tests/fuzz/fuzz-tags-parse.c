/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes routerd's reader of an Ollama's GET /api/tags answer (services/routerd/tags-parse.c), a
 * streaming scanner with its own depth and size limits. Input: the body. */
#include "fuzz.h"
#include "route-table.h"
#include "tags-parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        TagsList l = {};

        if (tags_parse((const char *) data, size, &l) < 0) {
                fuzz_check(!l.models && l.n_models == 0);
                return 0;
        }
        fuzz_check(l.n_models <= ROUTE_MAX_MODELS);
        for (size_t i = 0; i < l.n_models; i++) {
                size_t n = strlen(l.models[i]);

                fuzz_check(n >= 1 && n <= TAGS_MAX_NAME_LEN);
        }
        tags_list_done(&l);
        return 0;
}
