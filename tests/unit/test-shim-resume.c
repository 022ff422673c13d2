/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shimd/shim-resume.c: which requests may be resumed, the text kept,
 * the continuation body, and the splice: NDJSON and SSE lines across the join, byte for byte,
 * with the final object's counts covering both parts. */
#include <stdio.h>
#include <string.h>

#include "json-cleanup.h"
#include "shim-resume.h"
#include "unit-test.h"

static const char *const words[] = { "The ", "sky ", "is ", "blue ", "because ", "of ", "Rayleigh ", "scattering." };
#define N_WORDS ELEMENTSOF(words)

/* Feeds one line and appends what the client gets (with its '\n') to out. */
static ShimResumeLine feed(ShimResume *r, const char *line, usec_t now, char *out, size_t size) {
        _cleanup_free_ char *rewritten = NULL;
        size_t len = 0;
        ShimResumeLine k;

        k = shim_resume_line(r, line, strlen(line), now, &rewritten, &len);
        if (k == SHIM_RESUME_LINE_FAILED)
                return k;
        if (k == SHIM_RESUME_LINE_REWRITTEN)
                ck_assert_uint_eq(strlen(rewritten), len);
        strncat(out, k == SHIM_RESUME_LINE_REWRITTEN ? rewritten : line, size - strlen(out) - 1);
        strncat(out, "\n", size - strlen(out) - 1);
        return k;
}

static void chat_line(char *buf, size_t size, const char *content) {
        snprintf(buf, size, "{\"model\":\"m\",\"created_at\":\"t\",\"message\":{\"role\":\"assistant\",\"content\":\"%s\"},\"done\":false}",
                 content);
}

static json_object *parse(const char *s) {
        json_object *o = json_tokener_parse(s);

        ck_assert_ptr_nonnull(o);
        return o;
}

START_TEST(test_refusals) {
        static const struct {
                ShimResumeApi api;
                const char *body;
                bool ok;
        } cases[] = {
                { SHIM_RESUME_CHAT, "{\"model\":\"m\",\"messages\":[]}", true },
                { SHIM_RESUME_CHAT, "{\"model\":\"m\",\"messages\":[],\"stream\":true}", true },
                { SHIM_RESUME_CHAT, "{\"model\":\"m\",\"messages\":[],\"stream\":false}", false },
                { SHIM_RESUME_CHAT, "{\"model\":\"m\",\"messages\":[],\"format\":\"json\"}", false },
                { SHIM_RESUME_CHAT, "{\"model\":\"m\",\"messages\":[],\"format\":{\"type\":\"object\"}}", false },
                { SHIM_RESUME_CHAT, "{\"model\":\"m\",\"messages\":[],\"format\":null}", true },
                { SHIM_RESUME_GENERATE_RAW, "{\"model\":\"m\",\"prompt\":\"p\"}", false },
                { SHIM_RESUME_GENERATE_RAW, "{\"model\":\"m\",\"prompt\":\"p\",\"raw\":true}", true },
                { SHIM_RESUME_GENERATE_RAW, "{\"model\":\"m\",\"prompt\":\"p\",\"raw\":true,\"context\":[1,2]}", false },
                { SHIM_RESUME_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[]}", false },
                { SHIM_RESUME_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[],\"stream\":true}", true },
                { SHIM_RESUME_OPENAI_CHAT,
                  "{\"model\":\"m\",\"messages\":[],\"stream\":true,\"response_format\":{\"type\":\"json_object\"}}", false },
                { SHIM_RESUME_OPENAI_CHAT, "{\"model\":\"m\",\"messages\":[],\"stream\":true,\"response_format\":{\"type\":\"text\"}}",
                  true },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(json_object_putp) json_object *o = parse(cases[i].body);
                const char *why = shim_resume_request_refusal(cases[i].api, o);

                ck_assert_msg((why == NULL) == cases[i].ok, "case %zu (%s): %s", i, cases[i].body, why ?: "accepted");
        }
        ck_assert_ptr_nonnull(shim_resume_request_refusal(SHIM_RESUME_CHAT, NULL));
}
END_TEST

/* The whole answer in one stream, and the same answer cut after k lines and continued: the
 * client sees the same lines but the final one, which says it was resumed and counts both. */
START_TEST(test_ndjson_splice) {
        for (size_t k = 1; k < N_WORDS; k++) {
                _cleanup_(json_object_putp) json_object *body = NULL, *cont = NULL, *final = NULL;
                json_object *v = NULL;
                _cleanup_free_ char *next = NULL;
                char whole[4096] = "", joined[4096] = "", line[512], *last;
                ShimResume r;
                size_t next_len;

                shim_resume_init(&r, SHIM_RESUME_CHAT, 1024, 1);
                shim_resume_part_start(&r, 1000);
                for (size_t i = 0; i < N_WORDS; i++) {
                        chat_line(line, sizeof(line), words[i]);
                        strcat(whole, line);
                        strcat(whole, "\n");
                }
                for (size_t i = 0; i < k; i++) {
                        chat_line(line, sizeof(line), words[i]);
                        ck_assert_int_eq(feed(&r, line, 2000 + i * 100, joined, sizeof(joined)), SHIM_RESUME_LINE_RELAY);
                }
                /* The serving node's shim ended the stream with an error object: held back. */
                ck_assert_int_eq(feed(&r, "{\"error\":\"upstream failed\"}", 3000, joined, sizeof(joined)),
                                 SHIM_RESUME_LINE_FAILED);
                ck_assert(shim_resume_possible(&r, NULL));
                ck_assert_uint_eq(r.tokens, k);

                body = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"why?\"}],"
                             "\"options\":{\"seed\":7,\"temperature\":0,\"num_predict\":100},\"keep_alive\":\"5m\"}");
                ck_assert_int_eq(shim_resume_body(&r, body, &next, &next_len), 0);
                ck_assert_uint_eq(strlen(next), next_len);
                cont = parse(next);
                ck_assert(json_object_object_get_ex(cont, "messages", &v));
                ck_assert_uint_eq(json_object_array_length(v), 2);
                {
                        json_object *m = json_object_array_get_idx(v, 1), *role, *content, *options, *np, *seed;
                        char text[1024] = "";

                        for (size_t i = 0; i < k; i++)
                                strcat(text, words[i]);
                        ck_assert(json_object_object_get_ex(m, "role", &role));
                        ck_assert_str_eq(json_object_get_string(role), "assistant");
                        ck_assert(json_object_object_get_ex(m, "content", &content));
                        ck_assert_str_eq(json_object_get_string(content), text);
                        ck_assert(json_object_object_get_ex(cont, "options", &options));
                        ck_assert(json_object_object_get_ex(options, "num_predict", &np));
                        ck_assert_int_eq(json_object_get_int64(np), 100 - (int64_t) k);
                        ck_assert(json_object_object_get_ex(options, "seed", &seed));
                        ck_assert_int_eq(json_object_get_int64(seed), 7);
                }
                /* The client's body is left as it was, for a second resume. */
                ck_assert_uint_eq(json_object_array_length(json_object_object_get(body, "messages")), 1);

                shim_resume_begin(&r, 4000);
                ck_assert(!shim_resume_possible(&r, NULL));     /* one attempt was the budget */
                for (size_t i = k; i < N_WORDS; i++) {
                        chat_line(line, sizeof(line), words[i]);
                        ck_assert_int_eq(feed(&r, line, 5000 + i * 100, joined, sizeof(joined)), SHIM_RESUME_LINE_RELAY);
                }
                ck_assert_int_eq(feed(&r, "{\"model\":\"m\",\"created_at\":\"t\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},"
                                          "\"done\":true,\"done_reason\":\"stop\",\"total_duration\":1000,\"eval_count\":5,"
                                          "\"eval_duration\":500}",
                                 6000, joined, sizeof(joined)),
                                 SHIM_RESUME_LINE_REWRITTEN);
                /* Every line before the final one is the uninterrupted stream's, byte for byte. */
                ck_assert_int_eq(strncmp(joined, whole, strlen(whole)), 0);
                last = joined + strlen(whole);
                ck_assert_ptr_nonnull(strchr(last, '\n'));
                *strchr(last, '\n') = '\0';
                final = parse(last);
                ck_assert_int_eq(json_object_get_int64(json_object_object_get(final, "eval_count")), 5 + (int64_t) k);
                /* First text (2000) to the cut (4000), and the attempt (1000) to the cut, in ns. */
                ck_assert_int_eq(json_object_get_int64(json_object_object_get(final, "eval_duration")), 500 + 2000 * 1000);
                ck_assert_int_eq(json_object_get_int64(json_object_object_get(final, "total_duration")), 1000 + 3000 * 1000);
                ck_assert_int_eq(json_object_get_int64(json_object_object_get(final, SHIM_RESUME_FIELD)), 1);
                ck_assert_str_eq(json_object_get_string(json_object_object_get(final, "done_reason")), "stop");
                shim_resume_done(&r);
        }
}
END_TEST

static void sse_data(char *buf, size_t size, const char *id, const char *content, const char *finish) {
        snprintf(buf, size,
                 "data: {\"id\":\"%s\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,"
                 "\"delta\":{\"role\":\"assistant\",\"content\":\"%s\"},\"finish_reason\":%s}]}",
                 id, content, finish);
}

START_TEST(test_sse_splice) {
        _cleanup_(json_object_putp) json_object *body = NULL, *cont = NULL;
        _cleanup_free_ char *next = NULL;
        char out[8192] = "", line[512], expect[8192] = "";
        ShimResume r;
        size_t next_len, k = 3;

        shim_resume_init(&r, SHIM_RESUME_OPENAI_CHAT, 1024, 2);
        shim_resume_part_start(&r, 0);
        for (size_t i = 0; i < k; i++) {
                sse_data(line, sizeof(line), "chatcmpl-1", words[i], "null");
                ck_assert_int_eq(feed(&r, line, 10, out, sizeof(out)), SHIM_RESUME_LINE_RELAY);
                ck_assert_int_eq(feed(&r, "", 10, out, sizeof(out)), SHIM_RESUME_LINE_RELAY);
                strcat(expect, line);
                strcat(expect, "\n\n");
        }
        ck_assert_str_eq(out, expect);
        ck_assert_str_eq(r.id, "chatcmpl-1");
        ck_assert_int_eq(feed(&r, "data: {\"error\":{\"message\":\"cut\",\"type\":\"api_error\"}}", 20, out, sizeof(out)),
                         SHIM_RESUME_LINE_FAILED);

        body = parse("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"why?\"}],\"stream\":true,\"max_tokens\":4}");
        ck_assert_int_eq(shim_resume_body(&r, body, &next, &next_len), 0);
        cont = parse(next);
        ck_assert_int_eq(json_object_get_int64(json_object_object_get(cont, "max_tokens")), 1);

        shim_resume_begin(&r, 30);
        ck_assert(shim_resume_possible(&r, NULL));      /* two attempts: one left */
        /* The continuation's chunks get the first part's id; the last says it was resumed. */
        sse_data(line, sizeof(line), "chatcmpl-99", words[k], "null");
        ck_assert_int_eq(feed(&r, line, 40, out, sizeof(out)), SHIM_RESUME_LINE_REWRITTEN);
        ck_assert_int_eq(feed(&r, "", 40, out, sizeof(out)), SHIM_RESUME_LINE_RELAY);
        sse_data(line, sizeof(line), "chatcmpl-99", "", "\"length\"");
        ck_assert_int_eq(feed(&r, line, 50, out, sizeof(out)), SHIM_RESUME_LINE_REWRITTEN);
        ck_assert_int_eq(feed(&r, "", 50, out, sizeof(out)), SHIM_RESUME_LINE_RELAY);
        ck_assert_int_eq(feed(&r,
                              "data: {\"id\":\"chatcmpl-99\",\"object\":\"chat.completion.chunk\",\"choices\":[],"
                              "\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1,\"total_tokens\":10}}",
                              60, out, sizeof(out)),
                         SHIM_RESUME_LINE_REWRITTEN);
        ck_assert_int_eq(feed(&r, "", 60, out, sizeof(out)), SHIM_RESUME_LINE_RELAY);
        ck_assert_int_eq(feed(&r, "data: [DONE]", 60, out, sizeof(out)), SHIM_RESUME_LINE_RELAY);
        ck_assert_ptr_null(strstr(out, "chatcmpl-99"));
        ck_assert_ptr_nonnull(strstr(out, "\"content\":\"blue \""));
        ck_assert_ptr_nonnull(strstr(out, "\"completion_tokens\":4,\"total_tokens\":13}"));
        ck_assert_ptr_nonnull(strstr(out, "\"finish_reason\":\"length\"}],\"" SHIM_RESUME_FIELD "\":1}"));
        /* Every frame is complete: a data line, then a blank line. */
        ck_assert_ptr_null(strstr(out, "}\ndata:"));
        ck_assert(strlen(out) > 2 && strcmp(out + strlen(out) - 13, "data: [DONE]\n") == 0);
        shim_resume_done(&r);
}
END_TEST

START_TEST(test_not_resumable) {
        _cleanup_(json_object_putp) json_object *body = NULL;
        _cleanup_free_ char *next = NULL;
        char out[4096] = "", line[512];
        const char *why;
        ShimResume r;
        size_t len;

        /* A tool call in progress. */
        shim_resume_init(&r, SHIM_RESUME_CHAT, 1024, 1);
        chat_line(line, sizeof(line), "The ");
        (void) feed(&r, line, 1, out, sizeof(out));
        (void) feed(&r,
                    "{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{}}}]},"
                    "\"done\":false}",
                    2, out, sizeof(out));
        ck_assert(!shim_resume_possible(&r, &why));
        ck_assert_str_eq(why, "a tool call");
        ck_assert_ptr_null(r.text.data);
        shim_resume_done(&r);

        /* More text than the bound. */
        shim_resume_init(&r, SHIM_RESUME_CHAT, 10, 1);
        chat_line(line, sizeof(line), "0123456789");
        (void) feed(&r, line, 1, out, sizeof(out));
        ck_assert(shim_resume_possible(&r, NULL));
        chat_line(line, sizeof(line), "x");
        (void) feed(&r, line, 2, out, sizeof(out));
        ck_assert(!shim_resume_possible(&r, &why));
        ck_assert_str_eq(why, "longer than resume_max_bytes");
        shim_resume_done(&r);

        /* A line that is not JSON, and thinking in a raw generate. */
        shim_resume_init(&r, SHIM_RESUME_GENERATE_RAW, 100, 1);
        ck_assert_int_eq(feed(&r, "{\"response\":\"a\",", 1, out, sizeof(out)), SHIM_RESUME_LINE_RELAY);
        ck_assert(!shim_resume_possible(&r, NULL));
        shim_resume_done(&r);
        shim_resume_init(&r, SHIM_RESUME_GENERATE_RAW, 100, 1);
        (void) feed(&r, "{\"response\":\"\",\"thinking\":\"hm\",\"done\":false}", 1, out, sizeof(out));
        ck_assert(!shim_resume_possible(&r, NULL));
        shim_resume_done(&r);

        /* No attempts configured. */
        shim_resume_init(&r, SHIM_RESUME_CHAT, 100, 0);
        ck_assert(!shim_resume_possible(&r, &why));
        ck_assert_str_eq(why, "resume_attempts spent");
        shim_resume_done(&r);

        /* num_predict already produced: nothing to continue. */
        shim_resume_init(&r, SHIM_RESUME_GENERATE_RAW, 100, 1);
        (void) feed(&r, "{\"response\":\"a \",\"done\":false}", 1, out, sizeof(out));
        (void) feed(&r, "{\"response\":\"b \",\"done\":false}", 1, out, sizeof(out));
        body = parse("{\"model\":\"m\",\"prompt\":\"say: \",\"raw\":true,\"options\":{\"num_predict\":2}}");
        ck_assert_int_eq(shim_resume_body(&r, body, &next, &len), -ENOSPC);
        shim_resume_done(&r);
}
END_TEST

START_TEST(test_generate_raw_body) {
        _cleanup_(json_object_putp) json_object *body = NULL, *cont = NULL;
        _cleanup_free_ char *next = NULL;
        char out[4096] = "";
        ShimResume r;
        size_t len;

        shim_resume_init(&r, SHIM_RESUME_GENERATE_RAW, 100, 1);
        (void) feed(&r, "{\"model\":\"m\",\"response\":\"Sky \\\"is\\\" \",\"done\":false}", 1, out, sizeof(out));
        (void) feed(&r, "{\"model\":\"m\",\"response\":\"blue/\",\"done\":false}", 2, out, sizeof(out));
        body = parse("{\"model\":\"m\",\"prompt\":\"Q: why? A: \",\"raw\":true,\"stream\":true}");
        ck_assert_int_eq(shim_resume_body(&r, body, &next, &len), 0);
        cont = parse(next);
        ck_assert_str_eq(json_object_get_string(json_object_object_get(cont, "prompt")), "Q: why? A: Sky \"is\" blue/");
        ck_assert(json_object_get_boolean(json_object_object_get(cont, "raw")));
        /* Slashes are not escaped (Go does not either). */
        ck_assert_ptr_nonnull(strstr(next, "blue/"));
        shim_resume_done(&r);

        /* Nothing relayed yet: the request as the client sent it. */
        shim_resume_init(&r, SHIM_RESUME_GENERATE_RAW, 100, 1);
        free(next);
        next = NULL;
        ck_assert_int_eq(shim_resume_body(&r, body, &next, &len), 0);
        ck_assert_ptr_nonnull(strstr(next, "\"prompt\":\"Q: why? A: \""));
        shim_resume_done(&r);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shim-resume");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_refusals);
        tcase_add_test(tc, test_ndjson_splice);
        tcase_add_test(tc, test_sse_splice);
        tcase_add_test(tc, test_not_resumable);
        tcase_add_test(tc, test_generate_raw_body);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
