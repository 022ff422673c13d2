/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shimd/shim-request.c: classification, model extraction from a body
 * in pieces, the hop-by-hop filter, upstream URLs, and the limit checks and messages. */
#include <check.h>
#include <stdio.h>

#include "shim-request.h"

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
                { "POST", "/api/show", SHIM_ROUTING_LOCAL, SHIM_API_OLLAMA, false },
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

START_TEST(test_url_parse) {
        ShimUrl u;

        ck_assert_int_eq(shim_url_parse("http://127.0.0.1:11435", &u), 0);
        ck_assert_str_eq(u.host, "127.0.0.1");
        ck_assert_uint_eq(u.port, 11435);
        ck_assert_str_eq(u.hostport, "127.0.0.1:11435");
        ck_assert_str_eq(u.prefix, "");

        ck_assert_int_eq(shim_url_parse("HTTP://localhost/ollama/", &u), 0);
        ck_assert_str_eq(u.host, "localhost");
        ck_assert_uint_eq(u.port, 80);
        ck_assert_str_eq(u.hostport, "localhost:80");
        ck_assert_str_eq(u.prefix, "/ollama");

        ck_assert_int_eq(shim_url_parse("http://[::1]:11436/", &u), 0);
        ck_assert_str_eq(u.host, "::1");
        ck_assert_str_eq(u.hostport, "[::1]:11436");
        ck_assert_str_eq(u.prefix, "");

        ck_assert_int_eq(shim_url_parse("https://x:1", &u), -EPROTONOSUPPORT);
        ck_assert_int_eq(shim_url_parse("127.0.0.1:11435", &u), -EPROTONOSUPPORT);
        ck_assert_int_eq(shim_url_parse(NULL, &u), -EPROTONOSUPPORT);
        ck_assert_int_eq(shim_url_parse("http://", &u), -EINVAL);
        ck_assert_int_eq(shim_url_parse("http://:80", &u), -EINVAL);
        ck_assert_int_eq(shim_url_parse("http://h:", &u), -EINVAL);
        ck_assert_int_eq(shim_url_parse("http://h:0", &u), -EINVAL);
        ck_assert_int_eq(shim_url_parse("http://h:65536", &u), -ERANGE);
        ck_assert_int_eq(shim_url_parse("http://h:8x", &u), -EINVAL);
        ck_assert_int_eq(shim_url_parse("http://[::1", &u), -EINVAL);
        ck_assert_int_eq(shim_url_parse("http://user@h:1", &u), -EINVAL);
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

static Suite *shim_request_suite(void) {
        Suite *s = suite_create("shim-request");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_classify);
        tcase_add_test(tc, test_extract_model);
        tcase_add_test(tc, test_extract_model_errors);
        tcase_add_test(tc, test_hop_by_hop);
        tcase_add_test(tc, test_url_parse);
        tcase_add_test(tc, test_limits);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        SRunner *sr = srunner_create(shim_request_suite());
        int failed;

        srunner_set_tap(sr, "-");
        srunner_run_all(sr, CK_SILENT);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
