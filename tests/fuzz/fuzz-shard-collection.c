/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes a collection's config as the store and peers send it (services/shardd/shard-collection.c,
 * shard_collection_from_json()); what parses must format and parse back the same. Input: the name
 * on the first line, then the JSON. */
#include "fuzz.h"
#include "shard-collection.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(shard_collection_freep) ShardCollection *c = NULL, *again = NULL;
        const uint8_t *name;
        size_t name_size, json_size;
        char *json = NULL;

        name = fuzz_next_line(&data, &size, &name_size);
        if (shard_collection_from_json((const char *) name, name_size, (const char *) data, size, &c) < 0)
                return 0;
        fuzz_check(shard_collection_valid(c));
        fuzz_check(shard_collection_to_json(c, &json, &json_size) == 0);
        fuzz_check(shard_collection_from_json(c->name, strlen(c->name), json, json_size, &again) == 0);
        fuzz_check(again->id == c->id && again->dimension == c->dimension && again->n_shards == c->n_shards);
        free(json);
        return 0;
}
