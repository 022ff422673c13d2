/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes metadata filters (services/shardd/shard-filter.c): a client's "where" compiled, then
 * matched against a document's metadata and against none. Input: the where object on the first
 * line, the metadata after it. */
#include "fuzz.h"
#include "json-document.h"
#include "shard-filter.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(shard_filter_freep) ShardFilter *f = NULL;
        json_object *where = NULL, *metadata = NULL;
        const uint8_t *line;
        size_t line_size;
        char *error = NULL;

        line = fuzz_next_line(&data, &size, &line_size);
        if (json_document_parse(line, line_size, &where) < 0)
                return 0;
        if (shard_filter_compile(where, &f, &error) < 0) {
                free(error);
                json_object_put(where);
                return 0;
        }
        /* The filter keeps its own copies. */
        json_object_put(where);

        (void) shard_filter_match(f, NULL);
        if (json_document_parse(data, size, &metadata) >= 0 && json_object_is_type(metadata, json_type_object))
                (void) shard_filter_match(f, metadata);
        json_object_put(metadata);
        return 0;
}
