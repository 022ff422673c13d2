/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Paths, methods, error mapping and bodies of the collections API (shim-collections.h). Pure:
 * shimd-collections.c does the HTTP and the D-Bus. */
#include <stdio.h>
#include <string.h>

#include "bus-names.h"
#include "hex.h"
#include "json-cleanup.h"
#include "json-document.h"
#include "shim-collections.h"

bool shim_collections_path_is_ours(const char *path) {
        size_t n = strlen(SHIM_COLLECTIONS_PREFIX);

        return path && strneq(path, SHIM_COLLECTIONS_PREFIX, n) && IN_SET(path[n], '\0', '/');
}

bool shim_collections_name_valid(const char *name) {
        size_t n;

        if (isempty(name) || name[0] == '.')
                return false;
        n = strnlen(name, SHIM_COLLECTIONS_NAME_MAX + 1);
        return n <= SHIM_COLLECTIONS_NAME_MAX &&
               strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* One path segment (s, n bytes), percent-decoded into a malloc()ed string. '+' stays '+' (it
 * means a space only in queries). -EINVAL for a malformed escape or an encoded NUL, which no C
 * string (nor D-Bus string) can carry. */
static int segment_decode(const char *s, size_t n, char **ret) {
        char *out = malloc(n + 1), *o = out;

        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int hi, lo;

                if (s[i] != '%') {
                        *o++ = s[i];
                        continue;
                }
                if (i + 2 >= n || (hi = unhexchar(s[i + 1])) < 0 || (lo = unhexchar(s[i + 2])) < 0 ||
                    (hi == 0 && lo == 0)) {
                        free(out);
                        return -EINVAL;
                }
                *o++ = (char) (hi << 4 | lo);
                i += 2;
        }
        *o = '\0';
        *ret = out;
        return 0;
}

/* The segments of path after the prefix (at most max, none empty: a "//" or a trailing '/' is no
 * route), then the route they name. -ENOENT when they name none. */
static int path_route(const char *path, const char **seg, size_t *len, size_t max, size_t *ret_n,
                      ShimCollectionsRoute *ret) {
        const char *p = path + strlen(SHIM_COLLECTIONS_PREFIX);
        size_t n = 0;

        while (*p == '/') {
                if (n == max)
                        return -ENOENT;
                seg[n] = ++p;
                len[n] = strcspn(p, "/");
                if (len[n] == 0)
                        return -ENOENT;
                p += len[n++];
        }
#define SEG_IS(i, s) (len[i] == strlen(s) && strneq(seg[i], s, len[i]))
        if (n == 0 || !SEG_IS(0, "collections"))
                return -ENOENT;
        *ret_n = n;
        if (n == 1)
                *ret = SHIM_COLLECTIONS_LIST;
        else if (n == 2)
                *ret = SHIM_COLLECTIONS_ONE;
        else if (n == 3 && SEG_IS(2, "documents"))
                *ret = SHIM_COLLECTIONS_DOCUMENTS;
        else if (n == 4 && SEG_IS(2, "documents"))
                *ret = SHIM_COLLECTIONS_DOCUMENT;
        else if (n == 3 && SEG_IS(2, "query"))
                *ret = SHIM_COLLECTIONS_QUERY;
        else
                return -ENOENT;
#undef SEG_IS
        return 0;
}

int shim_collections_path_parse(const char *path, ShimCollectionsPath *ret, const char **ret_error) {
        _cleanup_(shim_collections_path_done) ShimCollectionsPath out = {};
        const char *seg[4];
        size_t len[4], n;
        int r;

        if (!shim_collections_path_is_ours(path) || path_route(path, seg, len, ELEMENTSOF(seg), &n, &out.route) < 0) {
                *ret_error = "not found: no such path under " SHIM_COLLECTIONS_PREFIX "/";
                return -ENOENT;
        }
        if (n >= 2) {
                r = segment_decode(seg[1], len[1], &out.name);
                if (r == -EINVAL)
                        *ret_error = "malformed percent-escape in the collection name";
                else if (r >= 0 && !shim_collections_name_valid(out.name)) {
                        *ret_error = SHIM_COLLECTIONS_BAD_NAME;
                        r = -EINVAL;
                }
                if (r < 0)
                        return r;
        }
        if (out.route == SHIM_COLLECTIONS_DOCUMENT) {
                r = segment_decode(seg[3], len[3], &out.id);
                if (r == -EINVAL)
                        *ret_error = "malformed percent-escape in the document id";
                else if (r >= 0 && strlen(out.id) > SHIM_COLLECTIONS_ID_MAX) {
                        *ret_error = "invalid document id: longer than 256 bytes";
                        r = -EINVAL;
                }
                if (r < 0)
                        return r;
        }
        *ret = out;
        out = (ShimCollectionsPath) {};
        return 0;
}

void shim_collections_path_done(ShimCollectionsPath *p) {
        free(p->name);
        free(p->id);
        *p = (ShimCollectionsPath) {};
}

bool shim_collections_method_allowed(ShimCollectionsRoute route, const char *method) {
        switch (route) {
        case SHIM_COLLECTIONS_LIST:
                return streq(method, "GET") || streq(method, "POST");
        case SHIM_COLLECTIONS_ONE:
                return streq(method, "DELETE");
        case SHIM_COLLECTIONS_DOCUMENTS:
        case SHIM_COLLECTIONS_QUERY:
                return streq(method, "POST");
        case SHIM_COLLECTIONS_DOCUMENT:
                return streq(method, "GET") || streq(method, "DELETE");
        default:
                return false;
        }
}

int shim_collections_bus_error_status(const char *name, const char *message, const char **ret_message) {
        static const struct {
                const char *name;
                int status;
        } own[] = {
                { SHARDSTORE1_ERROR_INVALID, 400 },
                { SHARDSTORE1_ERROR_TOO_LARGE, 413 },
                { SHARDSTORE1_ERROR_NOT_FOUND, 404 },
                { SHARDSTORE1_ERROR_EXISTS, 409 },
                /* Fewer holders of the shards reachable than a write needs: try again later. */
                { SHARDSTORE1_ERROR_UNAVAILABLE, 503 },
        };

        for (size_t i = 0; name && i < ELEMENTSOF(own); i++)
                if (streq(name, own[i].name)) {
                        /* shardd's messages are written for the client (docs/shardd.md). */
                        *ret_message = isempty(message) ? SHIM_COLLECTIONS_FAILED : message;
                        return own[i].status;
                }
        if (name && (streq(name, "org.freedesktop.DBus.Error.ServiceUnknown") ||
                     streq(name, "org.freedesktop.DBus.Error.NameHasNoOwner"))) {
                *ret_message = SHIM_COLLECTIONS_NOT_RUNNING;
                return 503;
        }
        *ret_message = SHIM_COLLECTIONS_FAILED;
        return 500;
}

int shim_collections_embed_error_status(int status) {
        if (IN_SET(status, 400, 404))
                return 400;     /* no such model, not an embedding model, bad input */
        if (status == 413)
                return 413;
        if (IN_SET(status, 429, 503))
                return 503;
        return 502;
}

int shim_collections_self_url(const char *api_address, HttpBaseUrl *ret) {
        const char *port = api_address ? strrchr(api_address, ':') : NULL;
        char url[128];

        if (!port)
                return -EINVAL;
        if (strneq(api_address, "0.0.0.0:", 8))
                snprintf(url, sizeof(url), "http://127.0.0.1%s", port);
        else if (strneq(api_address, "[::]:", 5))
                snprintf(url, sizeof(url), "http://[::1]%s", port);
        else if ((size_t) snprintf(url, sizeof(url), "http://%s", api_address) >= sizeof(url))
                return -EINVAL;
        return http_base_url_parse(url, ret);
}

static bool has_value(json_object *o, const char *key) {
        json_object *v;

        return json_object_object_get_ex(o, key, &v) && !json_object_is_type(v, json_type_null);
}

/* A string field that may be absent or null: *ret "" then. -EINVAL when it is something else. */
static int optional_string(json_object *body, const char *key, const char **ret) {
        json_object *v;

        *ret = "";
        if (!json_object_object_get_ex(body, key, &v) || json_object_is_type(v, json_type_null))
                return 0;
        if (!json_object_is_type(v, json_type_string))
                return -EINVAL;
        *ret = json_object_get_string(v);
        return 0;
}

int shim_collections_create_parse(json_object *body, ShimCollectionSpec *ret, const char **ret_error) {
        ShimCollectionSpec spec = {};
        json_object *name, *dimension;

        if (!json_object_is_type(body, json_type_object)) {
                *ret_error = "the request body must be a JSON object";
                return -EINVAL;
        }
        if (!json_object_object_get_ex(body, "name", &name) || !json_object_is_type(name, json_type_string)) {
                *ret_error = "\"name\" is required and must be a string";
                return -EINVAL;
        }
        spec.name = json_object_get_string(name);
        if (!shim_collections_name_valid(spec.name)) {
                *ret_error = SHIM_COLLECTIONS_BAD_NAME;
                return -EINVAL;
        }
        if (json_object_object_get_ex(body, "dimension", &dimension) &&
            !json_object_is_type(dimension, json_type_null)) {
                int64_t d = json_object_get_int64(dimension);

                /* shardd says which dimensions it takes; this only keeps the number whole. */
                if (!json_object_is_type(dimension, json_type_int) || d < 1 || d > UINT32_MAX) {
                        *ret_error = "\"dimension\" must be a positive whole number";
                        return -EINVAL;
                }
                spec.dimension = (uint32_t) d;
        }
        if (optional_string(body, "metric", &spec.metric) < 0) {
                *ret_error = "\"metric\" must be a string: cosine or ip";
                return -EINVAL;
        }
        if (optional_string(body, "model", &spec.model) < 0) {
                *ret_error = "\"model\" must be a string";
                return -EINVAL;
        }
        if (spec.dimension == 0 && isempty(spec.model)) {
                *ret_error = "\"dimension\" is required for a collection without a \"model\"";
                return -EINVAL;
        }
        *ret = spec;
        return 0;
}

json_object *shim_collections_info_to_json(const ShimCollectionInfo *c) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        const char *metric = isempty(c->metric) ? "cosine" : c->metric;

        if (!o ||
            json_object_object_add(o, "name", json_object_new_string(c->name)) < 0 ||
            json_object_object_add(o, "dimension", json_object_new_int64(c->dimension)) < 0 ||
            json_object_object_add(o, "metric", json_object_new_string(metric)) < 0 ||
            json_object_object_add(o, "model", isempty(c->model) ? NULL : json_object_new_string(c->model)) < 0 ||
            (c->documents >= 0 && json_object_object_add(o, "documents", json_object_new_int64(c->documents)) < 0))
                return NULL;
        return TAKE_PTR(o);
}

int shim_collections_documents_plan(json_object *body, size_t **ret_indexes, const char ***ret_texts, size_t *ret_n,
                                    char **ret_error) {
        _cleanup_free_ size_t *indexes = NULL;
        _cleanup_free_ const char **texts = NULL;
        json_object *docs;
        size_t n, k = 0;

        *ret_error = NULL;
        if (!json_object_is_type(body, json_type_object) || !json_object_object_get_ex(body, "documents", &docs) ||
            !json_object_is_type(docs, json_type_array))
                return asprintf(ret_error, "\"documents\" must be an array") < 0 ? -ENOMEM : -EINVAL;
        n = json_object_array_length(docs);
        if (n > SHIM_COLLECTIONS_DOCS_MAX)
                return asprintf(ret_error, "more than %u documents in one request", SHIM_COLLECTIONS_DOCS_MAX) < 0
                               ? -ENOMEM : -E2BIG;
        for (size_t i = 0; i < n; i++) {
                json_object *d = json_object_array_get_idx(docs, i), *text;

                /* Anything else about a document is shardd's to judge. */
                if (!json_object_is_type(d, json_type_object) || has_value(d, "embedding"))
                        continue;
                if (!json_object_object_get_ex(d, "text", &text) || !json_object_is_type(text, json_type_string))
                        return asprintf(ret_error, "documents[%zu] has neither an \"embedding\" nor a \"text\" to "
                                        "embed", i) < 0 ? -ENOMEM : -EINVAL;
                if (!indexes) {
                        indexes = calloc(n, sizeof(size_t));
                        texts = calloc(n, sizeof(char *));
                        if (!indexes || !texts)
                                return -ENOMEM;
                }
                indexes[k] = i;
                texts[k++] = json_object_get_string(text);
        }
        *ret_indexes = TAKE_PTR(indexes);
        *ret_texts = TAKE_PTR(texts);
        *ret_n = k;
        return 0;
}

int shim_collections_query_plan(json_object *body, const char **ret_text, const char **ret_error) {
        json_object *text;

        if (!json_object_is_type(body, json_type_object)) {
                *ret_error = "the request body must be a JSON object";
                return -EINVAL;
        }
        if (has_value(body, "embedding")) {
                *ret_text = NULL;
                return 0;
        }
        if (!json_object_object_get_ex(body, "text", &text) || !json_object_is_type(text, json_type_string)) {
                *ret_error = "the query needs an \"embedding\" or a \"text\" to embed";
                return -EINVAL;
        }
        *ret_text = json_object_get_string(text);
        return 0;
}

int shim_collections_embed_body(const char *model, const char *const *texts, size_t n, char **ret, size_t *ret_size) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        json_object *input;

        if (!o || json_object_object_add(o, "model", json_object_new_string(model)) < 0 ||
            json_object_object_add(o, "input", json_object_new_array_ext((int) MIN(n, (size_t) INT32_MAX))) < 0 ||
            !json_object_object_get_ex(o, "input", &input) || !input)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (json_object_array_add(input, json_object_new_string(texts[i])) < 0)
                        return -ENOMEM;
        return json_document_write(o, ret, ret_size);
}

int shim_collections_embeddings(json_object *answer, size_t n, json_object **ret) {
        json_object *list;
        size_t dim = 0;

        if (!json_object_object_get_ex(answer, "embeddings", &list) || !json_object_is_type(list, json_type_array) ||
            json_object_array_length(list) != n)
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                json_object *v = json_object_array_get_idx(list, i);
                size_t m;

                if (!json_object_is_type(v, json_type_array))
                        return -EBADMSG;
                m = json_object_array_length(v);
                if (m == 0 || (i > 0 && m != dim))
                        return -EBADMSG;
                dim = m;
                for (size_t k = 0; k < m; k++) {
                        json_object *x = json_object_array_get_idx(v, k);

                        if (!json_object_is_type(x, json_type_double) && !json_object_is_type(x, json_type_int))
                                return -EBADMSG;
                }
        }
        *ret = list;
        return 0;
}

int shim_collections_documents_fill(json_object *body, const size_t *indexes, size_t n, json_object *embeddings) {
        json_object *docs;

        if (!json_object_object_get_ex(body, "documents", &docs))
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                json_object *d = json_object_array_get_idx(docs, indexes[i]);
                json_object *e = json_object_array_get_idx(embeddings, i);

                if (!d || !e || json_object_object_add(d, "embedding", json_object_get(e)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

const char *shim_collections_answer_error(json_object *answer) {
        json_object *e;

        if (!json_object_object_get_ex(answer, "error", &e) || !json_object_is_type(e, json_type_string))
                return NULL;
        return json_object_get_string(e);
}
