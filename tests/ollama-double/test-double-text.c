/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests of the Ollama test double's pure core (deterministic text, not a language model):
 * token and embedding generation, model names, and the request-field parsing. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "double-text.h"
#include "unit-test.h"

START_TEST(test_fnv1a64) {
        ck_assert_uint_eq(double_text_fnv1a64(DOUBLE_TEXT_FNV_OFFSET, "", 0), UINT64_C(0xcbf29ce484222325));
        ck_assert_uint_eq(double_text_fnv1a64(DOUBLE_TEXT_FNV_OFFSET, "a", 1), UINT64_C(0xaf63dc4c8601ec8c));
        ck_assert_uint_eq(double_text_fnv1a64(DOUBLE_TEXT_FNV_OFFSET, "foobar", 6), UINT64_C(0x85944171f73967e8));
}
END_TEST

START_TEST(test_seed) {
        uint64_t a = double_text_seed("llama3.2", "Why is the sky blue?", 20);

        /* the tag, the default namespace and case do not change the text */
        ck_assert_uint_eq(a, double_text_seed("llama3.2:latest", "Why is the sky blue?", 20));
        ck_assert_uint_eq(a, double_text_seed("library/LLAMA3.2", "Why is the sky blue?", 20));
        ck_assert_uint_ne(a, double_text_seed("llama3.2:1b", "Why is the sky blue?", 20));
        ck_assert_uint_ne(a, double_text_seed("llama3.2", "Why is the sky green?", 21));
        /* the model and the text are separated, so "ab"+"c" is not "a"+"bc" */
        ck_assert_uint_ne(double_text_seed("ab", "c", 1), double_text_seed("a", "bc", 2));
}
END_TEST

START_TEST(test_tokens) {
        DoubleTextGen g;
        char tok[DOUBLE_TEXT_TOKEN_MAX], small[4];
        char *text = NULL, *text2 = NULL, *prefix = NULL;
        size_t used = 0;
        unsigned n = 0;
        int l;

        double_text_gen_init(&g, 42, 16);
        ck_assert_int_eq(double_text_gen_next(&g, small, sizeof(small)), -ENOBUFS);
        while ((l = double_text_gen_next(&g, tok, sizeof(tok))) > 0) {
                ck_assert_int_eq((int) strlen(tok), l);
                if (n == 0)
                        ck_assert(tok[0] >= 'A' && tok[0] <= 'Z');
                else
                        ck_assert(tok[0] >= 'a' && tok[0] <= 'z');
                if (n == 15)
                        ck_assert_int_eq(tok[l - 1], '.');
                else
                        ck_assert_int_eq(tok[l - 1], ' ');
                n++;
        }
        ck_assert_uint_eq(n, 16);
        ck_assert_int_eq(double_text_gen_next(&g, tok, sizeof(tok)), 0);

        ck_assert_int_eq(double_text_generate(42, 16, &text), 0);
        ck_assert_int_eq(double_text_generate(42, 16, &text2), 0);
        ck_assert_str_eq(text, text2);
        ck_assert_uint_eq(double_text_count_words(text, strlen(text)), 16);
        ck_assert_int_eq(text[strlen(text) - 1], '.');

        /* a shorter answer (num_predict) is a prefix of the longer, but for the final period */
        ck_assert_int_eq(double_text_generate(42, 5, &prefix), 0);
        used = strlen(prefix);
        ck_assert_int_eq(strncmp(prefix, text, used - 1), 0);
        ck_assert_int_eq(prefix[used - 1], '.');

        free(text);
        free(text2);
        free(prefix);

        /* a zero seed still varies */
        ck_assert_int_eq(double_text_generate(0, 8, &text), 0);
        ck_assert_uint_eq(double_text_count_words(text, strlen(text)), 8);
        free(text);
}
END_TEST

START_TEST(test_words) {
        const char *s = "  one\ttwo\nthree  ", *w;
        size_t pos = 0, l;

        ck_assert_uint_eq(double_text_count_words(s, strlen(s)), 3);
        ck_assert_uint_eq(double_text_count_words("", 0), 0);
        ck_assert_uint_eq(double_text_count_words(NULL, 0), 0);
        l = double_text_next_word(s, strlen(s), &pos, &w);
        ck_assert_uint_eq(l, 3);
        ck_assert_int_eq(strncmp(w, "one", 3), 0);
        l = double_text_next_word(s, strlen(s), &pos, &w);
        ck_assert_int_eq(strncmp(w, "two", l), 0);
        ck_assert_uint_eq(double_text_token_id("one", 3), double_text_token_id("one", 3));
        ck_assert(double_text_token_id("one", 3) >= 1 && double_text_token_id("one", 3) < 128000);
}
END_TEST

START_TEST(test_embedding) {
        float a[DOUBLE_TEXT_MAX_DIMENSIONS], b[8], c[8];
        double norm = 0, dot = 0, na = 0;

        ck_assert_int_eq(double_text_embedding("all-minilm", "hello", 5, 8, b), 0);
        ck_assert_int_eq(double_text_embedding("all-minilm:latest", "hello", 5, 8, c), 0);
        ck_assert_int_eq(memcmp(b, c, sizeof(b)), 0);
        for (int i = 0; i < 8; i++)
                norm += (double) b[i] * b[i];
        ck_assert_double_eq_tol(norm, 1.0, 1e-5);

        ck_assert_int_eq(double_text_embedding("all-minilm", "world", 5, 8, c), 0);
        ck_assert_int_ne(memcmp(b, c, sizeof(b)), 0);

        /* longer vectors start in the same direction, as Ollama's truncation has it */
        ck_assert_int_eq(double_text_embedding("all-minilm", "hello", 5, 16, a), 0);
        for (int i = 0; i < 8; i++) {
                dot += (double) a[i] * b[i];
                na += (double) a[i] * a[i];
        }
        ck_assert_double_eq_tol(dot / sqrt(na), 1.0, 1e-5);

        ck_assert_int_eq(double_text_embedding("m", "x", 1, DOUBLE_TEXT_MAX_DIMENSIONS, a), 0);
        ck_assert_int_eq(double_text_embedding("m", "x", 1, 0, a), -EINVAL);
        ck_assert_int_eq(double_text_embedding("m", "x", 1, DOUBLE_TEXT_MAX_DIMENSIONS + 1, a), -EINVAL);
}
END_TEST

static void check_normalize(const char *in, const char *want) {
        char *out = NULL;
        int r = double_text_model_normalize(in, &out);

        if (!want) {
                ck_assert_msg(r == -EINVAL, "'%s' should be invalid", in);
                return;
        }
        ck_assert_msg(r == 0, "'%s' should be valid", in);
        ck_assert_str_eq(out, want);
        free(out);
}

START_TEST(test_model_names) {
        char *ns = NULL;

        check_normalize("llama3.2", "llama3.2:latest");
        check_normalize("llama3.2:1b", "llama3.2:1b");
        check_normalize("registry.ollama.ai/library/llama3.2:1b", "llama3.2:1b");
        check_normalize("library/qwen2.5", "qwen2.5:latest");
        check_normalize("jmorgan/test", "jmorgan/test:latest");
        check_normalize("example.com:5000/ns/model:v1", "example.com:5000/ns/model:v1");
        check_normalize("", NULL);
        check_normalize("bad name", NULL);
        check_normalize(":tag", NULL);
        check_normalize("model:", NULL);
        check_normalize("-dash", NULL);
        check_normalize("a/b:c:d", NULL);
        ck_assert(!double_text_model_name_valid(NULL));

        ck_assert(double_text_model_equal("llama3.2", "llama3.2:latest"));
        ck_assert(double_text_model_equal("Llama3.2:LATEST", "llama3.2"));
        ck_assert(!double_text_model_equal("llama3.2:1b", "llama3.2"));
        ck_assert(!double_text_model_equal("", ""));

        ck_assert(double_text_model_is_embedding("all-minilm:latest"));
        ck_assert(double_text_model_is_embedding("nomic-embed-text"));
        ck_assert(!double_text_model_is_embedding("llama3.2"));

        ck_assert_int_eq(double_text_model_namespace("llama3.2", &ns), 0);
        ck_assert_str_eq(ns, "library");
        free(ns);
        ck_assert_int_eq(double_text_model_namespace("jmorgan/test:v1", &ns), 0);
        ck_assert_str_eq(ns, "jmorgan");
        free(ns);
}
END_TEST

static void check_duration(const char *s, int64_t want, const char *want_error) {
        int64_t ns = 12345;
        char *err = NULL;
        int r = double_text_parse_go_duration(s, &ns, &err);

        if (want_error) {
                ck_assert_int_eq(r, -EINVAL);
                ck_assert_str_eq(err, want_error);
                ck_assert_int_eq(ns, 12345);
                free(err);
                return;
        }
        ck_assert_int_eq(r, 0);
        ck_assert_int_eq(ns, want);
}

START_TEST(test_go_duration) {
        check_duration("0", 0, NULL);
        check_duration("5m", INT64_C(300000000000), NULL);
        check_duration("1h30m", INT64_C(5400000000000), NULL);
        check_duration("1.5s", INT64_C(1500000000), NULL);
        check_duration("-1s", -INT64_C(1000000000), NULL);
        check_duration("250ms", INT64_C(250000000), NULL);
        check_duration("3us", 3000, NULL);
        check_duration("-1", 0, "time: missing unit in duration \"-1\"");
        check_duration("10", 0, "time: missing unit in duration \"10\"");
        check_duration("10x", 0, "time: unknown unit \"x\" in duration \"10x\"");
        check_duration("", 0, "time: invalid duration \"\"");
        check_duration("m", 0, "time: invalid duration \"m\"");
}
END_TEST

static void check_keep_alive(const char *json, bool want_set, int64_t want, bool want_error) {
        json_object *v = json_tokener_parse(json);
        int64_t ns = 0;
        bool set = true;
        char *err = NULL;
        int r = double_text_parse_keep_alive(v, &ns, &set, &err);

        if (want_error) {
                ck_assert_int_eq(r, -EINVAL);
                ck_assert_ptr_nonnull(err);
                free(err);
        } else {
                ck_assert_int_eq(r, 0);
                ck_assert(set == want_set);
                ck_assert_int_eq(ns, want);
        }
        json_object_put(v);
}

START_TEST(test_keep_alive) {
        check_keep_alive("null", false, DOUBLE_TEXT_DEFAULT_KEEP_ALIVE_NS, false);
        check_keep_alive("0", true, 0, false);
        check_keep_alive("30", true, INT64_C(30000000000), false);
        check_keep_alive("1.5", true, INT64_C(1500000000), false);
        check_keep_alive("-1", true, DOUBLE_TEXT_KEEP_ALIVE_FOREVER, false);
        check_keep_alive("\"10m\"", true, INT64_C(600000000000), false);
        check_keep_alive("\"-1m\"", true, DOUBLE_TEXT_KEEP_ALIVE_FOREVER, false);
        check_keep_alive("\"0\"", true, 0, false);
        check_keep_alive("\"soon\"", false, 0, true);
        check_keep_alive("true", false, 0, true);
        check_keep_alive("[1]", false, 0, true);
}
END_TEST

START_TEST(test_num_predict) {
        json_object *o = json_tokener_parse("{\"num_predict\":5}");
        json_object *bad = json_tokener_parse("{\"num_predict\":\"five\"}");
        const char *reason = NULL;
        int64_t n = 0;
        char *err = NULL;

        ck_assert_int_eq(double_text_parse_num_predict(NULL, &n, &err), 0);
        ck_assert_int_eq(n, -1);
        ck_assert_int_eq(double_text_parse_num_predict(o, &n, &err), 0);
        ck_assert_int_eq(n, 5);
        ck_assert_int_eq(double_text_parse_num_predict(bad, &n, &err), -EINVAL);
        ck_assert_str_eq(err, "option \"num_predict\" must be of type integer");
        free(err);

        ck_assert_uint_eq(double_text_token_budget(16, -1, &reason), 16);
        ck_assert_str_eq(reason, "stop");
        ck_assert_uint_eq(double_text_token_budget(16, 5, &reason), 5);
        ck_assert_str_eq(reason, "length");
        ck_assert_uint_eq(double_text_token_budget(16, 16, &reason), 16);
        ck_assert_str_eq(reason, "stop");
        ck_assert_uint_eq(double_text_token_budget(16, 100, &reason), 16);
        ck_assert_str_eq(reason, "stop");
        ck_assert_uint_eq(double_text_token_budget(16, 0, &reason), 16);
        ck_assert_uint_eq(double_text_token_budget(DOUBLE_TEXT_MAX_TOKENS + 5, -1, &reason), DOUBLE_TEXT_MAX_TOKENS);

        json_object_put(o);
        json_object_put(bad);
}
END_TEST

static void check_parse_error(const char *body, const char *want) {
        json_object *o = NULL;
        char *err = NULL;

        ck_assert_int_eq(double_text_json_parse(body, strlen(body), &o, &err), -EINVAL);
        ck_assert_str_eq(err, want);
        ck_assert_ptr_null(o);
        free(err);
}

START_TEST(test_json_parse) {
        json_object *o = NULL;
        const char *s = NULL;
        char *err = NULL;
        int64_t i;
        double f;
        int b;

        check_parse_error("", "missing request body");
        check_parse_error(" \n\t", "missing request body");
        check_parse_error("{\"model\":", "unexpected EOF");
        check_parse_error("xyz", "invalid character 'x' looking for beginning of value");

        /* Go's Decoder reads one value and leaves the rest */
        ck_assert_int_eq(double_text_json_parse("{\"model\":\"m\"} junk", 18, &o, &err), 0);
        ck_assert_int_eq(double_text_json_get_string(o, "model", "GenerateRequest", &s, NULL, &err), 1);
        ck_assert_str_eq(s, "m");
        ck_assert_int_eq(double_text_json_get_string(o, "prompt", "GenerateRequest", &s, NULL, &err), 0);
        ck_assert_ptr_null(s);
        json_object_put(o);

        ck_assert_int_eq(double_text_json_parse("{\"model\":5,\"stream\":\"no\",\"dimensions\":1.5}", 43, &o, &err), 0);
        ck_assert_int_eq(double_text_json_get_string(o, "model", "GenerateRequest", &s, NULL, &err), -EINVAL);
        ck_assert_str_eq(err, "json: cannot unmarshal number into Go struct field GenerateRequest.model of type string");
        free(err);
        ck_assert_int_eq(double_text_json_get_bool(o, "stream", "GenerateRequest", &b, &err), -EINVAL);
        ck_assert_str_eq(err, "json: cannot unmarshal string into Go struct field GenerateRequest.stream of type bool");
        free(err);
        ck_assert_int_eq(double_text_json_get_int(o, "dimensions", "EmbedRequest", &i, &err), -EINVAL);
        free(err);
        ck_assert_int_eq(double_text_json_get_float(o, "dimensions", "faults", &f, &err), 1);
        ck_assert(f == 1.5);
        ck_assert_int_eq(double_text_json_get_float(o, "stream", "faults", &f, &err), -EINVAL);
        ck_assert_str_eq(err, "json: cannot unmarshal string into Go struct field faults.stream of type float64");
        free(err);
        ck_assert_int_eq(double_text_json_get_float(o, "absent", "faults", &f, &err), 0);
        ck_assert(f == 0);
        json_object_put(o);
        ck_assert_int_eq(double_text_json_parse("{\"n\":3}", 7, &o, &err), 0);
        ck_assert_int_eq(double_text_json_get_float(o, "n", "faults", &f, &err), 1);
        ck_assert(f == 3);
        json_object_put(o);

        ck_assert_int_eq(double_text_json_parse("[1]", 3, &o, &err), 0);
        ck_assert_int_eq(double_text_json_check_object(o, "api.GenerateRequest", &err), -EINVAL);
        ck_assert_str_eq(err, "json: cannot unmarshal array into Go value of type api.GenerateRequest");
        free(err);
        json_object_put(o);

        /* "null" is a valid, empty request */
        ck_assert_int_eq(double_text_json_parse("null", 4, &o, &err), 0);
        ck_assert_ptr_null(o);
        ck_assert_int_eq(double_text_json_check_object(o, "api.GenerateRequest", &err), 0);
}
END_TEST

START_TEST(test_messages) {
        json_object *m = json_tokener_parse("[{\"role\":\"system\",\"content\":\"be brief\"},"
                                            "{\"role\":\"user\",\"content\":\"why is the sky blue\"}]");
        json_object *parts = json_tokener_parse("[{\"role\":\"system\",\"content\":\"be brief\"},"
                                                "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"why is the sky blue\"}]}]");
        json_object *bad = json_tokener_parse("[{\"role\":\"user\",\"content\":5}]");
        char *text = NULL, *text2 = NULL, *err = NULL;
        size_t len = 0, len2 = 0;
        unsigned tokens = 0, tokens2 = 0;

        ck_assert_int_eq(double_text_messages_join(m, false, &text, &len, &tokens, &err), 0);
        ck_assert_str_eq(text, "be briefwhy is the sky blue");
        ck_assert_uint_eq(len, strlen(text));
        ck_assert_uint_eq(tokens, 2 + 2 + 5);

        /* OpenAI content parts give the same text, hence the same answer */
        ck_assert_int_eq(double_text_messages_join(parts, true, &text2, &len2, &tokens2, &err), 0);
        ck_assert_str_eq(text, text2);
        ck_assert_uint_eq(tokens, tokens2);
        free(text2);
        ck_assert_int_eq(double_text_messages_join(parts, false, &text2, &len2, &tokens2, &err), -EINVAL);
        free(err);

        ck_assert_int_eq(double_text_messages_join(bad, false, &text2, &len2, &tokens2, &err), -EINVAL);
        ck_assert_str_eq(err, "json: cannot unmarshal number into Go struct field Message.messages.content of type string");
        free(err);
        ck_assert_int_eq(double_text_messages_join(bad, true, &text2, &len2, &tokens2, &err), -EINVAL);
        ck_assert_str_eq(err, "invalid message content type: float64");
        free(err);

        free(text);
        ck_assert_int_eq(double_text_messages_join(NULL, false, &text, &len, &tokens, &err), 0);
        ck_assert_str_eq(text, "");
        ck_assert_uint_eq(tokens, 0);
        free(text);

        json_object_put(m);
        json_object_put(parts);
        json_object_put(bad);
}
END_TEST

START_TEST(test_gen_init_at) {
        char tok[DOUBLE_TEXT_TOKEN_MAX], tok2[DOUBLE_TEXT_TOKEN_MAX];
        DoubleTextGen g, h;

        for (unsigned k = 0; k <= 12; k++) {
                double_text_gen_init(&g, 7, 12);
                for (unsigned i = 0; i < k; i++)
                        ck_assert_int_gt(double_text_gen_next(&g, tok, sizeof(tok)), 0);
                double_text_gen_init_at(&h, 7, 12, k);
                ck_assert_uint_eq(h.index, k);
                for (;;) {
                        int l = double_text_gen_next(&g, tok, sizeof(tok));

                        ck_assert_int_eq(double_text_gen_next(&h, tok2, sizeof(tok2)), l);
                        if (l == 0)
                                break;
                        ck_assert_str_eq(tok, tok2);
                }
        }
        /* k beyond n stops at n */
        double_text_gen_init_at(&h, 7, 3, 10);
        ck_assert_uint_eq(h.index, 3);
        ck_assert_int_eq(double_text_gen_next(&h, tok, sizeof(tok)), 0);
}
END_TEST

/* The first k tokens of the n-token answer of seed, and the rest as a continuation from k gives it. */
static void split_answer(uint64_t seed, unsigned n, unsigned k, char **ret_prefix, char **ret_rest) {
        char tok[DOUBLE_TEXT_TOKEN_MAX];
        char *prefix = calloc(n + 1, DOUBLE_TEXT_TOKEN_MAX), *rest = calloc(n + 1, DOUBLE_TEXT_TOKEN_MAX);
        DoubleTextGen g;

        ck_assert_ptr_nonnull(prefix);
        ck_assert_ptr_nonnull(rest);
        double_text_gen_init(&g, seed, n);
        for (unsigned i = 0; i < k && double_text_gen_next(&g, tok, sizeof(tok)) > 0; i++)
                strcat(prefix, tok);
        double_text_gen_init_at(&g, seed, n, k);
        while (double_text_gen_next(&g, tok, sizeof(tok)) > 0)
                strcat(rest, tok);
        *ret_prefix = prefix;
        *ret_rest = rest;
}

START_TEST(test_continuation_skip) {
        static const uint64_t seeds[] = { 0, 1, 42, UINT64_C(0xdeadbeefcafef00d) };
        static const unsigned ns[] = { 1, 2, 5, 12, 16, 40 };

        for (size_t si = 0; si < sizeof(seeds) / sizeof(seeds[0]); si++)
                for (size_t ni = 0; ni < sizeof(ns) / sizeof(ns[0]); ni++) {
                        unsigned n = ns[ni];
                        char *whole = NULL;

                        ck_assert_int_eq(double_text_generate(seeds[si], n, &whole), 0);
                        for (unsigned k = 0; k <= n; k++) {
                                char *prefix = NULL, *rest = NULL, *joined = NULL;
                                unsigned got = UINT32_MAX;
                                size_t pl;

                                split_answer(seeds[si], n, k, &prefix, &rest);
                                pl = strlen(prefix);
                                ck_assert(double_text_continuation_skip(seeds[si], n, prefix, pl, &got));
                                ck_assert_uint_eq(got, k);
                                ck_assert_int_ge(asprintf(&joined, "%s%s", prefix, rest), 0);
                                ck_assert_str_eq(joined, whole);
                                free(joined);

                                /* not a token boundary, a changed byte, another seed: no skip */
                                got = UINT32_MAX;
                                if (pl > 1) {
                                        ck_assert(!double_text_continuation_skip(seeds[si], n, prefix, pl - 1, &got));
                                        prefix[pl / 2] ^= 0x20;
                                        ck_assert(!double_text_continuation_skip(seeds[si], n, prefix, pl, &got));
                                        prefix[pl / 2] ^= 0x20;
                                }
                                /* another seed (one or two tokens may agree by chance) */
                                if (k >= 4)
                                        ck_assert(!double_text_continuation_skip(seeds[si] + 1, n, prefix, pl, &got));
                                ck_assert_uint_eq(got, UINT32_MAX);
                                free(prefix);
                                free(rest);
                        }
                        /* more than the whole answer */
                        {
                                char *more = NULL;
                                unsigned got = 0;

                                ck_assert_int_ge(asprintf(&more, "%s ", whole), 0);
                                ck_assert(!double_text_continuation_skip(seeds[si], n, more, strlen(more), &got));
                                free(more);
                        }
                        free(whole);
                }

        {
                unsigned got = 1;

                ck_assert(!double_text_continuation_skip(42, 16, "Hello there ", 12, &got));
                ck_assert(double_text_continuation_skip(42, 16, NULL, 0, &got));
                ck_assert_uint_eq(got, 0);
        }
}
END_TEST

START_TEST(test_continuation_split) {
        static const char *const prompts[] = {
                "Why is the sky blue?",
                "x",
                "Tell me A story about The River.\n",
                "lowercase only, no capitals at all ",
        };
        static const unsigned ns[] = { 1, 3, 12, 16 };
        size_t split;
        unsigned k;

        for (size_t pi = 0; pi < sizeof(prompts) / sizeof(prompts[0]); pi++)
                for (size_t ni = 0; ni < sizeof(ns) / sizeof(ns[0]); ni++) {
                        const char *o = prompts[pi];
                        unsigned n = ns[ni];
                        uint64_t seed = double_text_seed("llama3.2", o, strlen(o));

                        /* the prompt alone: no answer part */
                        ck_assert(!double_text_continuation_split("llama3.2", n, o, strlen(o), &split, &k));

                        for (unsigned want = 1; want <= n; want++) {
                                char *prefix = NULL, *rest = NULL, *p = NULL;
                                size_t pl;

                                split_answer(seed, n, want, &prefix, &rest);
                                ck_assert_int_ge(asprintf(&p, "%s%s", o, prefix), 0);
                                pl = strlen(p);
                                split = 0;
                                k = 0;
                                ck_assert(double_text_continuation_split("llama3.2", n, p, pl, &split, &k));
                                ck_assert_uint_eq(split, strlen(o));
                                ck_assert_uint_eq(k, want);
                                /* the model is part of the seed */
                                ck_assert(!double_text_continuation_split("llama3.2:1b", n, p, pl, &split, &k));
                                /* a partial token, or text after the answer part: none */
                                ck_assert(!double_text_continuation_split("llama3.2", n, p, pl - 1, &split, &k));
                                p[pl - 1] = '!';
                                ck_assert(!double_text_continuation_split("llama3.2", n, p, pl, &split, &k));
                                free(p);
                                free(prefix);
                                free(rest);
                        }
                }

        /* unrelated text, and an answer part with nothing before it (an empty prompt only loads) */
        {
                char *whole = NULL;

                ck_assert(!double_text_continuation_split("llama3.2", 16, "Hello world. The river ", 23, &split, &k));
                ck_assert(!double_text_continuation_split("llama3.2", 16, "", 0, &split, &k));
                ck_assert(!double_text_continuation_split("llama3.2", 16, NULL, 0, &split, &k));
                ck_assert_int_eq(double_text_generate(double_text_seed("llama3.2", "", 0), 16, &whole), 0);
                ck_assert(!double_text_continuation_split("llama3.2", 16, whole, strlen(whole), &split, &k));
                free(whole);
        }
}
END_TEST

START_TEST(test_continuation_bounds) {
        const unsigned n = 3000;
        const char *o = "Continue, please: ";
        uint64_t seed = double_text_seed("llama3.2", o, strlen(o));
        size_t split, big = 8u << 20;
        char *prefix = NULL, *rest = NULL, *p = NULL, *huge;
        unsigned k;

        /* up to DOUBLE_TEXT_CONTINUE_MAX_TOKENS tokens are found, beyond that not */
        split_answer(seed, n, DOUBLE_TEXT_CONTINUE_MAX_TOKENS, &prefix, &rest);
        ck_assert_int_ge(asprintf(&p, "%s%s", o, prefix), 0);
        ck_assert(double_text_continuation_split("llama3.2", n, p, strlen(p), &split, &k));
        ck_assert_uint_eq(k, DOUBLE_TEXT_CONTINUE_MAX_TOKENS);
        ck_assert_uint_eq(split, strlen(o));
        free(p);
        free(prefix);
        free(rest);
        split_answer(seed, n, DOUBLE_TEXT_CONTINUE_MAX_TOKENS + 1, &prefix, &rest);
        ck_assert_int_ge(asprintf(&p, "%s%s", o, prefix), 0);
        ck_assert(!double_text_continuation_split("llama3.2", n, p, strlen(p), &split, &k));
        /* the chat rule has no such bound: the whole message is checked */
        ck_assert(double_text_continuation_skip(seed, n, prefix, strlen(prefix), &k));
        ck_assert_uint_eq(k, DOUBLE_TEXT_CONTINUE_MAX_TOKENS + 1);
        free(p);
        free(prefix);
        free(rest);

        /* a long prompt whose last capital is beyond the window is not searched */
        huge = malloc(big + 1);
        ck_assert_ptr_nonnull(huge);
        memset(huge, 'a', big);
        huge[0] = 'T';
        huge[big] = '\0';
        ck_assert(!double_text_continuation_split("llama3.2", 16, huge, big, &split, &k));
        huge[big - DOUBLE_TEXT_CONTINUE_MAX_BYTES - 1] = 'T';
        ck_assert(!double_text_continuation_split("llama3.2", 16, huge, big, &split, &k));
        free(huge);
}
END_TEST

START_TEST(test_trailing_assistant) {
        json_object *chat = json_tokener_parse("[{\"role\":\"user\",\"content\":\"hi\"},"
                                               "{\"role\":\"assistant\",\"content\":\"The river \",\"thinking\":\"hm\"}]");
        json_object *parts = json_tokener_parse("[{\"role\":\"user\",\"content\":\"hi\"},"
                                                "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"The \"},"
                                                "{\"type\":\"text\",\"text\":\"river \"}]}]");
        json_object *user = json_tokener_parse("[{\"role\":\"assistant\",\"content\":\"x\"},{\"role\":\"user\",\"content\":\"hi\"}]");
        char *text = NULL, *whole = NULL, *err = NULL;
        size_t len = 0, wlen = 0;
        unsigned tokens;

        ck_assert_int_eq(double_text_messages_trailing_assistant(chat, false, &text, &len), 1);
        ck_assert_str_eq(text, "The river ");
        ck_assert_uint_eq(len, 10);
        ck_assert_int_eq(double_text_messages_join(chat, false, &whole, &wlen, &tokens, &err), 0);
        ck_assert_uint_eq(wlen - len, 2);
        ck_assert_int_eq(strncmp(whole, "hi", wlen - len), 0);
        free(text);
        free(whole);

        ck_assert_int_eq(double_text_messages_trailing_assistant(parts, true, &text, &len), 1);
        ck_assert_str_eq(text, "The river ");
        free(text);

        ck_assert_int_eq(double_text_messages_trailing_assistant(user, false, &text, &len), 0);
        ck_assert_int_eq(double_text_messages_trailing_assistant(NULL, false, &text, &len), 0);

        json_object_put(chat);
        json_object_put(parts);
        json_object_put(user);
}
END_TEST

START_TEST(test_digest) {
        uint8_t d[32];
        char hex[65];
        const char *s = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

        ck_assert_int_eq(double_text_parse_digest(s, d), 0);
        double_text_hex(d, 32, hex);
        ck_assert_str_eq(hex, s + 7);
        ck_assert_int_eq(double_text_parse_digest("sha256-e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", d), 0);
        ck_assert_int_eq(double_text_parse_digest("sha256:e3b0", d), -EINVAL);
        ck_assert_int_eq(double_text_parse_digest("md5:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", d), -EINVAL);
        ck_assert_int_eq(double_text_parse_digest("sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", d), -EINVAL);
        ck_assert_int_eq(double_text_parse_digest(NULL, d), -EINVAL);
}
END_TEST

START_TEST(test_listen) {
        char *host = NULL;
        uint16_t port = 0;

        ck_assert_int_eq(double_text_parse_listen("127.0.0.1:11435", &host, &port), 0);
        ck_assert_str_eq(host, "127.0.0.1");
        ck_assert_uint_eq(port, 11435);
        free(host);
        ck_assert_int_eq(double_text_parse_listen("[::1]:0", &host, &port), 0);
        ck_assert_str_eq(host, "::1");
        ck_assert_uint_eq(port, 0);
        free(host);
        ck_assert_int_eq(double_text_parse_listen(":8080", &host, &port), 0);
        ck_assert_str_eq(host, "0.0.0.0");
        free(host);
        ck_assert_int_eq(double_text_parse_listen("localhost", &host, &port), -EINVAL);
        ck_assert_int_eq(double_text_parse_listen("a:99999", &host, &port), -EINVAL);
        ck_assert_int_eq(double_text_parse_listen("a:", &host, &port), -EINVAL);
        ck_assert_int_eq(double_text_parse_listen("::1:80", &host, &port), -EINVAL);
}
END_TEST

START_TEST(test_host_allowed) {
        ck_assert(double_text_host_allowed(NULL, "box"));
        ck_assert(double_text_host_allowed("", "box"));
        ck_assert(double_text_host_allowed("localhost:11434", "box"));
        ck_assert(double_text_host_allowed("127.0.0.1:11434", "box"));
        ck_assert(double_text_host_allowed("[::1]:11434", "box"));
        ck_assert(double_text_host_allowed("192.168.1.20", "box"));
        ck_assert(double_text_host_allowed("10.0.0.1:80", "box"));
        ck_assert(double_text_host_allowed("172.20.0.1", "box"));
        ck_assert(double_text_host_allowed("box:11434", "box"));
        ck_assert(double_text_host_allowed("node1.local", "box"));
        ck_assert(double_text_host_allowed("api.internal:1", "box"));
        ck_assert(double_text_host_allowed("a.localhost", "box"));
        ck_assert(!double_text_host_allowed("example.com", "box"));
        ck_assert(!double_text_host_allowed("8.8.8.8:11434", "box"));
        ck_assert(!double_text_host_allowed("172.32.0.1", "box"));
        ck_assert(!double_text_host_allowed("evil.localhost.com", "box"));
}
END_TEST

START_TEST(test_format) {
        char buf[64];
        float values[] = { 0.1f, -0.3333333f, 1.0f, 1e-7f, 0.12345679f };

        ck_assert_int_gt(double_text_format_rfc3339nano(0, 0, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "1970-01-01T00:00:00Z");
        ck_assert_int_gt(double_text_format_rfc3339nano(1700000000, 500000000, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "2023-11-14T22:13:20.5Z");
        ck_assert_int_gt(double_text_format_rfc3339nano(1700000000, 123456789, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "2023-11-14T22:13:20.123456789Z");
        ck_assert_int_eq(double_text_format_rfc3339nano(0, 0, buf, 5), -ENOBUFS);

        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
                ck_assert_int_gt(double_text_format_float32(values[i], buf, sizeof(buf)), 0);
                ck_assert(strtof(buf, NULL) == values[i]);
        }
        ck_assert_int_gt(double_text_format_float32(0.1f, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "0.1");
        ck_assert_int_eq(double_text_format_float32(NAN, buf, sizeof(buf)), -EINVAL);
}
END_TEST

static Suite *double_text_suite(void) {
        Suite *s = suite_create("double-text");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_fnv1a64);
        tcase_add_test(tc, test_seed);
        tcase_add_test(tc, test_tokens);
        tcase_add_test(tc, test_words);
        tcase_add_test(tc, test_embedding);
        tcase_add_test(tc, test_model_names);
        tcase_add_test(tc, test_go_duration);
        tcase_add_test(tc, test_keep_alive);
        tcase_add_test(tc, test_num_predict);
        tcase_add_test(tc, test_json_parse);
        tcase_add_test(tc, test_messages);
        tcase_add_test(tc, test_gen_init_at);
        tcase_add_test(tc, test_continuation_skip);
        tcase_add_test(tc, test_continuation_split);
        tcase_add_test(tc, test_continuation_bounds);
        tcase_add_test(tc, test_trailing_assistant);
        tcase_add_test(tc, test_digest);
        tcase_add_test(tc, test_listen);
        tcase_add_test(tc, test_host_allowed);
        tcase_add_test(tc, test_format);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(double_text_suite());
}
