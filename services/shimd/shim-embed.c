/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Splitting an embedding request and merging the answers (shim-embed.h); json-c keeps each
 * number's text as it was parsed, so merged vectors are byte for byte what the nodes sent. */
#include <stdio.h>

#include "json-cleanup.h"
#include "json-document.h"
#include "shim-embed.h"

int shim_embed_count(json_object *body, size_t *ret_n) {
        json_object *input;

        if (!json_object_is_type(body, json_type_object) || !json_object_object_get_ex(body, "input", &input) ||
            !json_object_is_type(input, json_type_array))
                return -ENOENT;
        *ret_n = json_object_array_length(input);
        return 0;
}

void shim_embed_plan(size_t n, const unsigned *weights, size_t n_nodes, ShimEmbedChunk *chunks) {
        uint64_t total = 0;
        size_t given = 0, first = 0;

        for (size_t i = 0; i < n_nodes; i++)
                total += weights[i] ?: 1;
        for (size_t i = 0; i < n_nodes; i++) {
                chunks[i].n = (size_t) ((uint64_t) n * (weights[i] ?: 1) / total);
                given += chunks[i].n;
        }
        /* The rest, one each, to the largest remainders (first nodes on ties). */
        while (given < n) {
                size_t best = 0;
                uint64_t best_rem = 0;

                for (size_t i = 0; i < n_nodes; i++) {
                        uint64_t rem = (uint64_t) n * (weights[i] ?: 1) - (uint64_t) chunks[i].n * total;

                        if (i == 0 || rem > best_rem) {
                                best = i;
                                best_rem = rem;
                        }
                }
                chunks[best].n++;
                given++;
        }
        for (size_t i = 0; i < n_nodes; i++) {
                chunks[i].first = first;
                first += chunks[i].n;
        }
}

int shim_embed_chunk_body(json_object *body, const ShimEmbedChunk *chunk, char **ret, size_t *ret_size) {
        _cleanup_(json_object_putp) json_object *copy = json_object_new_object(), *part = json_object_new_array();
        json_object *input;

        if (!copy || !part || !json_object_object_get_ex(body, "input", &input))
                return -ENOMEM;
        /* A shallow copy: the same values, another "input". */
        json_object_object_foreach(body, key, value)
                if (!streq(key, "input"))
                        json_object_object_add(copy, key, json_object_get(value));
        for (size_t i = 0; i < chunk->n; i++)
                if (json_object_array_add(part, json_object_get(json_object_array_get_idx(input, chunk->first + i))) < 0)
                        return -ENOMEM;
        json_object_object_add(copy, "input", TAKE_PTR(part));
        return json_document_write(copy, ret, ret_size);
}

static int64_t get_int(json_object *o, const char *key) {
        json_object *v;

        return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

/* Sums the answers' counters: each is a peer's number, so the sum saturates instead of overflowing. */
static void add_saturating(int64_t *sum, int64_t v) {
        if (__builtin_add_overflow(*sum, v, sum))
                *sum = v > 0 ? INT64_MAX : INT64_MIN;
}

int shim_embed_merge(ShimApi api, json_object *const *answers, const ShimEmbedChunk *chunks, size_t n,
                     char **ret, size_t *ret_size) {
        _cleanup_(json_object_putp) json_object *merged = json_object_new_object(), *list = json_object_new_array();
        const char *key = api == SHIM_API_OPENAI ? "data" : "embeddings", *model = NULL;
        int64_t total = 0, load = 0, count = 0, prompt_tokens = 0, total_tokens = 0;

        if (!merged || !list)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *a = answers[i], *part, *v;

                if (chunks[i].n == 0)
                        continue;
                if (!json_object_is_type(a, json_type_object) || !json_object_object_get_ex(a, key, &part) ||
                    !json_object_is_type(part, json_type_array) || json_object_array_length(part) != chunks[i].n)
                        return -EBADMSG;
                if (!model && json_object_object_get_ex(a, "model", &v) && json_object_is_type(v, json_type_string))
                        model = json_object_get_string(v);
                for (size_t k = 0; k < chunks[i].n; k++) {
                        json_object *e = json_object_get(json_object_array_get_idx(part, k));

                        if (api == SHIM_API_OPENAI && json_object_is_type(e, json_type_object))
                                json_object_object_add(e, "index", json_object_new_int64((int64_t) (chunks[i].first + k)));
                        if (json_object_array_add(list, e) < 0)
                                return -ENOMEM;
                }
                if (api == SHIM_API_OPENAI) {
                        json_object *usage;

                        if (json_object_object_get_ex(a, "usage", &usage)) {
                                add_saturating(&prompt_tokens, get_int(usage, "prompt_tokens"));
                                add_saturating(&total_tokens, get_int(usage, "total_tokens"));
                        }
                } else {
                        add_saturating(&total, get_int(a, "total_duration"));
                        add_saturating(&load, get_int(a, "load_duration"));
                        add_saturating(&count, get_int(a, "prompt_eval_count"));
                }
        }
        if (api == SHIM_API_OPENAI) {
                json_object *usage = json_object_new_object();

                json_object_object_add(merged, "object", json_object_new_string("list"));
                json_object_object_add(merged, "data", TAKE_PTR(list));
                json_object_object_add(merged, "model", json_object_new_string(strempty(model)));
                json_object_object_add(usage, "prompt_tokens", json_object_new_int64(prompt_tokens));
                json_object_object_add(usage, "total_tokens", json_object_new_int64(total_tokens));
                json_object_object_add(merged, "usage", usage);
        } else {
                json_object_object_add(merged, "model", json_object_new_string(strempty(model)));
                json_object_object_add(merged, "embeddings", TAKE_PTR(list));
                json_object_object_add(merged, "total_duration", json_object_new_int64(total));
                json_object_object_add(merged, "load_duration", json_object_new_int64(load));
                json_object_object_add(merged, "prompt_eval_count", json_object_new_int64(count));
        }
        return json_document_write(merged, ret, ret_size);
}
