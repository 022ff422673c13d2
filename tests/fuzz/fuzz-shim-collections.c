/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the shim's collections API decisions (services/shimd/shim-collections.c): the request
 * path (percent-decoding, names and ids), the create, documents and query bodies, and an embed
 * answer filled into the documents. Input: the path, "\n", the body, "\n", the embed answer. */
#include "fuzz.h"
#include "json-document.h"
#include "shim-collections.h"

static void path_use(const char *path) {
        static const char *const methods[] = { "GET", "POST", "DELETE", "PUT" };
        ShimCollectionsPath p = {};
        const char *error = NULL;

        (void) shim_collections_path_is_ours(path);
        if (shim_collections_path_parse(path, &p, &error) < 0)
                return;
        fuzz_check(p.route < _SHIM_COLLECTIONS_ROUTE_MAX);
        fuzz_check(p.route == SHIM_COLLECTIONS_LIST || shim_collections_name_valid(p.name));
        fuzz_check(!p.id || strlen(p.id) <= SHIM_COLLECTIONS_ID_MAX);
        for (size_t i = 0; i < ELEMENTSOF(methods); i++)
                (void) shim_collections_method_allowed(p.route, methods[i]);
        shim_collections_path_done(&p);
}

static void body_use(json_object *body, json_object *answer) {
        size_t *indexes = NULL, n = 0;
        const char **texts = NULL, *static_error, *text;
        char *error = NULL, *embed = NULL;
        ShimCollectionSpec spec;
        json_object *embeddings;
        size_t embed_size;

        (void) shim_collections_create_parse(body, &spec, &static_error);
        (void) shim_collections_query_plan(body, &text, &static_error);
        (void) shim_collections_answer_error(body);
        if (shim_collections_documents_plan(body, &indexes, &texts, &n, &error) < 0)
                goto finish;
        fuzz_check(n == 0 || (indexes && texts));
        if (n > 0 && shim_collections_embed_body("all-minilm", texts, n, &embed, &embed_size) >= 0)
                fuzz_check(strlen(embed) == embed_size);
        if (answer && shim_collections_embeddings(answer, n, &embeddings) >= 0)
                (void) shim_collections_documents_fill(body, indexes, n, embeddings);

finish:
        free(embed);
        free(error);
        free(indexes);
        free(texts);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        json_object *body = NULL, *answer = NULL;
        const uint8_t *line;
        size_t line_size;
        char *path;

        line = fuzz_next_line(&data, &size, &line_size);
        path = fuzz_strndup(line, line_size);
        if (path)
                path_use(path);
        free(path);

        line = fuzz_next_line(&data, &size, &line_size);
        if (json_document_parse(line, line_size, &body) >= 0) {
                (void) json_document_parse(data, size, &answer);
                body_use(body, answer);
        }
        json_object_put(answer);
        json_object_put(body);
        return 0;
}
