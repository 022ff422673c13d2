/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shimd/shim-tokens.c: who needs a token (api_auth on each kind of
 * address), the tokens file (good, bad and duplicate lines, comments, CRLF, NULs), the secret's
 * match, the Bearer header, model names as Ollama compares them, and what a restricted token may
 * do. */
#include <stdio.h>

#include "api-tokens.h"
#include "shim-request.h"
#include "unit-test.h"

static void hash_hex(const char *secret, char hex[static 2 * API_TOKEN_HASH_SIZE + 1]) {
        uint8_t h[API_TOKEN_HASH_SIZE];

        api_token_hash(secret, strlen(secret), h);
        for (size_t i = 0; i < sizeof(h); i++)
                sprintf(hex + 2 * i, "%02x", h[i]);
}

START_TEST(test_auth_mode) {
        ck_assert_int_eq(api_auth_mode_from_string("auto"), API_AUTH_AUTO);
        ck_assert_int_eq(api_auth_mode_from_string("token"), API_AUTH_TOKEN);
        ck_assert_int_eq(api_auth_mode_from_string("none"), API_AUTH_NONE);
        ck_assert_int_eq(api_auth_mode_from_string("Token"), _API_AUTH_INVALID);
        ck_assert_int_eq(api_auth_mode_from_string(""), _API_AUTH_INVALID);
        ck_assert_int_eq(api_auth_mode_from_string(NULL), _API_AUTH_INVALID);
        ck_assert_str_eq(api_auth_mode_to_string(API_AUTH_NONE), "none");
        ck_assert_ptr_null(api_auth_mode_to_string(_API_AUTH_INVALID));
}
END_TEST

START_TEST(test_loopback) {
        static const struct {
                const char *address;
                int loopback;
        } cases[] = {
                { "127.0.0.1:11434", 1 },
                { "127.1.2.3:80", 1 },
                { "[::1]:11434", 1 },
                { "[::ffff:127.0.0.1]:11434", 1 },
                { "0.0.0.0:11434", 0 },
                { "[::]:11434", 0 },
                { "192.168.1.20:11434", 0 },
                { "10.0.0.1:11434", 0 },
                { "128.0.0.1:1", 0 },
                { "[fe80::1]:11434", 0 },
                { "[::ffff:10.0.0.1]:11434", 0 },
                { "localhost:11434", -EINVAL },
                { "127.0.0.1", -EINVAL },
                { "127.0.0.1:", -EINVAL },
                { "127.0.0.1:x", -EINVAL },
                { "::1:11434", -EINVAL },
                { "[::1]", -EINVAL },
                { "[127.0.0.1]:80", -EINVAL },
                { "", -EINVAL },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                ck_assert_msg(api_address_is_loopback(cases[i].address) == cases[i].loopback, "%s: %d, not %d",
                              cases[i].address, api_address_is_loopback(cases[i].address), cases[i].loopback);
}
END_TEST

START_TEST(test_auth_required) {
        /* auto: open on loopback, as Ollama's; a token anywhere else, and when unsure. */
        ck_assert(!api_auth_required(API_AUTH_AUTO, "127.0.0.1:11434"));
        ck_assert(!api_auth_required(API_AUTH_AUTO, "[::1]:11434"));
        ck_assert(api_auth_required(API_AUTH_AUTO, "0.0.0.0:11434"));
        ck_assert(api_auth_required(API_AUTH_AUTO, "[::]:11434"));
        ck_assert(api_auth_required(API_AUTH_AUTO, "192.168.1.20:11434"));
        ck_assert(api_auth_required(API_AUTH_AUTO, "garbage"));
        ck_assert(api_auth_required(API_AUTH_TOKEN, "127.0.0.1:11434"));
        ck_assert(api_auth_required(API_AUTH_TOKEN, "0.0.0.0:11434"));
        ck_assert(!api_auth_required(API_AUTH_NONE, "0.0.0.0:11434"));
        ck_assert(!api_auth_required(API_AUTH_NONE, "127.0.0.1:11434"));
}
END_TEST

START_TEST(test_names) {
        char long_name[API_TOKEN_NAME_MAX + 2];

        ck_assert(api_token_name_valid("alice"));
        ck_assert(api_token_name_valid("ci-runner_2.prod"));
        ck_assert(!api_token_name_valid(""));
        ck_assert(!api_token_name_valid(NULL));
        ck_assert(!api_token_name_valid("al ice"));
        ck_assert(!api_token_name_valid("alice\n"));
        ck_assert(!api_token_name_valid("al/ice"));
        ck_assert(!api_token_name_valid("é"));
        memset(long_name, 'a', API_TOKEN_NAME_MAX);
        long_name[API_TOKEN_NAME_MAX] = '\0';
        ck_assert(api_token_name_valid(long_name));
        long_name[API_TOKEN_NAME_MAX] = 'a';
        long_name[API_TOKEN_NAME_MAX + 1] = '\0';
        ck_assert(!api_token_name_valid(long_name));
}
END_TEST

typedef struct Problems {
        unsigned lines[16];
        unsigned n;
} Problems;

static void record(unsigned line, const char *problem, void *userdata) {
        Problems *p = userdata;

        ck_assert_ptr_nonnull(problem);
        if (p->n < ELEMENTSOF(p->lines))
                p->lines[p->n++] = line;
}

START_TEST(test_parse_and_find) {
        _cleanup_(api_tokens_freep) ApiTokens *t = NULL;
        _cleanup_free_ char *text = NULL;
        char a[65], b[65], c[65];
        uint8_t h[API_TOKEN_HASH_SIZE];
        Problems p = {};
        const ApiToken *tok;

        hash_hex("myc_secret-a", a);
        hash_hex("myc_secret-b", b);
        hash_hex("myc_secret-c", c);
        ck_assert_int_ge(asprintf(&text,
                                  "# a comment\n"
                                  "\n"
                                  "alice %s\n"                  /* 3 */
                                  "  bob\t%s  llama3.2,qwen2.5:7b \r\n" /* 4: spaces, tab, CRLF */
                                  "alice %s\n"                  /* 5: the name again */
                                  "carol %s\n"                  /* 6: bob's hash again */
                                  "dave %.63s\n"                /* 7: a short hash */
                                  "bad/name %s\n"               /* 8 */
                                  "erin %s llama3.2 extra\n"    /* 9 */
                                  "frank %s ,llama3.2\n"        /* 10: an empty model */
                                  "   # indented comment\n"
                                  "grace %s",                   /* 12: no newline at the end */
                                  a, b, c, b, c, c, c, c, c), 0);

        ck_assert_int_eq(api_tokens_parse(text, strlen(text), record, &p, &t), 0);
        ck_assert_uint_eq(t->n, 3);
        ck_assert_str_eq(t->tokens[0].name, "alice");
        ck_assert_uint_eq(t->tokens[0].n_models, 0);
        ck_assert_str_eq(t->tokens[1].name, "bob");
        ck_assert_uint_eq(t->tokens[1].n_models, 2);
        ck_assert_str_eq(t->tokens[1].models[0], "llama3.2");
        ck_assert_str_eq(t->tokens[1].models[1], "qwen2.5:7b");
        ck_assert_str_eq(t->tokens[2].name, "grace");
        ck_assert_uint_eq(p.n, 6);
        ck_assert_uint_eq(p.lines[0], 5);
        ck_assert_uint_eq(p.lines[1], 6);
        ck_assert_uint_eq(p.lines[2], 7);
        ck_assert_uint_eq(p.lines[3], 8);
        ck_assert_uint_eq(p.lines[4], 9);
        ck_assert_uint_eq(p.lines[5], 10);
        /* grace's hash is c, which no line kept before it has (alice's second one was dropped). */

        api_token_hash("myc_secret-a", strlen("myc_secret-a"), h);
        tok = api_tokens_find(t, h);
        ck_assert_ptr_nonnull(tok);
        ck_assert_str_eq(tok->name, "alice");
        api_token_hash("myc_secret-b", strlen("myc_secret-b"), h);
        ck_assert_str_eq(api_tokens_find(t, h)->name, "bob");
        api_token_hash("myc_secret-", strlen("myc_secret-"), h);
        ck_assert_ptr_null(api_tokens_find(t, h));
        ck_assert_ptr_null(api_tokens_find(NULL, h));
        ck_assert_str_eq(api_tokens_find_name(t, "bob")->name, "bob");
        ck_assert_ptr_null(api_tokens_find_name(t, "Bob"));
}
END_TEST

START_TEST(test_parse_nul_and_long_lines) {
        _cleanup_(api_tokens_freep) ApiTokens *t = NULL;
        _cleanup_free_ char *text = NULL;
        char a[65];
        Problems p = {};
        size_t n;

        hash_hex("x", a);
        /* A NUL inside a line makes it invalid rather than cutting it short. */
        n = (size_t) asprintf(&text, "alice %s\nbob %s\n", a, a);
        text[3] = '\0';
        ck_assert_int_eq(api_tokens_parse(text, n, record, &p, &t), 0);
        ck_assert_uint_eq(t->n, 1);
        ck_assert_str_eq(t->tokens[0].name, "bob");
        ck_assert_uint_eq(p.n, 1);
        ck_assert_uint_eq(p.lines[0], 1);
        t = api_tokens_free(t);
        free(text);

        text = malloc(API_TOKENS_LINE_MAX + 100);
        memset(text, 'a', API_TOKENS_LINE_MAX + 99);
        text[API_TOKENS_LINE_MAX + 99] = '\n';
        p = (Problems) {};
        ck_assert_int_eq(api_tokens_parse(text, API_TOKENS_LINE_MAX + 100, record, &p, &t), 0);
        ck_assert_uint_eq(t->n, 0);
        ck_assert_uint_eq(p.n, 1);

        t = api_tokens_free(t);
        ck_assert_int_eq(api_tokens_parse("", 0, NULL, NULL, &t), 0);
        ck_assert_uint_eq(t->n, 0);
}
END_TEST

START_TEST(test_hash) {
        char hex[65];

        /* FIPS 180-2's "abc". */
        hash_hex("abc", hex);
        ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
END_TEST

START_TEST(test_line_format_round_trip) {
        _cleanup_(api_tokens_freep) ApiTokens *t = NULL;
        _cleanup_free_ char *line = NULL, *line2 = NULL;
        char *models[] = { (char *) "llama3.2", (char *) "nomic-embed-text:v1.5" };
        uint8_t h[API_TOKEN_HASH_SIZE];
        char hex[65];

        api_token_hash("myc_s", 5, h);
        hash_hex("myc_s", hex);
        ck_assert_int_eq(api_token_line_format("alice", h, NULL, 0, &line), 0);
        ck_assert_str_eq(line + 6, hex);
        ck_assert(strneq(line, "alice ", 6));
        ck_assert_int_eq(api_token_line_format("bob", h, models, 2, &line2), 0);
        ck_assert_int_eq(api_tokens_parse(line2, strlen(line2), NULL, NULL, &t), 0);
        ck_assert_uint_eq(t->n, 1);
        ck_assert_uint_eq(t->tokens[0].n_models, 2);
        ck_assert_str_eq(t->tokens[0].models[1], "nomic-embed-text:v1.5");
        ck_assert_int_eq(memcmp(t->tokens[0].hash, h, sizeof(h)), 0);
        ck_assert_int_eq(api_token_line_format("no way", h, NULL, 0, &line), -EINVAL);
}
END_TEST

START_TEST(test_models_parse) {
        char **m = NULL;
        size_t n = 0;

        ck_assert_int_eq(api_token_models_parse("a,b:c,hf.co/x/y:Q4", &m, &n), 0);
        ck_assert_uint_eq(n, 3);
        ck_assert_str_eq(m[2], "hf.co/x/y:Q4");
        for (size_t i = 0; i < n; i++)
                free(m[i]);
        free(m);
        ck_assert_int_eq(api_token_models_parse("", &m, &n), -EINVAL);
        ck_assert_int_eq(api_token_models_parse("a,,b", &m, &n), -EINVAL);
        ck_assert_int_eq(api_token_models_parse("a,", &m, &n), -EINVAL);
        ck_assert_int_eq(api_token_models_parse("a b", &m, &n), -EINVAL);
        ck_assert_int_eq(api_token_models_parse("a\tb", &m, &n), -EINVAL);
}
END_TEST

START_TEST(test_bearer) {
        const char *s;
        size_t n;

        ck_assert_int_eq(api_token_bearer_parse("Bearer myc_abc", &s, &n), 0);
        ck_assert_uint_eq(n, 7);
        ck_assert(strneq(s, "myc_abc", n));
        ck_assert_int_eq(api_token_bearer_parse("bearer   myc_abc  ", &s, &n), 0);
        ck_assert_uint_eq(n, 7);
        ck_assert_int_eq(api_token_bearer_parse("BEARER\tx", &s, &n), 0);
        ck_assert_uint_eq(n, 1);
        ck_assert_int_eq(api_token_bearer_parse(NULL, &s, &n), -ENOENT);
        ck_assert_int_eq(api_token_bearer_parse("", &s, &n), -EINVAL);
        ck_assert_int_eq(api_token_bearer_parse("Bearer", &s, &n), -EINVAL);
        ck_assert_int_eq(api_token_bearer_parse("Bearer   ", &s, &n), -EINVAL);
        ck_assert_int_eq(api_token_bearer_parse("Bearerx abc", &s, &n), -EINVAL);
        ck_assert_int_eq(api_token_bearer_parse("Basic YWxpY2U6eA==", &s, &n), -EINVAL);
}
END_TEST

START_TEST(test_models_allowed) {
        char *models[] = { (char *) "llama3.2", (char *) "qwen2.5:7b" };
        ApiToken any = { .name = "any" };
        ApiToken some = { .name = "some", .models = models, .n_models = 2 };

        ck_assert(api_token_allows_model(&any, "whatever"));
        ck_assert(api_token_allows_model(&any, NULL));
        ck_assert(api_token_allows_model(&some, "llama3.2"));
        ck_assert(api_token_allows_model(&some, "llama3.2:latest"));
        ck_assert(api_token_allows_model(&some, "LLAMA3.2:Latest"));
        ck_assert(api_token_allows_model(&some, "qwen2.5:7b"));
        ck_assert(!api_token_allows_model(&some, "qwen2.5"));
        ck_assert(!api_token_allows_model(&some, "qwen2.5:latest"));
        ck_assert(!api_token_allows_model(&some, "llama3.2:1b"));
        ck_assert(!api_token_allows_model(&some, "llama3"));
        ck_assert(!api_token_allows_model(&some, ""));
        ck_assert(!api_token_allows_model(&some, NULL));
}
END_TEST

START_TEST(test_scope) {
        ck_assert_int_eq(shim_token_scope("GET", "/"), SHIM_TOKEN_SCOPE_OPEN);
        ck_assert_int_eq(shim_token_scope("HEAD", "/"), SHIM_TOKEN_SCOPE_OPEN);
        ck_assert_int_eq(shim_token_scope("OPTIONS", "/api/chat"), SHIM_TOKEN_SCOPE_OPEN);
        ck_assert_int_eq(shim_token_scope("POST", "/"), SHIM_TOKEN_SCOPE_MANAGE);
        ck_assert_int_eq(shim_token_scope("POST", "/api/chat"), SHIM_TOKEN_SCOPE_MODEL);
        /* GET /metrics: any token, a restricted one too (docs/metrics.md). */
        ck_assert_int_eq(shim_token_scope("GET", "/metrics"), SHIM_TOKEN_SCOPE_ANY);
        ck_assert_int_eq(shim_token_scope("POST", "/metrics"), SHIM_TOKEN_SCOPE_MANAGE);
        ck_assert_int_eq(shim_token_scope("POST", "/api/generate?x=1"), SHIM_TOKEN_SCOPE_MODEL);
        ck_assert_int_eq(shim_token_scope("POST", "/v1/chat/completions"), SHIM_TOKEN_SCOPE_MODEL);
        ck_assert_int_eq(shim_token_scope("POST", "/v1/embeddings"), SHIM_TOKEN_SCOPE_MODEL);
        ck_assert_int_eq(shim_token_scope("POST", "/api/show"), SHIM_TOKEN_SCOPE_MODEL);
        ck_assert_int_eq(shim_token_scope("GET", "/api/tags"), SHIM_TOKEN_SCOPE_ANY);
        ck_assert_int_eq(shim_token_scope("GET", "/api/ps"), SHIM_TOKEN_SCOPE_ANY);
        ck_assert_int_eq(shim_token_scope("GET", "/api/version"), SHIM_TOKEN_SCOPE_ANY);
        ck_assert_int_eq(shim_token_scope("GET", "/v1/models"), SHIM_TOKEN_SCOPE_ANY);
        ck_assert_int_eq(shim_token_scope("GET", "/v1/models/llama3.2"), SHIM_TOKEN_SCOPE_ANY);
        ck_assert_int_eq(shim_token_scope("POST", "/api/mycelia/collections"), SHIM_TOKEN_SCOPE_ANY);
        ck_assert_int_eq(shim_token_scope("GET", "/api/mycelia"), SHIM_TOKEN_SCOPE_ANY);
        ck_assert_int_eq(shim_token_scope("POST", "/api/myceliax"), SHIM_TOKEN_SCOPE_MANAGE);
        ck_assert_int_eq(shim_token_scope("POST", "/api/pull"), SHIM_TOKEN_SCOPE_MANAGE);
        ck_assert_int_eq(shim_token_scope("POST", "/api/create"), SHIM_TOKEN_SCOPE_MANAGE);
        ck_assert_int_eq(shim_token_scope("POST", "/api/copy"), SHIM_TOKEN_SCOPE_MANAGE);
        ck_assert_int_eq(shim_token_scope("DELETE", "/api/delete"), SHIM_TOKEN_SCOPE_MANAGE);
        ck_assert_int_eq(shim_token_scope("POST", "/api/blobs/sha256:00"), SHIM_TOKEN_SCOPE_MANAGE);
        ck_assert_int_eq(shim_token_scope("HEAD", "/api/blobs/sha256:00"), SHIM_TOKEN_SCOPE_MANAGE);
        /* What Ollama would decode to a model endpoint is not taken for one: refused. */
        ck_assert_int_eq(shim_token_scope("POST", "/api/%63hat"), SHIM_TOKEN_SCOPE_MANAGE);
        ck_assert_int_eq(shim_token_scope("GET", "/api/chat"), SHIM_TOKEN_SCOPE_MANAGE);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shim-tokens");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_auth_mode);
        tcase_add_test(tc, test_loopback);
        tcase_add_test(tc, test_auth_required);
        tcase_add_test(tc, test_names);
        tcase_add_test(tc, test_parse_and_find);
        tcase_add_test(tc, test_parse_nul_and_long_lines);
        tcase_add_test(tc, test_hash);
        tcase_add_test(tc, test_line_format_round_trip);
        tcase_add_test(tc, test_models_parse);
        tcase_add_test(tc, test_bearer);
        tcase_add_test(tc, test_models_allowed);
        tcase_add_test(tc, test_scope);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
