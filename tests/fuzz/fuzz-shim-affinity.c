/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes context gravity (services/shimd/shim-affinity.c) on a client's body: the affinity chain
 * of a chat (messages) and of a generate (prompt), learnt and looked up in a fresh index, and the
 * chain of an X-Mycelia-Affinity key. Input: the JSON body (also taken as the key). */
#include "fuzz.h"
#include "json-document.h"
#include "shim-affinity.h"

static void chain_use(AffinityIndex *x, const AffinityChain *c) {
        size_t blocks = 0;

        fuzz_check(c->n <= AFFINITY_BLOCKS_MAX);
        /* A partial block at the anchor counts: up to n + 1. */
        fuzz_check(c->anchor_blocks <= c->n + 1);
        if (affinity_index_learn(x, c, "0123456789abcdef0123456789abcdef") >= 0)
                (void) affinity_index_holder(x, c, &blocks);
        fuzz_check(blocks <= c->n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(affinity_index_freep) AffinityIndex *x = NULL;
        json_object *body = NULL;
        AffinityChain c;
        char *key;

        if (affinity_index_new(64, &x) < 0)
                return 0;
        if (json_document_parse(data, size, &body) >= 0) {
                for (AffinityContext kind = AFFINITY_CONTEXT_NONE; kind <= AFFINITY_CONTEXT_PROMPT; kind++) {
                        affinity_chain_init(&c);
                        if (affinity_chain_from_request(&c, kind, body) >= 0)
                                chain_use(x, &c);
                        affinity_chain_done(&c);
                }
                json_object_put(body);
        }

        key = fuzz_strndup(data, size);
        if (key) {
                affinity_chain_init(&c);
                if (affinity_chain_from_key(&c, key) >= 0)
                        chain_use(x, &c);
                affinity_chain_done(&c);
                free(key);
        }
        return 0;
}
