/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shimd/shim-request.c: classification, model extraction from a body
 * in pieces, the hop-by-hop filter, upstream URLs, and the limit checks and messages. */
#include <stdio.h>

#include "shim-request.h"
#include "unit-test.h"

START_TEST(test_classify) {
        static const struct {
                const char *method, *uri;
                ShimRouting routing;
                ShimApi api;
                bool streams;
        } cases[] = {
                { "POST", "/api/generate", SHIM_ROUTING_BY_MODEL, SHIM_API_OLLAMA, true },
                { "POST", "/api/chat?x=1", SHIM_ROUTING_BY_MODEL, SHIM_API_OLLAMA, true },
                { "POST", "/api/embed", SHIM_ROUTING_BY_MODEL, SHIM_API_OLLAMA, false },
                { "POST", "/api/embeddings", SHIM_ROUTING_BY_MODEL, SHIM_API_OLLAMA, false },
                { "POST", "/v1/chat/completions", SHIM_ROUTING_BY_MODEL, SHIM_API_OPENAI, true },
                { "POST", "/v1/completions", SHIM_ROUTING_BY_MODEL, SHIM_API_OPENAI, true },
                { "POST", "/v1/embeddings", SHIM_ROUTING_BY_MODEL, SHIM_API_OPENAI, false },
                { "POST", "http://localhost:11434/api/chat", SHIM_ROUTING_BY_MODEL, SHIM_API_OLLAMA, true },
                /* Only POST is routed; other methods get Ollama's own answer (405). */
                { "GET", "/api/generate", SHIM_ROUTING_LOCAL, SHIM_API_OLLAMA, false },
                { "POST", "/api/generate/", SHIM_ROUTING_LOCAL, SHIM_API_OLLAMA, false },
                { "POST", "/api/generatex", SHIM_ROUTING_LOCAL, SHIM_API_OLLAMA, false },
                { "POST", "/api/pull", SHIM_ROUTING_LOCAL, SHIM_API_OLLAMA, true },
                { "POST", "/api/create", SHIM_ROUTING_LOCAL, SHIM_API_OLLAMA, true },
                { "POST", "/api/show", SHIM_ROUTING_BY_MODEL, SHIM_API_OLLAMA, false },
                { "GET", "/api/tags", SHIM_ROUTING_LOCAL, SHIM_API_OLLAMA, false },
                { "DELETE", "/api/delete", SHIM_ROUTING_LOCAL, SHIM_API_OLLAMA, false },
                { "GET", "/v1/models", SHIM_ROUTING_LOCAL, SHIM_API_OPENAI, false },
                { "GET", "/v1", SHIM_ROUTING_LOCAL, SHIM_API_OPENAI, false },
                { "GET", "/v1x", SHIM_ROUTING_LOCAL, SHIM_API_OLLAMA, false },
                { "HEAD", "/", SHIM_ROUTING_LOCAL, SHIM_API_OLLAMA, false },
                { "GET", "/nowhere", SHIM_ROUTING_LOCAL, SHIM_API_OLLAMA, false },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                ShimRequestClass c;

                shim_request_classify(cases[i].method, cases[i].uri, &c);
                ck_assert_msg(c.routing == cases[i].routing, "%s %s routing", cases[i].method, cases[i].uri);
                ck_assert_msg(c.api == cases[i].api, "%s %s api", cases[i].method, cases[i].uri);
                ck_assert_msg(c.streams == cases[i].streams, "%s %s streams", cases[i].method, cases[i].uri);
        }
}
END_TEST

static int extract(const char *body, size_t piece, char **ret) {
        struct iovec iov[256];
        size_t len = strlen(body), n = 0;

        for (size_t i = 0; i < len && n < ELEMENTSOF(iov); i += piece)
                iov[n++] = (struct iovec) { (void *) (body + i), MIN(piece, len - i) };
        return shim_request_extract_model(iov, n, ret);
}

START_TEST(test_extract_model) {
        static const char body[] =
                "{\"messages\":[{\"role\":\"user\",\"content\":\"{\\\"model\\\":\\\"wrong\\\"}\"}],"
                "\"options\":{\"model\":\"nested\"},\"model\":\"llama3.2:latest\",\"stream\":true}";

        /* The top-level key wins over look-alikes in strings and nested objects, whatever the
         * pieces the body arrived in. */
        for (size_t piece = 1; piece <= sizeof(body); piece++) {
                _cleanup_free_ char *model = NULL;

                ck_assert_int_eq(extract(body, piece, &model), 0);
                ck_assert_str_eq(model, "llama3.2:latest");
        }
}
END_TEST

START_TEST(test_extract_model_errors) {
        char *model = NULL;
        char long_body[SHIM_MODEL_NAME_MAX + 32];

        ck_assert_int_eq(extract("{bad", 4, &model), -EINVAL);
        ck_assert_int_eq(extract("", 1, &model), -EINVAL);
        ck_assert_int_eq(extract("{\"model\":\"x\"", 3, &model), -EINVAL); /* truncated */
        ck_assert_int_eq(extract("[\"model\"]", 3, &model), -EINVAL);
        ck_assert_int_eq(extract("{\"prompt\":\"hi\"}", 3, &model), -ENOENT);
        ck_assert_int_eq(extract("{\"model\":42}", 3, &model), -ENOENT);
        ck_assert_int_eq(extract("{\"model\":\"\"}", 3, &model), -ENOENT);
        ck_assert_int_eq(extract("{\"model\":null}", 3, &model), -ENOENT);
        snprintf(long_body, sizeof(long_body), "{\"model\":\"%0*d\"}", SHIM_MODEL_NAME_MAX + 1, 0);
        ck_assert_int_eq(extract(long_body, 64, &model), -ENAMETOOLONG);
        ck_assert_ptr_null(model);
}
END_TEST

/* Extracts model from body split into pieces of every size (the body is short); all agree. */
static int extract_all_pieces(const char *body, char **ret) {
        size_t len = strlen(body);
        char *first_model = NULL;
        int first;

        ck_assert_uint_lt(len, 256);
        first = extract(body, 1, &first_model);
        for (size_t piece = 2; piece <= len; piece++) {
                _cleanup_free_ char *model = NULL;
                int r = extract(body, piece, &model);

                ck_assert_msg(r == first, "%s: pieces of %zu give %d, not %d", body, piece, r, first);
                if (r >= 0)
                        ck_assert_str_eq(model, first_model);
        }
        *ret = first_model;
        return first;
}

START_TEST(test_extract_model_scanner) {
        static const struct {
                const char *body;
                int r;
                const char *model;
        } cases[] = {
                /* Whitespace anywhere between tokens. */
                { " \t\r\n{ \"model\" \n:\t\"m1\" , \"prompt\" : \"hi\" } ", 0, "m1" },
                { "{\"model\":\"m1\"}", 0, "m1" },
                /* Escapes in keys and values. */
                { "{\"mo\\u0064el\":\"m\\u0031\"}", 0, "m1" },
                { "{\"model\":\"a\\\"b\\\\c\\/d\\n\"}", 0, "a\"b\\c/d\n" },
                { "{\"m\\\"odel\":\"x\",\"model\":\"y\"}", 0, "y" },
                { "{\"model\":\"\\u00e9\\ud83d\\ude00\"}", 0, "\xc3\xa9\xf0\x9f\x98\x80" },
                /* A lone surrogate becomes U+FFFD, as in Go. */
                { "{\"model\":\"a\\ud83dz\"}", 0, "a\xef\xbf\xbdz" },
                /* Nested objects and arrays before "model". */
                { "{\"options\":{\"a\":[1,2,{\"b\":[[]]}],\"c\":{}},\"x\":[],\"model\":\"m2\"}", 0, "m2" },
                { "{\"a\":-0.5e+10,\"b\":true,\"c\":false,\"d\":null,\"e\":[-1,0,12.25E-3],\"model\":\"m3\"}", 0, "m3" },
                /* "model" inside nested objects, arrays and string values does not count. */
                { "{\"options\":{\"model\":\"nested\"}}", -ENOENT, NULL },
                { "{\"x\":[{\"model\":\"nested\"}],\"y\":\"\\\"model\\\":\\\"s\\\"\"}", -ENOENT, NULL },
                { "{\"prompt\":\"model\",\"model\":\"real\",\"z\":{\"model\":\"nested\"}}", 0, "real" },
                /* Duplicate keys: the last wins (Go's encoding/json), null leaves the value. */
                { "{\"model\":\"first\",\"model\":\"second\"}", 0, "second" },
                { "{\"model\":\"first\",\"model\":null}", 0, "first" },
                { "{\"model\":null,\"model\":\"second\"}", 0, "second" },
                /* Go matches keys ignoring case when no exact match exists. */
                { "{\"Model\":\"upper\"}", 0, "upper" },
                { "{\"model\":\"a\",\"MODEL\":\"b\"}", 0, "b" },
                { "{\"models\":\"no\",\"mode\":\"no\"}", -ENOENT, NULL },
                /* Go fails to assign a non-string: no model (the local Ollama answers 400). */
                { "{\"model\":\"a\",\"model\":42}", -ENOENT, NULL },
                { "{\"model\":[\"a\"]}", -ENOENT, NULL },
                { "{\"model\":{\"model\":\"a\"}}", -ENOENT, NULL },
                { "{\"model\":true}", -ENOENT, NULL },
                { "{\"model\":\"a\\u0000b\"}", -ENOENT, NULL },
                /* Bytes after the object are not read (Go's Decoder stops there too). */
                { "{\"model\":\"m\"} trailing", 0, "m" },
                /* Invalid JSON anywhere: no model. */
                { "{\"model\":\"m\",}", -EINVAL, NULL },
                { "{\"model\":\"m\" \"x\":1}", -EINVAL, NULL },
                { "{\"model\":\"m\",\"x\":[1,]}", -EINVAL, NULL },
                { "{\"model\":\"m\",\"x\":01}", -EINVAL, NULL },
                { "{\"model\":\"m\",\"x\":1.}", -EINVAL, NULL },
                { "{\"model\":\"m\",\"x\":-}", -EINVAL, NULL },
                { "{\"model\":\"m\",\"x\":1e}", -EINVAL, NULL },
                { "{\"model\":\"m\",\"x\":tru}", -EINVAL, NULL },
                { "{\"model\":\"m\",\"x\":truex}", -EINVAL, NULL },
                { "{\"model\":\"m\",\"x\":NaN}", -EINVAL, NULL },
                { "{\"model\":\"m\",\"x\":\"\\x\"}", -EINVAL, NULL },
                { "{\"model\":\"m\",\"x\":\"\\u12g4\"}", -EINVAL, NULL },
                { "{\"model\":\"m\",\"x\":\"a\tb\"}", -EINVAL, NULL },
                { "{\"model\":\"m\",\"x\":[}", -EINVAL, NULL },
                { "{\"model\":\"m\",\"x\":{]}", -EINVAL, NULL },
                { "{\"model\":\"m\",\"x\":{\"a\"}}", -EINVAL, NULL },
                { "{\"model\":\"m\",\"x\":{1:2}}", -EINVAL, NULL },
                { "{'model':'m'}", -EINVAL, NULL },
                { "{\"model\":\"m\"", -EINVAL, NULL },
                { "{\"model\":\"m", -EINVAL, NULL },
                { "\xef\xbb\xbf{\"model\":\"m\"}", -EINVAL, NULL },
                { "\"model\"", -EINVAL, NULL },
                { "null", -EINVAL, NULL },
                { "   ", -EINVAL, NULL },
                { "{}", -ENOENT, NULL },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *model = NULL;
                int r = extract_all_pieces(cases[i].body, &model);

                ck_assert_msg(r == cases[i].r, "%s: %d, expected %d", cases[i].body, r, cases[i].r);
                if (cases[i].model)
                        ck_assert_str_eq(model, cases[i].model);
        }
}
END_TEST

START_TEST(test_extract_model_depth) {
        /* Deep nesting is fine up to Go's limit (10000) and invalid past it. */
        size_t n = 10000, len = 2 * n + 64;
        _cleanup_free_ char *body = malloc(len);
        char *model = NULL;
        struct iovec iov;
        size_t k = 0;

        ck_assert_ptr_nonnull(body);
        k += (size_t) sprintf(body, "{\"x\":");
        for (size_t i = 0; i < n - 1; i++)
                body[k++] = '[';
        for (size_t i = 0; i < n - 1; i++)
                body[k++] = ']';
        k += (size_t) sprintf(body + k, ",\"model\":\"deep\"}");
        iov = (struct iovec) { body, k };
        ck_assert_int_eq(shim_request_extract_model(&iov, 1, &model), 0);
        ck_assert_str_eq(model, "deep");
        free(model);
        model = NULL;

        k = (size_t) sprintf(body, "{\"x\":");
        for (size_t i = 0; i < n; i++)
                body[k++] = '[';
        for (size_t i = 0; i < n; i++)
                body[k++] = ']';
        k += (size_t) sprintf(body + k, ",\"model\":\"deep\"}");
        iov = (struct iovec) { body, k };
        ck_assert_int_eq(shim_request_extract_model(&iov, 1, &model), -EINVAL);
        ck_assert_ptr_null(model);
}
END_TEST

START_TEST(test_hop_by_hop) {
        static const char *const hop[] = {
                "Connection", "connection", "Keep-Alive", "Proxy-Authorization", "Proxy-Anything",
                "TE", "Trailer", "Transfer-Encoding", "transfer-encoding", "Upgrade",
        };
        static const char *const end_to_end[] = {
                "Content-Type", "Content-Length", "Authorization", "Accept", "Date", "Trailers", "X-TE",
        };

        for (size_t i = 0; i < ELEMENTSOF(hop); i++)
                ck_assert_msg(shim_header_is_hop_by_hop(hop[i], NULL), "%s", hop[i]);
        for (size_t i = 0; i < ELEMENTSOF(end_to_end); i++)
                ck_assert_msg(!shim_header_is_hop_by_hop(end_to_end[i], NULL), "%s", end_to_end[i]);

        /* Headers named by the Connection header are hop-by-hop too. */
        ck_assert(shim_header_is_hop_by_hop("X-Secret", "keep-alive, x-secret"));
        ck_assert(shim_header_is_hop_by_hop("X-Secret", "X-Secret"));
        ck_assert(shim_header_is_hop_by_hop("X-Secret", " close ,\tX-SECRET "));
        ck_assert(!shim_header_is_hop_by_hop("X-Secret", "close, x-secrets"));
        ck_assert(!shim_header_is_hop_by_hop("X-Sec", "x-secret"));
        ck_assert(!shim_header_is_hop_by_hop("Accept", ""));
        ck_assert(!shim_header_is_hop_by_hop(NULL, "x"));
}
END_TEST

START_TEST(test_header_classify) {
        ck_assert_int_eq(shim_header_classify("connection"), SHIM_HEADER_CONNECTION);
        ck_assert_int_eq(shim_header_classify("CONTENT-LENGTH"), SHIM_HEADER_CONTENT_LENGTH);
        ck_assert_int_eq(shim_header_classify("Content-Type"), SHIM_HEADER_CONTENT_TYPE);
        ck_assert_int_eq(shim_header_classify("host"), SHIM_HEADER_HOST);
        ck_assert_int_eq(shim_header_classify("Expect"), SHIM_HEADER_EXPECT);
        ck_assert_int_eq(shim_header_classify("te"), SHIM_HEADER_HOP_BY_HOP);
        ck_assert_int_eq(shim_header_classify("Keep-Alive"), SHIM_HEADER_HOP_BY_HOP);
        ck_assert_int_eq(shim_header_classify("Proxy-Anything"), SHIM_HEADER_HOP_BY_HOP);
        ck_assert_int_eq(shim_header_classify("Proxy-Connection"), SHIM_HEADER_HOP_BY_HOP);
        ck_assert_int_eq(shim_header_classify("Content-Lengthy"), SHIM_HEADER_OTHER);
        ck_assert_int_eq(shim_header_classify("Hos"), SHIM_HEADER_OTHER);
        ck_assert_int_eq(shim_header_classify("X-Upgrade"), SHIM_HEADER_OTHER);
        ck_assert_int_eq(shim_header_classify(""), SHIM_HEADER_OTHER);
}
END_TEST

START_TEST(test_url_parse) {
        HttpBaseUrl u;

        ck_assert_int_eq(http_base_url_parse("http://127.0.0.1:11435", &u), 0);
        ck_assert_str_eq(u.host, "127.0.0.1");
        ck_assert_uint_eq(u.port, 11435);
        ck_assert_str_eq(u.hostport, "127.0.0.1:11435");
        ck_assert_str_eq(u.prefix, "");

        ck_assert_int_eq(http_base_url_parse("HTTP://localhost/ollama/", &u), 0);
        ck_assert_str_eq(u.host, "localhost");
        ck_assert_uint_eq(u.port, 80);
        ck_assert_str_eq(u.hostport, "localhost:80");
        ck_assert_str_eq(u.prefix, "/ollama");

        ck_assert_int_eq(http_base_url_parse("http://[::1]:11436/", &u), 0);
        ck_assert_str_eq(u.host, "::1");
        ck_assert_str_eq(u.hostport, "[::1]:11436");
        ck_assert_str_eq(u.prefix, "");

        ck_assert_int_eq(http_base_url_parse("https://x:1", &u), -EPROTONOSUPPORT);
        ck_assert_int_eq(http_base_url_parse("127.0.0.1:11435", &u), -EPROTONOSUPPORT);
        ck_assert_int_eq(http_base_url_parse(NULL, &u), -EPROTONOSUPPORT);
        ck_assert_int_eq(http_base_url_parse("http://", &u), -EINVAL);
        ck_assert_int_eq(http_base_url_parse("http://:80", &u), -EINVAL);
        ck_assert_int_eq(http_base_url_parse("http://h:", &u), -EINVAL);
        ck_assert_int_eq(http_base_url_parse("http://h:0", &u), -EINVAL);
        ck_assert_int_eq(http_base_url_parse("http://h:65536", &u), -ERANGE);
        ck_assert_int_eq(http_base_url_parse("http://h:8x", &u), -EINVAL);
        ck_assert_int_eq(http_base_url_parse("http://[::1", &u), -EINVAL);
        ck_assert_int_eq(http_base_url_parse("http://user@h:1", &u), -EINVAL);
        ck_assert_int_eq(http_base_url_parse("http://h:1/?x=1", &u), -EINVAL);
        ck_assert_int_eq(http_base_url_parse("http://h:1/api#top", &u), -EINVAL);
}
END_TEST

START_TEST(test_limits) {
        char buf[128];
        uint64_t n;

        ck_assert_int_eq(shim_content_length_parse("0", &n), 0);
        ck_assert_uint_eq(n, 0);
        ck_assert_int_eq(shim_content_length_parse("18446744073709551606", &n), 0);
        ck_assert_int_eq(shim_content_length_parse("18446744073709551616", &n), -ERANGE);
        ck_assert_int_eq(shim_content_length_parse("", &n), -EINVAL);
        ck_assert_int_eq(shim_content_length_parse("-1", &n), -EINVAL);
        ck_assert_int_eq(shim_content_length_parse("1 2", &n), -EINVAL);
        ck_assert_int_eq(shim_content_length_parse(NULL, &n), -EINVAL);

        shim_limit_body_message("200000000", 104857600, buf, sizeof(buf));
        ck_assert_str_eq(buf, "request body too large: 200000000 bytes exceeds the limit of 104857600 bytes");
        shim_limit_body_message(NULL, 1024, buf, sizeof(buf));
        ck_assert_str_eq(buf, "request body too large: it exceeds the limit of 1024 bytes");
        /* A length within the limit cannot be why: the chunked form of the message. */
        shim_limit_body_message("10", 1024, buf, sizeof(buf));
        ck_assert_str_eq(buf, "request body too large: it exceeds the limit of 1024 bytes");

        ck_assert(!shim_limit_requests_reached(0, 512));
        ck_assert(!shim_limit_requests_reached(511, 512));
        ck_assert(shim_limit_requests_reached(512, 512));
        ck_assert(shim_limit_requests_reached(0, 0));
        ck_assert_str_eq(SHIM_BUSY_MESSAGE, "server busy, please try again.  maximum pending requests exceeded");
}
END_TEST

START_TEST(test_uri_is) {
        ck_assert(shim_uri_is("/api/tags", "/api/tags"));
        ck_assert(shim_uri_is("/api/tags?x=1", "/api/tags"));
        ck_assert(shim_uri_is("/api/tags#f", "/api/tags"));
        ck_assert(shim_uri_is("http://127.0.0.1:11434/api/ps?", "/api/ps"));
        ck_assert(!shim_uri_is("/api/tags/", "/api/tags"));
        ck_assert(!shim_uri_is("/api/tag", "/api/tags"));
        ck_assert(!shim_uri_is("/api/tagsx", "/api/tags"));
        ck_assert(!shim_uri_is(NULL, "/api/tags"));
}
END_TEST

static Suite *shim_request_suite(void) {
        Suite *s = suite_create("shim-request");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_classify);
        tcase_add_test(tc, test_extract_model);
        tcase_add_test(tc, test_extract_model_errors);
        tcase_add_test(tc, test_extract_model_scanner);
        tcase_add_test(tc, test_extract_model_depth);
        tcase_add_test(tc, test_hop_by_hop);
        tcase_add_test(tc, test_header_classify);
        tcase_add_test(tc, test_url_parse);
        tcase_add_test(tc, test_limits);
        tcase_add_test(tc, test_uri_is);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(shim_request_suite());
}
