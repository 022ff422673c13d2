/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* ShardStore1's Put and Search bodies, parsed and checked, and the query answer formatted; see
 * shard-request.h. json-c does the parsing; this file says what a valid request is. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json-cleanup.h"
#include "json-document.h"
#include "shard-placement.h"
#include "shard-request.h"

_printf_(3, 4)
static int request_error(char **ret_error, int error, const char *fmt, ...) {
        va_list ap;

        if (ret_error) {
                va_start(ap, fmt);
                if (vasprintf(ret_error, fmt, ap) < 0)
                        *ret_error = NULL;
                va_end(ap);
        }
        return error;
}

static int parse_object(const char *json, json_object **ret, char **ret_error) {
        json_object *o = NULL;
        size_t n = json ? strlen(json) : 0;
        int r;

        if (n > SHARD_REQUEST_SIZE_MAX)
                return request_error(ret_error, -E2BIG, "request body too large");
        r = json_document_parse(json, n, &o);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return request_error(ret_error, -EINVAL, "invalid JSON");
        if (!json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                return request_error(ret_error, -EINVAL, "the request must be a JSON object");
        }
        *ret = o;
        return 0;
}

/* dimension finite numbers from a JSON array into a new float array. what names it in errors. */
static int parse_vector(json_object *a, unsigned dimension, const char *what, float **ret, char **ret_error) {
        _cleanup_free_ float *v = NULL;
        size_t n;

        if (!json_object_is_type(a, json_type_array))
                return request_error(ret_error, -EINVAL, "%s: \"embedding\" must be an array of numbers", what);
        n = json_object_array_length(a);
        if (n != dimension)
                return request_error(ret_error, -EINVAL, "%s: the embedding has %zu dimensions, the collection %u",
                                     what, n, dimension);
        v = malloc(sizeof(float) * (n ?: 1));
        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                json_object *x = json_object_array_get_idx(a, i);
                double d;

                if (!json_object_is_type(x, json_type_double) && !json_object_is_type(x, json_type_int))
                        return request_error(ret_error, -EINVAL, "%s: embedding[%zu] is not a number", what, i);
                d = json_object_get_double(x);
                if (!isfinite(d) || !isfinite((float) d))
                        return request_error(ret_error, -EINVAL, "%s: embedding[%zu] is not a finite float", what, i);
                v[i] = (float) d;
        }
        *ret = TAKE_PTR(v);
        return 0;
}

static int put_doc_parse(json_object *o, size_t index, unsigned dimension, ShardPutDoc *d, char **ret_error) {
        json_object *id, *text, *embedding, *metadata;
        char what[48];
        int r;

        snprintf(what, sizeof(what), "documents[%zu]", index);
        if (!json_object_is_type(o, json_type_object))
                return request_error(ret_error, -EINVAL, "%s is not an object", what);
        if (json_object_object_get_ex(o, "id", &id) && !json_object_is_type(id, json_type_null)) {
                const char *s = json_object_get_string(id);

                if (!json_object_is_type(id, json_type_string) || isempty(s))
                        return request_error(ret_error, -EINVAL, "%s: \"id\" must be a non-empty string", what);
                if (strlen(s) > SHARD_ID_MAX)
                        return request_error(ret_error, -E2BIG, "%s: \"id\" is longer than %u bytes", what, SHARD_ID_MAX);
                d->id = strdup(s);
                if (!d->id)
                        return -ENOMEM;
        }
        if (json_object_object_get_ex(o, "text", &text) && !json_object_is_type(text, json_type_null)) {
                if (!json_object_is_type(text, json_type_string))
                        return request_error(ret_error, -EINVAL, "%s: \"text\" must be a string", what);
                if ((size_t) json_object_get_string_len(text) > SHARD_TEXT_MAX)
                        return request_error(ret_error, -E2BIG, "%s: \"text\" is longer than %u bytes", what, SHARD_TEXT_MAX);
                d->text = strdup(json_object_get_string(text));
                if (!d->text)
                        return -ENOMEM;
        }
        if (!json_object_object_get_ex(o, "embedding", &embedding))
                return request_error(ret_error, -EINVAL, "%s has no \"embedding\"", what);
        r = parse_vector(embedding, dimension, what, &d->embedding, ret_error);
        if (r < 0)
                return r;
        if (json_object_object_get_ex(o, "metadata", &metadata) && !json_object_is_type(metadata, json_type_null)) {
                const char *s;

                if (!json_object_is_type(metadata, json_type_object))
                        return request_error(ret_error, -EINVAL, "%s: \"metadata\" must be an object", what);
                s = json_object_to_json_string_ext(metadata, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
                if (!s)
                        return -ENOMEM;
                if (strlen(s) > SHARD_METADATA_MAX)
                        return request_error(ret_error, -E2BIG, "%s: \"metadata\" is larger than %u bytes", what,
                                             SHARD_METADATA_MAX);
                d->metadata = strdup(s);
                if (!d->metadata)
                        return -ENOMEM;
        }
        return 0;
}

static int id_cmp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Ids given twice in one request would make its outcome depend on order: refused. */
static int put_ids_unique(const ShardPutRequest *r, char **ret_error) {
        _cleanup_free_ char **ids = calloc(r->n_docs ?: 1, sizeof(char *));
        size_t n = 0;

        if (!ids)
                return -ENOMEM;
        for (size_t i = 0; i < r->n_docs; i++)
                if (r->docs[i].id)
                        ids[n++] = r->docs[i].id;
        qsort(ids, n, sizeof(char *), id_cmp);
        for (size_t i = 1; i < n; i++)
                if (streq(ids[i - 1], ids[i]))
                        return request_error(ret_error, -EINVAL, "the id \"%s\" is given twice", ids[i]);
        return 0;
}

int shard_put_request_parse(const char *json, unsigned dimension, ShardPutRequest *ret, char **ret_error) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        ShardPutRequest req = {};
        json_object *docs;
        size_t n;
        int r;

        r = parse_object(json, &o, ret_error);
        if (r < 0)
                return r;
        if (!json_object_object_get_ex(o, "documents", &docs) || !json_object_is_type(docs, json_type_array))
                return request_error(ret_error, -EINVAL, "\"documents\" must be an array");
        n = json_object_array_length(docs);
        if (n == 0)
                return request_error(ret_error, -EINVAL, "\"documents\" is empty");
        if (n > SHARD_PUT_DOCS_MAX)
                return request_error(ret_error, -E2BIG, "more than %u documents in one request", SHARD_PUT_DOCS_MAX);
        req.docs = calloc(n, sizeof(ShardPutDoc));
        if (!req.docs)
                return -ENOMEM;
        req.n_docs = n;
        for (size_t i = 0; i < n; i++) {
                r = put_doc_parse(json_object_array_get_idx(docs, i), i, dimension, &req.docs[i], ret_error);
                if (r < 0)
                        goto fail;
        }
        r = put_ids_unique(&req, ret_error);
        if (r < 0)
                goto fail;
        *ret = req;
        return 0;
fail:
        shard_put_request_done(&req);
        return r;
}

void shard_put_request_done(ShardPutRequest *r) {
        for (size_t i = 0; i < r->n_docs; i++) {
                free(r->docs[i].id);
                free(r->docs[i].embedding);
                free(r->docs[i].text);
                free(r->docs[i].metadata);
        }
        free(r->docs);
        *r = (ShardPutRequest) {};
}

int shard_query_request_from_object(json_object *o, unsigned dimension, ShardQueryRequest *ret, char **ret_error) {
        ShardQueryRequest q = { .k = SHARD_QUERY_K_DEFAULT };
        json_object *embedding, *k, *where;
        int r;

        if (!json_object_is_type(o, json_type_object))
                return request_error(ret_error, -EINVAL, "the query must be a JSON object");
        if (!json_object_object_get_ex(o, "embedding", &embedding))
                return request_error(ret_error, -EINVAL, "the query has no \"embedding\"");
        if (json_object_object_get_ex(o, "k", &k) && !json_object_is_type(k, json_type_null)) {
                int64_t v = json_object_get_int64(k);

                if (!json_object_is_type(k, json_type_int) || v < 1 || v > SHARD_SEARCH_K_MAX)
                        return request_error(ret_error, -EINVAL, "\"k\" must be an integer from 1 to %u", SHARD_SEARCH_K_MAX);
                q.k = (unsigned) v;
        }
        r = parse_vector(embedding, dimension, "query", &q.embedding, ret_error);
        if (r < 0)
                return r;
        if (json_object_object_get_ex(o, "where", &where) && !json_object_is_type(where, json_type_null)) {
                r = shard_filter_compile(where, &q.filter, ret_error);
                if (r < 0) {
                        shard_query_request_done(&q);
                        return r;
                }
        }
        *ret = q;
        return 0;
}

int shard_query_request_parse(const char *json, unsigned dimension, ShardQueryRequest *ret, char **ret_error) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        int r;

        r = parse_object(json, &o, ret_error);
        if (r < 0)
                return r;
        return shard_query_request_from_object(o, dimension, ret, ret_error);
}

void shard_query_request_done(ShardQueryRequest *r) {
        free(r->embedding);
        shard_filter_free(r->filter);
        *r = (ShardQueryRequest) {};
}

static int to_string(json_object *o, char **ret) {
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

        if (!s)
                return -ENOMEM;
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int shard_document_format(const ShardDoc *d, char **ret) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        _cleanup_free_ float *v = malloc(sizeof(float) * (d->dimension ?: 1));
        json_object *meta = NULL, *vec;
        int r = 0;

        if (!o || !v)
                return -ENOMEM;
        /* Checked when stored; unreadable now, it reads as none. */
        if (d->metadata_size > 0 && json_document_parse(d->metadata, d->metadata_size, &meta) == -ENOMEM)
                return -ENOMEM;
        vec = json_object_new_array_ext((int) d->dimension);
        if (!vec) {
                json_object_put(meta);
                return -ENOMEM;
        }
        shard_doc_embedding(d, v);
        for (unsigned i = 0; i < d->dimension; i++)
                r |= json_object_array_add(vec, json_object_new_double((double) v[i]));
        r |= json_object_object_add(o, "id", json_object_new_string(d->id));
        r |= json_object_object_add(o, "text", d->text_size > 0 ? json_object_new_string_len(d->text, (int) d->text_size) : NULL);
        r |= json_object_object_add(o, "metadata", meta ?: json_object_new_object());
        r |= json_object_object_add(o, "embedding", vec);
        if (r != 0)
                return -ENOMEM;
        return to_string(o, ret);
}

void shard_answer_done(ShardAnswer *a) {
        for (size_t i = 0; i < a->n_hits; i++) {
                free(a->hits[i].id);
                free(a->hits[i].text);
                json_object_put(a->hits[i].metadata);
        }
        free(a->hits);
        *a = (ShardAnswer) {};
}

int shard_answer_add(ShardAnswer *a, const char *id, const char *text, size_t text_size, json_object *metadata,
                     float score) {
        ShardAnswerHit *h;

        if (a->n_hits >= (size_t) SHARD_SEARCH_K_MAX * SHARD_COUNT_MAX)
                return -E2BIG;
        if (a->n_hits == a->allocated) {
                size_t n = MAX(a->allocated * 2, (size_t) 16);
                ShardAnswerHit *v = reallocarray(a->hits, n, sizeof(ShardAnswerHit));

                if (!v)
                        return -ENOMEM;
                a->hits = v;
                a->allocated = n;
        }
        h = &a->hits[a->n_hits];
        *h = (ShardAnswerHit) { .id = strdup(id), .text = text ? strndup(text, text_size) : NULL, .score = score };
        if (!h->id || (text && !h->text)) {
                free(h->id);
                free(h->text);
                return -ENOMEM;
        }
        h->metadata = metadata ? json_object_get(metadata) : NULL;
        a->n_hits++;
        return 0;
}

int shard_answer_parse(ShardAnswer *a, const void *json, size_t size, bool *not_ready, unsigned n_shards) {
        _cleanup_(json_object_putp) json_object *o = NULL;
        json_object *results, *nr;
        size_t n;
        int r;

        r = json_document_parse(json, size, &o);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || !json_object_is_type(o, json_type_object) ||
            !json_object_object_get_ex(o, "results", &results) || !json_object_is_type(results, json_type_array))
                return -EBADMSG;
        n = json_object_array_length(results);
        for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(results, i), *id, *text, *meta, *score;

                if (!json_object_is_type(e, json_type_object) || !json_object_object_get_ex(e, "id", &id) ||
                    !json_object_is_type(id, json_type_string) || !json_object_object_get_ex(e, "score", &score) ||
                    !(json_object_is_type(score, json_type_double) || json_object_is_type(score, json_type_int)))
                        return -EBADMSG;
                if (!json_object_object_get_ex(e, "text", &text) || !json_object_is_type(text, json_type_string))
                        text = NULL;
                if (!json_object_object_get_ex(e, "metadata", &meta) || !json_object_is_type(meta, json_type_object))
                        meta = NULL;
                r = shard_answer_add(a, json_object_get_string(id), text ? json_object_get_string(text) : NULL,
                                     text ? (size_t) json_object_get_string_len(text) : 0, meta,
                                     (float) json_object_get_double(score));
                if (r < 0)
                        return r;
        }
        if (not_ready && json_object_object_get_ex(o, "not_ready", &nr)) {
                if (!json_object_is_type(nr, json_type_array))
                        return -EBADMSG;
                for (size_t i = 0; i < json_object_array_length(nr); i++) {
                        int64_t s = json_object_get_int64(json_object_array_get_idx(nr, i));

                        if (s < 0 || s >= n_shards)
                                return -EBADMSG;
                        not_ready[s] = true;
                }
        }
        return 0;
}

static int hit_cmp(const void *x, const void *y) {
        const ShardAnswerHit *a = x, *b = y;

        if (a->score != b->score)
                return a->score > b->score ? -1 : 1;
        return strcmp(a->id, b->id);
}

void shard_answer_top(ShardAnswer *a, size_t k) {
        size_t n = 0;

        if (a->n_hits == 0)     /* hits is NULL then, which qsort() must not be given */
                return;
        qsort(a->hits, a->n_hits, sizeof(ShardAnswerHit), hit_cmp);
        for (size_t i = 0; i < a->n_hits; i++) {
                bool dup = false;

                /* The same id from two holders has the same score: it sorts next to itself. */
                for (size_t j = n; j > 0 && !dup && a->hits[j - 1].score == a->hits[i].score; j--)
                        dup = streq(a->hits[j - 1].id, a->hits[i].id);
                if (dup || n >= k) {
                        free(a->hits[i].id);
                        free(a->hits[i].text);
                        json_object_put(a->hits[i].metadata);
                        continue;
                }
                a->hits[n++] = a->hits[i];
        }
        a->n_hits = n;
}

static int answer_format(const ShardAnswer *a, const char *list_name, bool with_partial, const unsigned *list,
                         size_t n_list, char **ret) {
        _cleanup_(json_object_putp) json_object *o = json_object_new_object();
        json_object *results = json_object_new_array_ext((int) a->n_hits);
        int r = 0;

        if (!o || !results) {
                json_object_put(results);
                return -ENOMEM;
        }
        r |= json_object_object_add(o, "results", results);
        for (size_t i = 0; i < a->n_hits; i++) {
                const ShardAnswerHit *h = &a->hits[i];
                json_object *e = json_object_new_object();

                if (!e)
                        return -ENOMEM;
                r |= json_object_array_add(results, e);
                r |= json_object_object_add(e, "id", json_object_new_string(h->id));
                r |= json_object_object_add(e, "text", h->text ? json_object_new_string(h->text) : NULL);
                r |= json_object_object_add(e, "metadata", h->metadata ? json_object_get(h->metadata) : json_object_new_object());
                r |= json_object_object_add(e, "score", json_object_new_double((double) h->score));
        }
        if (with_partial)
                r |= json_object_object_add(o, "partial", json_object_new_boolean(n_list > 0));
        if (n_list > 0) {
                json_object *l = json_object_new_array_ext((int) n_list);

                if (!l)
                        return -ENOMEM;
                r |= json_object_object_add(o, list_name, l);
                for (size_t i = 0; i < n_list; i++)
                        r |= json_object_array_add(l, json_object_new_int64(list[i]));
        }
        if (r != 0)
                return -ENOMEM;
        return to_string(o, ret);
}

int shard_answer_format(const ShardAnswer *a, const unsigned *missing, size_t n_missing, char **ret) {
        return answer_format(a, "missing_shards", true, missing, n_missing, ret);
}

int shard_answer_format_peer(const ShardAnswer *a, const unsigned *not_ready, size_t n_not_ready, char **ret) {
        return answer_format(a, "not_ready", false, not_ready, n_not_ready, ret);
}
