/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Merging the mesh's models into one node's model list (shim-tags.h): json-c in, json-c out,
 * test-shim-tags drives it. */
#include <json-c/json.h>
#include <stdio.h>

#include "json-cleanup.h"
#include "json-document.h"
#include "route-table.h"
#include "shim-tags.h"

static const char *entry_name(ShimApi api, json_object *e) {
        json_object *v;

        if (!json_object_object_get_ex(e, api == SHIM_API_OPENAI ? "id" : "name", &v) &&
            !(api == SHIM_API_OLLAMA && json_object_object_get_ex(e, "model", &v)))
                return NULL;
        return json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static bool listed(ShimApi api, json_object *list, const char *name) {
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                const char *n = entry_name(api, json_object_array_get_idx(list, i));

                if (n && model_name_equal(n, name))
                        return true;
        }
        return false;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Ollama's list entry for a model known only by name. */
static json_object *ollama_entry(const char *name) {
        json_object *e = json_object_new_object(), *details = json_object_new_object();

        json_object_object_add(e, "name", json_object_new_string(name));
        json_object_object_add(e, "model", json_object_new_string(name));
        json_object_object_add(e, "modified_at", json_object_new_string("0001-01-01T00:00:00Z"));
        json_object_object_add(e, "size", json_object_new_int64(0));
        json_object_object_add(e, "digest", json_object_new_string(""));
        json_object_object_add(details, "parent_model", json_object_new_string(""));
        json_object_object_add(details, "format", json_object_new_string(""));
        json_object_object_add(details, "family", json_object_new_string(""));
        json_object_object_add(details, "families", NULL);
        json_object_object_add(details, "parameter_size", json_object_new_string(""));
        json_object_object_add(details, "quantization_level", json_object_new_string(""));
        json_object_object_add(e, "details", details);
        return e;
}

static json_object *openai_entry(const char *name) {
        json_object *e = json_object_new_object();

        json_object_object_add(e, "id", json_object_new_string(name));
        json_object_object_add(e, "object", json_object_new_string("model"));
        json_object_object_add(e, "created", json_object_new_int64(0));
        json_object_object_add(e, "owned_by", json_object_new_string("library"));
        return e;
}

int shim_tags_merge(ShimApi api, const char *local, size_t local_size, char *const *remote, size_t n_remote,
                    char **ret, size_t *ret_size) {
        _cleanup_(json_object_putp) json_object *root = NULL;
        _cleanup_free_ char **sorted = NULL;
        json_object *list;
        int r;

        if (local_size > SHIM_TAGS_BODY_MAX)
                return -EBADMSG;
        r = json_document_parse(local, local_size, &root);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || !json_object_is_type(root, json_type_object) ||
            !json_object_object_get_ex(root, api == SHIM_API_OPENAI ? "data" : "models", &list) ||
            !json_object_is_type(list, json_type_array))
                return -EBADMSG;

        if (n_remote > 0) {
                sorted = malloc(n_remote * sizeof(char *));
                if (!sorted)
                        return -ENOMEM;
                memcpy(sorted, remote, n_remote * sizeof(char *));
                qsort(sorted, n_remote, sizeof(char *), cmp_str);
        }
        for (size_t i = 0; i < n_remote; i++) {
                if (isempty(sorted[i]) || (i > 0 && model_name_equal(sorted[i], sorted[i - 1])) ||
                    listed(api, list, sorted[i]))
                        continue;
                if (json_object_array_add(list, api == SHIM_API_OPENAI ? openai_entry(sorted[i])
                                                                       : ollama_entry(sorted[i])) < 0)
                        return -ENOMEM;
        }
        return json_document_write(root, ret, ret_size);
}
