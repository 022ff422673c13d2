/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shimd/shim-collections.c: paths with escapes and bad paths, methods per
 * route, ShardStore1 and embedding failures as HTTP statuses, and the bodies around embedding. */
#include <stdio.h>

#include "bus-names.h"
#include "json-cleanup.h"
#include "shim-collections.h"
#include "unit-test.h"

static int parse(const char *path, ShimCollectionsPath *p) {
        const char *error = NULL;
        int r = shim_collections_path_parse(path, p, &error);

        if (r == -ENOENT || r == -EINVAL)
                ck_assert_ptr_nonnull(error);
        return r;
}

START_TEST(test_path_ours) {
        ck_assert(shim_collections_path_is_ours("/api/mycelia"));
        ck_assert(shim_collections_path_is_ours("/api/mycelia/"));
        ck_assert(shim_collections_path_is_ours("/api/mycelia/anything"));
        ck_assert(!shim_collections_path_is_ours("/api/myceliax"));
        ck_assert(!shim_collections_path_is_ours("/api/chat"));
        ck_assert(!shim_collections_path_is_ours("/API/mycelia/collections"));
        ck_assert(!shim_collections_path_is_ours(NULL));
}
END_TEST

START_TEST(test_path_routes) {
        _cleanup_(shim_collections_path_done) ShimCollectionsPath p = {};

        ck_assert_int_eq(parse("/api/mycelia/collections", &p), 0);
        ck_assert_int_eq(p.route, SHIM_COLLECTIONS_LIST);
        ck_assert_ptr_null(p.name);
        shim_collections_path_done(&p);

        ck_assert_int_eq(parse("/api/mycelia/collections/docs", &p), 0);
        ck_assert_int_eq(p.route, SHIM_COLLECTIONS_ONE);
        ck_assert_str_eq(p.name, "docs");
        ck_assert_ptr_null(p.id);
        shim_collections_path_done(&p);

        ck_assert_int_eq(parse("/api/mycelia/collections/my_docs-2.v1/documents", &p), 0);
        ck_assert_int_eq(p.route, SHIM_COLLECTIONS_DOCUMENTS);
        ck_assert_str_eq(p.name, "my_docs-2.v1");
        shim_collections_path_done(&p);

        ck_assert_int_eq(parse("/api/mycelia/collections/docs/documents/a1", &p), 0);
        ck_assert_int_eq(p.route, SHIM_COLLECTIONS_DOCUMENT);
        ck_assert_str_eq(p.name, "docs");
        ck_assert_str_eq(p.id, "a1");
        shim_collections_path_done(&p);

        ck_assert_int_eq(parse("/api/mycelia/collections/docs/query", &p), 0);
        ck_assert_int_eq(p.route, SHIM_COLLECTIONS_QUERY);
}
END_TEST

START_TEST(test_path_escapes) {
        _cleanup_(shim_collections_path_done) ShimCollectionsPath p = {};

        /* A name may be escaped; the decoded name is what is checked. */
        ck_assert_int_eq(parse("/api/mycelia/collections/d%6Fcs/query", &p), 0);
        ck_assert_str_eq(p.name, "docs");
        shim_collections_path_done(&p);

        /* An id may hold anything but NUL: '/', '%', spaces, '+', UTF-8. */
        ck_assert_int_eq(parse("/api/mycelia/collections/docs/documents/a%2Fb%25c%20d+e%C3%A9", &p), 0);
        ck_assert_str_eq(p.id, "a/b%c d+e\xc3\xa9");
        shim_collections_path_done(&p);

        ck_assert_int_eq(parse("/api/mycelia/collections/docs/documents/%7e", &p), 0);
        ck_assert_str_eq(p.id, "~");
}
END_TEST

START_TEST(test_path_bad) {
        static const char *const not_found[] = {
                "/api/mycelia",
                "/api/mycelia/",
                "/api/mycelia/collection",
                "/api/mycelia/collections/",
                "/api/mycelia/collections//documents",
                "/api/mycelia/collections/docs/",
                "/api/mycelia/collections/docs/documents/",
                "/api/mycelia/collections/docs/docs",
                "/api/mycelia/collections/docs/query/x",
                "/api/mycelia/collections/docs/documents/a/b",
                "/api/mycelia/collections/docs/documents/a/b/c/d",
                "/api/mycelia/other/collections",
        };
        static const char *const invalid[] = {
                "/api/mycelia/collections/.hidden",
                "/api/mycelia/collections/a%2Fb",               /* '/' decoded is not a name character */
                "/api/mycelia/collections/a b",
                "/api/mycelia/collections/%zz/query",
                "/api/mycelia/collections/docs%2",
                "/api/mycelia/collections/docs%",
                "/api/mycelia/collections/docs/documents/a%00b",
                "/api/mycelia/collections/docs/documents/%g0",
                "/api/mycelia/collections/%C3%A9t%C3%A9",
        };
        _cleanup_(shim_collections_path_done) ShimCollectionsPath p = {};
        char path[600], name[200];

        for (size_t i = 0; i < ELEMENTSOF(not_found); i++)
                ck_assert_msg(parse(not_found[i], &p) == -ENOENT, "%s", not_found[i]);
        for (size_t i = 0; i < ELEMENTSOF(invalid); i++)
                ck_assert_msg(parse(invalid[i], &p) == -EINVAL, "%s", invalid[i]);

        /* 128 name characters pass, 129 do not; ids of 256 bytes pass, 257 do not. */
        memset(name, 'n', 128);
        name[128] = '\0';
        snprintf(path, sizeof(path), "/api/mycelia/collections/%s", name);
        ck_assert_int_eq(parse(path, &p), 0);
        shim_collections_path_done(&p);
        snprintf(path, sizeof(path), "/api/mycelia/collections/%sn", name);
        ck_assert_int_eq(parse(path, &p), -EINVAL);

        snprintf(path, sizeof(path), "/api/mycelia/collections/docs/documents/%s%s", name, name);
        ck_assert_int_eq(parse(path, &p), 0);
        ck_assert_uint_eq(strlen(p.id), 256);
        shim_collections_path_done(&p);
        snprintf(path, sizeof(path), "/api/mycelia/collections/docs/documents/%s%s%%41", name, name);
        ck_assert_int_eq(parse(path, &p), -EINVAL);
}
END_TEST

START_TEST(test_methods) {
        ck_assert(shim_collections_method_allowed(SHIM_COLLECTIONS_LIST, "GET"));
        ck_assert(shim_collections_method_allowed(SHIM_COLLECTIONS_LIST, "POST"));
        ck_assert(!shim_collections_method_allowed(SHIM_COLLECTIONS_LIST, "DELETE"));
        ck_assert(shim_collections_method_allowed(SHIM_COLLECTIONS_ONE, "DELETE"));
        ck_assert(!shim_collections_method_allowed(SHIM_COLLECTIONS_ONE, "GET"));
        ck_assert(shim_collections_method_allowed(SHIM_COLLECTIONS_DOCUMENTS, "POST"));
        ck_assert(!shim_collections_method_allowed(SHIM_COLLECTIONS_DOCUMENTS, "GET"));
        ck_assert(shim_collections_method_allowed(SHIM_COLLECTIONS_DOCUMENT, "GET"));
        ck_assert(shim_collections_method_allowed(SHIM_COLLECTIONS_DOCUMENT, "DELETE"));
        ck_assert(!shim_collections_method_allowed(SHIM_COLLECTIONS_DOCUMENT, "POST"));
        ck_assert(shim_collections_method_allowed(SHIM_COLLECTIONS_QUERY, "POST"));
        ck_assert(!shim_collections_method_allowed(SHIM_COLLECTIONS_QUERY, "GET"));
        ck_assert(!shim_collections_method_allowed(SHIM_COLLECTIONS_LIST, "OTHER"));
}
END_TEST

START_TEST(test_bus_errors) {
        const char *m = NULL;

        ck_assert_int_eq(shim_collections_bus_error_status(SHARDSTORE1_ERROR_INVALID, "bad filter", &m), 400);
        ck_assert_str_eq(m, "bad filter");
        ck_assert_int_eq(shim_collections_bus_error_status(SHARDSTORE1_ERROR_TOO_LARGE, "too many", &m), 413);
        ck_assert_str_eq(m, "too many");
        ck_assert_int_eq(shim_collections_bus_error_status(SHARDSTORE1_ERROR_NOT_FOUND, "no such", &m), 404);
        ck_assert_str_eq(m, "no such");
        ck_assert_int_eq(shim_collections_bus_error_status(SHARDSTORE1_ERROR_EXISTS, "taken", &m), 409);
        ck_assert_str_eq(m, "taken");
        ck_assert_int_eq(shim_collections_bus_error_status(SHARDSTORE1_ERROR_UNAVAILABLE, "later", &m), 503);
        ck_assert_str_eq(m, "later");
        /* An empty message is never passed on as an empty error. */
        ck_assert_int_eq(shim_collections_bus_error_status(SHARDSTORE1_ERROR_INVALID, "", &m), 400);
        ck_assert_str_eq(m, SHIM_COLLECTIONS_FAILED);

        ck_assert_int_eq(shim_collections_bus_error_status("org.freedesktop.DBus.Error.ServiceUnknown",
                                                           "The name was not provided", &m), 503);
        ck_assert_str_eq(m, SHIM_COLLECTIONS_NOT_RUNNING);
        ck_assert_int_eq(shim_collections_bus_error_status("org.freedesktop.DBus.Error.NameHasNoOwner", "x", &m), 503);
        ck_assert_str_eq(m, SHIM_COLLECTIONS_NOT_RUNNING);

        /* Anything else is 500 with a fixed text: its message may name internals. */
        ck_assert_int_eq(shim_collections_bus_error_status("org.freedesktop.DBus.Error.NoReply", "timeout", &m), 500);
        ck_assert_str_eq(m, SHIM_COLLECTIONS_FAILED);
        ck_assert_int_eq(shim_collections_bus_error_status("System.Error.EIO", "/var/lib/mycelia: I/O error", &m), 500);
        ck_assert_str_eq(m, SHIM_COLLECTIONS_FAILED);
        ck_assert_int_eq(shim_collections_bus_error_status("org.mycelia.ShardStore1.Other", "internal", &m), 500);
        ck_assert_str_eq(m, SHIM_COLLECTIONS_FAILED);
        ck_assert_int_eq(shim_collections_bus_error_status(NULL, NULL, &m), 500);
        ck_assert_str_eq(m, SHIM_COLLECTIONS_FAILED);
}
END_TEST

START_TEST(test_embed_errors) {
        ck_assert_int_eq(shim_collections_embed_error_status(400), 400);
        ck_assert_int_eq(shim_collections_embed_error_status(404), 400);
        ck_assert_int_eq(shim_collections_embed_error_status(413), 413);
        ck_assert_int_eq(shim_collections_embed_error_status(503), 503);
        ck_assert_int_eq(shim_collections_embed_error_status(429), 503);
        ck_assert_int_eq(shim_collections_embed_error_status(500), 502);
        ck_assert_int_eq(shim_collections_embed_error_status(502), 502);
        ck_assert_int_eq(shim_collections_embed_error_status(0), 502);
}
END_TEST

START_TEST(test_self_url) {
        HttpBaseUrl u;

        ck_assert_int_eq(shim_collections_self_url("127.0.0.1:11434", &u), 0);
        ck_assert_str_eq(u.host, "127.0.0.1");
        ck_assert_uint_eq(u.port, 11434);
        ck_assert_int_eq(shim_collections_self_url("0.0.0.0:8080", &u), 0);
        ck_assert_str_eq(u.hostport, "127.0.0.1:8080");
        ck_assert_int_eq(shim_collections_self_url("[::]:8080", &u), 0);
        ck_assert_str_eq(u.host, "::1");
        ck_assert_str_eq(u.hostport, "[::1]:8080");
        ck_assert_int_eq(shim_collections_self_url("[fe80::1]:80", &u), 0);
        ck_assert_str_eq(u.host, "fe80::1");
        ck_assert_int_eq(shim_collections_self_url("192.168.1.5:1", &u), 0);
        ck_assert_str_eq(u.hostport, "192.168.1.5:1");
        ck_assert_int_lt(shim_collections_self_url("", &u), 0);
        ck_assert_int_lt(shim_collections_self_url(NULL, &u), 0);
}
END_TEST

static json_object *json(const char *text) {
        json_object *o = json_tokener_parse(text);

        ck_assert_ptr_nonnull(o);
        return o;
}

START_TEST(test_create_parse) {
        _cleanup_(json_object_putp) json_object *full = json("{\"name\":\"docs\",\"dimension\":768,\"metric\":\"ip\","
                                                            "\"model\":\"nomic-embed-text\"}");
        _cleanup_(json_object_putp) json_object *by_model = json("{\"name\":\"docs\",\"model\":\"all-minilm\"}");
        static const char *const bad[] = {
                "[]", "{}", "{\"name\":1,\"dimension\":3}", "{\"name\":\".x\",\"dimension\":3}",
                "{\"name\":\"x\"}", "{\"name\":\"x\",\"model\":\"\"}", "{\"name\":\"x\",\"dimension\":\"3\"}",
                "{\"name\":\"x\",\"dimension\":-1}", "{\"name\":\"x\",\"dimension\":0}",
                "{\"name\":\"x\",\"dimension\":2.5}",
                "{\"name\":\"x\",\"dimension\":4294967296}", "{\"name\":\"x\",\"dimension\":3,\"metric\":1}",
                "{\"name\":\"x\",\"dimension\":3,\"model\":[]}",
        };
        ShimCollectionSpec s;
        const char *error;

        ck_assert_int_eq(shim_collections_create_parse(full, &s, &error), 0);
        ck_assert_str_eq(s.name, "docs");
        ck_assert_uint_eq(s.dimension, 768);
        ck_assert_str_eq(s.metric, "ip");
        ck_assert_str_eq(s.model, "nomic-embed-text");

        ck_assert_int_eq(shim_collections_create_parse(by_model, &s, &error), 0);
        ck_assert_uint_eq(s.dimension, 0);
        ck_assert_str_eq(s.metric, "");
        ck_assert_str_eq(s.model, "all-minilm");

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_(json_object_putp) json_object *o = json(bad[i]);

                error = NULL;
                ck_assert_msg(shim_collections_create_parse(o, &s, &error) == -EINVAL, "%s", bad[i]);
                ck_assert_ptr_nonnull(error);
        }
}
END_TEST

START_TEST(test_info_json) {
        _cleanup_(json_object_putp) json_object *a = shim_collections_info_to_json(&(ShimCollectionInfo) {
                .name = "docs", .dimension = 8, .metric = "", .model = "", .documents = -1 });
        _cleanup_(json_object_putp) json_object *b = shim_collections_info_to_json(&(ShimCollectionInfo) {
                .name = "d", .dimension = 3, .metric = "ip", .model = "all-minilm", .documents = 12 });

        ck_assert_str_eq(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN),
                         "{\"name\":\"docs\",\"dimension\":8,\"metric\":\"cosine\",\"model\":null}");
        ck_assert_str_eq(json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN),
                         "{\"name\":\"d\",\"dimension\":3,\"metric\":\"ip\",\"model\":\"all-minilm\","
                         "\"documents\":12}");
}
END_TEST

START_TEST(test_documents_plan_and_fill) {
        _cleanup_(json_object_putp) json_object *body = json(
                "{\"documents\":[{\"id\":\"a\",\"embedding\":[1,2]},{\"text\":\"hello\"},"
                "{\"id\":\"c\",\"text\":\"world\",\"embedding\":null,\"metadata\":{\"k\":1}},"
                "{\"text\":\"t\",\"embedding\":[3,4]}]}");
        _cleanup_(json_object_putp) json_object *answer = json(
                "{\"model\":\"m\",\"embeddings\":[[0.5,0.25],[-1,2e-3]]}");
        _cleanup_free_ size_t *indexes = NULL;
        _cleanup_free_ const char **texts = NULL;
        _cleanup_free_ char *error = NULL;
        json_object *embeddings, *docs;
        size_t n;

        ck_assert_int_eq(shim_collections_documents_plan(body, &indexes, &texts, &n, &error), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert_uint_eq(indexes[0], 1);
        ck_assert_uint_eq(indexes[1], 2);
        ck_assert_str_eq(texts[0], "hello");
        ck_assert_str_eq(texts[1], "world");

        ck_assert_int_eq(shim_collections_embeddings(answer, 2, &embeddings), 0);
        ck_assert_int_eq(shim_collections_documents_fill(body, indexes, n, embeddings), 0);
        docs = json_object_object_get(body, "documents");
        ck_assert_str_eq(json_object_to_json_string_ext(json_object_array_get_idx(docs, 1), JSON_C_TO_STRING_PLAIN),
                         "{\"text\":\"hello\",\"embedding\":[0.5,0.25]}");
        ck_assert_str_eq(json_object_to_json_string_ext(json_object_array_get_idx(docs, 2), JSON_C_TO_STRING_PLAIN),
                         "{\"id\":\"c\",\"text\":\"world\",\"embedding\":[-1,2e-3],\"metadata\":{\"k\":1}}");
        /* Documents that had an embedding keep it. */
        ck_assert_str_eq(json_object_to_json_string_ext(json_object_array_get_idx(docs, 3), JSON_C_TO_STRING_PLAIN),
                         "{\"text\":\"t\",\"embedding\":[3,4]}");
}
END_TEST

START_TEST(test_documents_plan_bad) {
        static const char *const invalid[] = {
                "[]", "{}", "{\"documents\":{}}", "{\"documents\":[{\"id\":\"x\"}]}",
                "{\"documents\":[{\"embedding\":[1]},{\"text\":3}]}",
        };
        _cleanup_free_ size_t *indexes = NULL;
        _cleanup_free_ const char **texts = NULL;
        _cleanup_free_ char *big = NULL;
        size_t n = 99, off = 0, size = 16 + 5000 * 32;

        for (size_t i = 0; i < ELEMENTSOF(invalid); i++) {
                _cleanup_(json_object_putp) json_object *o = json(invalid[i]);
                _cleanup_free_ char *error = NULL;

                ck_assert_msg(shim_collections_documents_plan(o, &indexes, &texts, &n, &error) == -EINVAL, "%s",
                              invalid[i]);
                ck_assert_ptr_nonnull(error);
        }
        /* What only shardd can judge passes: a non-object document, an empty list. */
        {
                _cleanup_(json_object_putp) json_object *o = json("{\"documents\":[1,{\"embedding\":\"x\"}]}");
                _cleanup_free_ char *error = NULL;

                ck_assert_int_eq(shim_collections_documents_plan(o, &indexes, &texts, &n, &error), 0);
                ck_assert_uint_eq(n, 0);
                ck_assert_ptr_null(indexes);
        }
        /* More than 4096 documents: 413 before anything is embedded. */
        big = malloc(size);
        ck_assert_ptr_nonnull(big);
        off += (size_t) snprintf(big + off, size - off, "{\"documents\":[");
        for (size_t i = 0; i < SHIM_COLLECTIONS_DOCS_MAX + 1; i++)
                off += (size_t) snprintf(big + off, size - off, "%s{\"text\":\"t%zu\"}", i ? "," : "", i);
        snprintf(big + off, size - off, "]}");
        {
                _cleanup_(json_object_putp) json_object *o = json(big);
                _cleanup_free_ char *error = NULL;

                ck_assert_int_eq(shim_collections_documents_plan(o, &indexes, &texts, &n, &error), -E2BIG);
                ck_assert_ptr_nonnull(error);
        }
}
END_TEST

START_TEST(test_query_plan) {
        _cleanup_(json_object_putp) json_object *e = json("{\"embedding\":[1,0],\"text\":\"ignored\",\"k\":3}");
        _cleanup_(json_object_putp) json_object *t = json("{\"text\":\"what is it\",\"where\":{\"a\":1}}");
        _cleanup_(json_object_putp) json_object *none = json("{\"k\":3}");
        _cleanup_(json_object_putp) json_object *bad_text = json("{\"text\":[\"x\"]}");
        _cleanup_(json_object_putp) json_object *array = json("[]");
        const char *text, *error;

        ck_assert_int_eq(shim_collections_query_plan(e, &text, &error), 0);
        ck_assert_ptr_null(text);
        ck_assert_int_eq(shim_collections_query_plan(t, &text, &error), 0);
        ck_assert_str_eq(text, "what is it");
        ck_assert_int_eq(shim_collections_query_plan(none, &text, &error), -EINVAL);
        ck_assert_int_eq(shim_collections_query_plan(bad_text, &text, &error), -EINVAL);
        ck_assert_int_eq(shim_collections_query_plan(array, &text, &error), -EINVAL);
}
END_TEST

START_TEST(test_embed_body_and_answer) {
        static const char *const texts[] = { "one", "t\"wo\n" };
        _cleanup_free_ char *body = NULL;
        json_object *list;
        size_t len;

        ck_assert_int_eq(shim_collections_embed_body("all-minilm", texts, 2, &body, &len), 0);
        ck_assert_str_eq(body, "{\"model\":\"all-minilm\",\"input\":[\"one\",\"t\\\"wo\\n\"]}");
        ck_assert_uint_eq(len, strlen(body));

        static const char *const bad[] = {
                "{}", "{\"embeddings\":{}}", "{\"embeddings\":[[1,2]]}", "{\"embeddings\":[[1,2],[3]]}",
                "{\"embeddings\":[[1,2],[]]}", "{\"embeddings\":[[1,2],[\"x\",3]]}", "{\"embeddings\":[[1,2],3]}",
                "{\"embeddings\":[[],[]]}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_(json_object_putp) json_object *o = json(bad[i]);

                ck_assert_msg(shim_collections_embeddings(o, 2, &list) == -EBADMSG, "%s", bad[i]);
        }
        {
                _cleanup_(json_object_putp) json_object *o = json("{\"embeddings\":[[1,2.5],[3,-4e-2]]}");

                ck_assert_int_eq(shim_collections_embeddings(o, 2, &list), 0);
                ck_assert_uint_eq(json_object_array_length(list), 2);
        }
}
END_TEST

START_TEST(test_answer_error) {
        _cleanup_(json_object_putp) json_object *e = json(
                "{\"error\":\"model \\\"x\\\" not found, try pulling it first\"}");
        _cleanup_(json_object_putp) json_object *o = json("{\"error\":{\"message\":\"m\"}}");

        ck_assert_str_eq(shim_collections_answer_error(e), "model \"x\" not found, try pulling it first");
        ck_assert_ptr_null(shim_collections_answer_error(o));
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shim-collections");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_path_ours);
        tcase_add_test(tc, test_path_routes);
        tcase_add_test(tc, test_path_escapes);
        tcase_add_test(tc, test_path_bad);
        tcase_add_test(tc, test_methods);
        tcase_add_test(tc, test_bus_errors);
        tcase_add_test(tc, test_embed_errors);
        tcase_add_test(tc, test_self_url);
        tcase_add_test(tc, test_create_parse);
        tcase_add_test(tc, test_info_json);
        tcase_add_test(tc, test_documents_plan_and_fill);
        tcase_add_test(tc, test_documents_plan_bad);
        tcase_add_test(tc, test_query_plan);
        tcase_add_test(tc, test_embed_body_and_answer);
        tcase_add_test(tc, test_answer_error);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
