/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Collection configs and their stored JSON (shard-collection.h). Pure: the store frames the JSON
 * and keeps it under the collection's name. */
#include "json-cleanup.h"
#include "json-document.h"
#include "shard-collection.h"

static const char *const metric_names[] = {
        [SHARD_METRIC_COSINE] = "cosine",
        [SHARD_METRIC_INNER_PRODUCT] = "ip",
};

const char *shard_collection_metric_to_string(ShardMetric m) {
        return (size_t) m < ELEMENTSOF(metric_names) ? metric_names[m] : NULL;
}

int shard_collection_metric_from_string(const char *s, ShardMetric *ret) {
        for (size_t i = 0; s && i < ELEMENTSOF(metric_names); i++)
                if (metric_names[i] && streq(s, metric_names[i])) {
                        *ret = (ShardMetric) i;
                        return 0;
                }
        return -EINVAL;
}

ShardCollection *shard_collection_free(ShardCollection *c) {
        if (!c)
                return NULL;
        free(c->name);
        free(c->model);
        free(c);
        return NULL;
}

bool shard_collection_name_valid(const char *name) {
        size_t n;

        if (!name || name[0] == '\0' || name[0] == '.')
                return false;
        n = strnlen(name, SHARD_COLLECTION_NAME_MAX + 1);
        return n <= SHARD_COLLECTION_NAME_MAX &&
                strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

bool shard_collection_valid(const ShardCollection *c) {
        return shard_collection_name_valid(c->name) &&
                c->dimension >= 1 && c->dimension <= SHARD_DIMENSION_MAX &&
                shard_collection_metric_to_string(c->metric) &&
                (!c->model || (c->model[0] != '\0' && strlen(c->model) <= SHARD_MODEL_NAME_MAX)) &&
                c->n_shards >= 1 && c->n_shards <= SHARD_COUNT_MAX &&
                c->replicas >= 1 && c->replicas <= SHARD_REPLICAS_MAX;
}

int shard_collection_to_json(const ShardCollection *c, char **ret, size_t *ret_size) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();

        if (!o)
                return -ENOMEM;
        if (json_object_object_add(o, "id", json_object_new_uint64(c->id)) < 0 ||
            json_object_object_add(o, "dimension", json_object_new_uint64(c->dimension)) < 0 ||
            json_object_object_add(o, "metric", json_object_new_string(shard_collection_metric_to_string(c->metric))) < 0 ||
            (c->model && json_object_object_add(o, "model", json_object_new_string(c->model)) < 0) ||
            json_object_object_add(o, "n_shards", json_object_new_uint64(c->n_shards)) < 0 ||
            json_object_object_add(o, "replicas", json_object_new_uint64(c->replicas)) < 0 ||
            json_object_object_add(o, "created", json_object_new_uint64(c->created_ms)) < 0)
                return -ENOMEM;
        return json_document_write(o, ret, ret_size);
}

static uint64_t json_get_u64(json_object *o, const char *field, bool *ok) {
        json_object *v;

        if (!json_object_object_get_ex(o, field, &v) || !json_object_is_type(v, json_type_int)) {
                *ok = false;
                return 0;
        }
        return json_object_get_uint64(v);
}

int shard_collection_from_json(const char *name, size_t name_size, const char *json, size_t json_size,
                               ShardCollection **ret) {
        _cleanup_(shard_collection_freep) ShardCollection *c = NULL;
        _cleanup_(json_object_putp) json_object *o = NULL;
        uint64_t id, dimension, n_shards, replicas;
        json_object *v;
        bool ok = true;

        if (json_document_parse(json, json_size, &o) < 0 || !json_object_is_type(o, json_type_object))
                return -EBADMSG;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->name = strndup(name, name_size);
        if (!c->name)
                return -ENOMEM;
        id = json_get_u64(o, "id", &ok);
        dimension = json_get_u64(o, "dimension", &ok);
        n_shards = json_get_u64(o, "n_shards", &ok);
        replicas = json_get_u64(o, "replicas", &ok);
        c->created_ms = json_get_u64(o, "created", &ok);
        if (!ok || id == 0 || id > UINT32_MAX || dimension > SHARD_DIMENSION_MAX ||
            n_shards > SHARD_COUNT_MAX || replicas > SHARD_REPLICAS_MAX || strlen(c->name) != name_size)
                return -EBADMSG;
        c->id = (uint32_t) id;
        c->dimension = (unsigned) dimension;
        c->n_shards = (unsigned) n_shards;
        c->replicas = (unsigned) replicas;
        if (!json_object_object_get_ex(o, "metric", &v) || !json_object_is_type(v, json_type_string))
                return -EBADMSG;
        if (shard_collection_metric_from_string(json_object_get_string(v), &c->metric) < 0)
                return -EBADMSG;
        if (json_object_object_get_ex(o, "model", &v)) {
                if (!json_object_is_type(v, json_type_string))
                        return -EBADMSG;
                c->model = strdup(json_object_get_string(v));
                if (!c->model)
                        return -ENOMEM;
        }
        if (!shard_collection_valid(c))
                return -EBADMSG;
        *ret = TAKE_PTR(c);
        return 0;
}
