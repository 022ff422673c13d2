/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shimd/shim-stream.c: stream kind from Content-Type, chunk and token
 * counting across arbitrary chunk boundaries, done detection, the token counts the upstream
 * reports (for the audit trail), and the error objects. */
#include <inttypes.h>
#include <stdio.h>

#include "shim-stream.h"
#include "unit-test.h"

static const char ndjson[] =
        "{\"model\":\"m\",\"response\":\"a\",\"done\":false}\n"
        "{\"model\":\"m\",\"response\":\"\\\"done\\\":true\",\"done\":false}\n"
        "{\"model\":\"m\",\"response\":\"c\",\"done\":false}\n"
        "{\"model\":\"m\",\"response\":\"\",\"done\":true,\"done_reason\":\"stop\",\"eval_count\":3}\n";

static const char sse[] =
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":null}]}\n\n"
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"data: [DONE]\"},\"finish_reason\":null}]}\n\n"
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\"},\"finish_reason\":\"stop\"}]}\n\n"
        "data: [DONE]\n\n";

static void feed_str(ShimStream *s, const char *text) {
        shim_stream_feed(s, text, strlen(text));
}

static void feed_split(ShimStream *s, const char *text, size_t len, size_t step) {
        for (size_t i = 0; i < len; i += step)
                shim_stream_feed(s, text + i, MIN(step, len - i));
}

START_TEST(test_kind_from_content_type) {
        ck_assert_int_eq(shim_stream_kind_from_content_type("application/x-ndjson"), SHIM_STREAM_NDJSON);
        ck_assert_int_eq(shim_stream_kind_from_content_type("Application/X-NDJSON; charset=utf-8"), SHIM_STREAM_NDJSON);
        ck_assert_int_eq(shim_stream_kind_from_content_type("text/event-stream"), SHIM_STREAM_SSE);
        ck_assert_int_eq(shim_stream_kind_from_content_type("application/json; charset=utf-8"), SHIM_STREAM_JSON);
        ck_assert_int_eq(shim_stream_kind_from_content_type("application/jsonx"), SHIM_STREAM_RAW);
        ck_assert_int_eq(shim_stream_kind_from_content_type("text/plain; charset=utf-8"), SHIM_STREAM_RAW);
        ck_assert_int_eq(shim_stream_kind_from_content_type(NULL), SHIM_STREAM_RAW);
        ck_assert_str_eq(shim_stream_kind_to_string(SHIM_STREAM_SSE), "sse");
}
END_TEST

START_TEST(test_ndjson_any_split) {
        /* Every chunk size from 1 byte to the whole stream gives the same counts. */
        for (size_t step = 1; step <= sizeof(ndjson); step++) {
                ShimStream s;

                shim_stream_init(&s, SHIM_STREAM_NDJSON);
                feed_split(&s, ndjson, sizeof(ndjson) - 1, step);
                ck_assert_uint_eq(s.bytes, sizeof(ndjson) - 1);
                ck_assert_uint_eq(s.chunks, 4);
                /* The escaped "done":true inside a response is text, not the final chunk. */
                ck_assert_uint_eq(s.tokens, 3);
                ck_assert(s.done);
                ck_assert(!s.error_seen);
                ck_assert_uint_eq(s.trailing_newlines, 1);
        }
}
END_TEST

START_TEST(test_ndjson_every_two_piece_split) {
        for (size_t cut = 0; cut <= sizeof(ndjson) - 1; cut++) {
                ShimStream s;

                shim_stream_init(&s, SHIM_STREAM_NDJSON);
                shim_stream_feed(&s, ndjson, cut);
                shim_stream_feed(&s, ndjson + cut, sizeof(ndjson) - 1 - cut);
                ck_assert_uint_eq(s.chunks, 4);
                ck_assert_uint_eq(s.tokens, 3);
                ck_assert(s.done);
        }
}
END_TEST

START_TEST(test_ndjson_partial_and_errors) {
        ShimStream s;

        shim_stream_init(&s, SHIM_STREAM_NDJSON);
        feed_str(&s, "{\"response\":\"a\",\"done\":false}\n{\"respo");
        ck_assert_uint_eq(s.chunks, 1);
        ck_assert_uint_eq(s.tokens, 1);
        ck_assert(!s.done);
        /* Mid-line: the error object needs a newline first. */
        ck_assert_uint_eq(s.trailing_newlines, 0);
        ck_assert_str_eq(shim_stream_error_prefix(&s), "\n");

        feed_str(&s, "nse\":\"b\"}\n");
        ck_assert_str_eq(shim_stream_error_prefix(&s), "");
        feed_str(&s, "{\"error\":\"model crashed\"}\n");
        ck_assert(s.error_seen);
        ck_assert_uint_eq(s.chunks, 3);
        ck_assert_uint_eq(s.tokens, 2);
        ck_assert(!s.done);

        /* Blank lines and \r\n are not chunks. */
        shim_stream_init(&s, SHIM_STREAM_NDJSON);
        feed_str(&s, "\n\r\n{\"status\":\"pulling\"}\r\n{\"status\":\"success\"}\n");
        ck_assert_uint_eq(s.chunks, 2);
        ck_assert_uint_eq(s.tokens, 1);
        ck_assert(s.done);

        /* A pattern that restarts inside a partial match ("s of "status" then "success"). */
        shim_stream_init(&s, SHIM_STREAM_NDJSON);
        feed_str(&s, "{\"status\":\"status\":\"success\"}\n");
        ck_assert(s.done);
}
END_TEST

START_TEST(test_sse_any_split) {
        for (size_t step = 1; step <= sizeof(sse); step++) {
                ShimStream s;

                shim_stream_init(&s, SHIM_STREAM_SSE);
                feed_split(&s, sse, sizeof(sse) - 1, step);
                ck_assert_uint_eq(s.chunks, 4);
                /* Two content frames; the finish_reason frame and [DONE] are not tokens, and
                 * "data: [DONE]" inside content does not end the stream. */
                ck_assert_uint_eq(s.tokens, 2);
                ck_assert(s.done);
                ck_assert(!s.error_seen);
                ck_assert_uint_eq(s.trailing_newlines, 2);
                ck_assert_str_eq(shim_stream_error_prefix(&s), "");
        }
}
END_TEST

START_TEST(test_sse_framing) {
        ShimStream s;

        shim_stream_init(&s, SHIM_STREAM_SSE);
        /* CRLF framing, comment lines and events without data are not frames with data. */
        feed_str(&s, ": ping\r\n\r\nevent: x\n\ndata: {\"a\":1}\r\n\r\ndata: {\"b\":");
        ck_assert_uint_eq(s.chunks, 1);
        ck_assert_uint_eq(s.tokens, 1);
        ck_assert_str_eq(shim_stream_error_prefix(&s), "\n\n");
        feed_str(&s, "2}\n");
        ck_assert_str_eq(shim_stream_error_prefix(&s), "\n");
        feed_str(&s, "\n");
        ck_assert_uint_eq(s.chunks, 2);
        ck_assert_str_eq(shim_stream_error_prefix(&s), "");

        feed_str(&s, "data: {\"error\":{\"message\":\"x\"}}\n\n");
        ck_assert(s.error_seen);
        ck_assert_uint_eq(s.tokens, 2);
        ck_assert(!s.done);
}
END_TEST

START_TEST(test_raw_counts_bytes_only) {
        ShimStream s;

        shim_stream_init(&s, SHIM_STREAM_JSON);
        shim_stream_feed(&s, ndjson, sizeof(ndjson) - 1);
        ck_assert_uint_eq(s.bytes, sizeof(ndjson) - 1);
        ck_assert_uint_eq(s.chunks, 0);
        ck_assert_uint_eq(s.tokens, 0);
}
END_TEST

/* What the audit trail reads: Ollama's counts in the final object, OpenAI's usage, across every
 * split of the body into pieces; a count inside a string (its quotes escaped) is not one. */
START_TEST(test_usage_any_split) {
        static const struct {
                ShimStreamKind kind;
                const char *body;
                int64_t prompt, completion;
        } cases[] = {
                { SHIM_STREAM_NDJSON, ndjson, -1, 3 },
                { SHIM_STREAM_NDJSON,
                  "{\"response\":\"\\\"eval_count\\\":99\",\"done\":false}\n"
                  "{\"done\":true,\"prompt_eval_count\":26,\"prompt_eval_duration\":5,\"eval_count\":298,"
                  "\"eval_duration\":4}\n", 26, 298 },
                { SHIM_STREAM_JSON, "{\"model\":\"m\",\"response\":\"x\",\"done\":true,\"prompt_eval_count\":7,"
                  "\"eval_count\":12}", 7, 12 },
                { SHIM_STREAM_JSON, "{\"usage\": {\"prompt_tokens\": 10, \"completion_tokens\": 5, "
                  "\"total_tokens\": 15, \"prompt_tokens_details\": {\"cached_tokens\": 3}}}", 10, 5 },
                { SHIM_STREAM_SSE, sse, -1, -1 },
                { SHIM_STREAM_SSE,
                  "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"
                  "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":2}}\n\n"
                  "data: [DONE]\n\n", 11, 2 },
                /* A count that is not a number is no count; the last one seen wins. */
                { SHIM_STREAM_JSON, "{\"eval_count\":null,\"prompt_eval_count\":\"5\"}", -1, -1 },
                { SHIM_STREAM_NDJSON, "{\"eval_count\":1}\n{\"eval_count\":2}\n", -1, 2 },
                /* Past 10^15 it stops growing rather than wrap. */
                { SHIM_STREAM_JSON, "{\"eval_count\":99999999999999999999999}", -1, 1000000000000000LL },
        };

        for (size_t c = 0; c < ELEMENTSOF(cases); c++) {
                size_t len = strlen(cases[c].body);

                for (size_t step = 1; step <= len; step++) {
                        ShimStream s;

                        shim_stream_init(&s, cases[c].kind);
                        feed_split(&s, cases[c].body, len, step);
                        ck_assert_msg(s.prompt_tokens == cases[c].prompt && s.completion_tokens == cases[c].completion,
                                      "case %zu step %zu: %" PRId64 "+%" PRId64, c, step, s.prompt_tokens,
                                      s.completion_tokens);
                }
        }
}
END_TEST

START_TEST(test_usage_not_in_raw) {
        ShimStream s;

        shim_stream_init(&s, SHIM_STREAM_RAW);
        feed_str(&s, "{\"prompt_eval_count\":1,\"eval_count\":2}");
        ck_assert_int_eq(s.prompt_tokens, -1);
        ck_assert_int_eq(s.completion_tokens, -1);
}
END_TEST

START_TEST(test_error_forms) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;
        ShimErrorForm form;

        ck_assert_int_eq(shim_error_format(SHIM_ERROR_JSON, 502, "upstream \"x\"\n down\\", &a), 0);
        ck_assert_str_eq(a, "{\"error\":\"upstream \\\"x\\\"\\n down\\\\\"}");
        ck_assert_int_eq(shim_error_format(SHIM_ERROR_NDJSON, 200, "boom", &b), 0);
        ck_assert_str_eq(b, "{\"error\":\"boom\"}\n");
        ck_assert_int_eq(shim_error_format(SHIM_ERROR_SSE, 200, "boom", &c), 0);
        ck_assert_str_eq(c, "data: {\"error\":{\"message\":\"boom\",\"type\":\"api_error\",\"param\":null,\"code\":null}}\n\n");
        ck_assert_int_eq(shim_error_format(SHIM_ERROR_OPENAI, 404, "model 'x' not found", &d), 0);
        ck_assert_str_eq(d, "{\"error\":{\"message\":\"model 'x' not found\",\"type\":\"not_found_error\",\"param\":null,\"code\":null}}");
        ck_assert_int_eq(shim_error_format(SHIM_ERROR_JSON, 500, "\x01", &e), 0);
        ck_assert_str_eq(e, "{\"error\":\"\\u0001\"}");

        ck_assert_str_eq(shim_error_openai_type(400), "invalid_request_error");
        ck_assert_str_eq(shim_error_openai_type(502), "api_error");

        ck_assert_int_eq(shim_stream_error_form(SHIM_STREAM_NDJSON, &form), 0);
        ck_assert_int_eq(form, SHIM_ERROR_NDJSON);
        ck_assert_int_eq(shim_stream_error_form(SHIM_STREAM_SSE, &form), 0);
        ck_assert_int_eq(form, SHIM_ERROR_SSE);
        ck_assert_int_eq(shim_stream_error_form(SHIM_STREAM_JSON, &form), -EOPNOTSUPP);
        ck_assert_int_eq(shim_stream_error_form(SHIM_STREAM_RAW, &form), -EOPNOTSUPP);
}
END_TEST

static Suite *shim_stream_suite(void) {
        Suite *s = suite_create("shim-stream");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_kind_from_content_type);
        tcase_add_test(tc, test_ndjson_any_split);
        tcase_add_test(tc, test_ndjson_every_two_piece_split);
        tcase_add_test(tc, test_ndjson_partial_and_errors);
        tcase_add_test(tc, test_sse_any_split);
        tcase_add_test(tc, test_sse_framing);
        tcase_add_test(tc, test_raw_counts_bytes_only);
        tcase_add_test(tc, test_usage_any_split);
        tcase_add_test(tc, test_usage_not_in_raw);
        tcase_add_test(tc, test_error_forms);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(shim_stream_suite());
}
