/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/shimd/shim-http.c: status line and headers, the limits, body
 * framing by Content-Length, chunked and EOF, and every split of the bytes. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shim-http.h"
#include "unit-test.h"

static ShimHttpResponse resp;

static ssize_t parse(const char *s) {
        return shim_http_response_parse(s, strlen(s), &resp);
}

START_TEST(test_status_and_headers) {
        const char *h = "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                        "Date:  Sat \r\nTransfer-Encoding: chunked\r\n\r\nbody";

        ck_assert_int_eq(parse(h), (ssize_t) (strlen(h) - 4));
        ck_assert_int_eq(resp.status, 200);
        ck_assert_int_eq(resp.minor, 1);
        ck_assert_int_eq(resp.reason_len, 2);
        ck_assert(strncmp(h + resp.reason, "OK", 2) == 0);
        ck_assert_int_eq(resp.n_headers, 3);
        ck_assert_int_eq(resp.content_type, 0);
        ck_assert_int_eq(resp.headers[1].value_len, 3);
        ck_assert(strncmp(h + resp.headers[1].value, "Sat", 3) == 0);
        ck_assert(resp.chunked);
        ck_assert(resp.keep_alive);
        ck_assert_int_eq(shim_http_response_body_kind(&resp, false), SHIM_HTTP_BODY_CHUNKED);
        ck_assert_int_eq(shim_http_response_body_kind(&resp, true), SHIM_HTTP_BODY_NONE);

        ck_assert_int_gt(parse("HTTP/1.1 404 Not Found\nContent-Length: 5\n\n"), 0);
        ck_assert_int_eq(resp.status, 404);
        ck_assert_int_eq(shim_http_response_body_kind(&resp, false), SHIM_HTTP_BODY_LENGTH);
        ck_assert_uint_eq(resp.content_length, 5);

        ck_assert_int_gt(parse("HTTP/1.1 204\r\n\r\n"), 0);
        ck_assert_int_eq(resp.reason_len, 0);
        ck_assert_int_eq(shim_http_response_body_kind(&resp, false), SHIM_HTTP_BODY_NONE);
        ck_assert_int_gt(parse("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"), 0);
        ck_assert_int_eq(shim_http_response_body_kind(&resp, false), SHIM_HTTP_BODY_NONE);
        ck_assert_int_gt(parse("HTTP/1.1 100 Continue\r\n\r\n"), 0);
        ck_assert_int_eq(resp.status, 100);
        ck_assert_int_gt(parse("HTTP/1.1 200 OK\r\n\r\n"), 0);
        ck_assert_int_eq(shim_http_response_body_kind(&resp, false), SHIM_HTTP_BODY_EOF);
}
END_TEST

START_TEST(test_connection) {
        ck_assert_int_gt(parse("HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\n\r\n"), 0);
        ck_assert(!resp.keep_alive);
        ck_assert_int_eq(resp.connection, 0);
        ck_assert_int_gt(parse("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"), 0);
        ck_assert(!resp.keep_alive);
        ck_assert_int_gt(parse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"), 0);
        ck_assert(resp.keep_alive);
        ck_assert_int_gt(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), 0);
        ck_assert(!resp.keep_alive);
        ck_assert_int_eq(shim_http_response_body_kind(&resp, false), SHIM_HTTP_BODY_EOF);
        ck_assert_int_gt(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"), 0);
        ck_assert(!resp.keep_alive);
        ck_assert_int_eq(shim_http_response_body_kind(&resp, false), SHIM_HTTP_BODY_CHUNKED);
}
END_TEST

START_TEST(test_invalid) {
        ck_assert_int_eq(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"), -EAGAIN);
        ck_assert_int_eq(parse("HTTP/1.1 20"), -EAGAIN);
        ck_assert_int_eq(parse("HTT"), -EAGAIN);
        ck_assert_int_eq(parse("XTTP/1.1 200 OK\r\n\r\n"), -EBADMSG);
        ck_assert_int_eq(parse("HTTP/2.0 200 OK\r\n\r\n"), -EBADMSG);
        ck_assert_int_eq(parse("HTTP/1.1 2x0 OK\r\n\r\n"), -EBADMSG);
        ck_assert_int_eq(parse("HTTP/1.1 099 OK\r\n\r\n"), -EBADMSG);
        ck_assert_int_eq(parse("HTTP/1.1 2000 OK\r\n\r\n"), -EBADMSG);
        ck_assert_int_eq(parse("HTTP/1.1 200 OK\r\nNo colon\r\n\r\n"), -EBADMSG);
        ck_assert_int_eq(parse("HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n"), -EBADMSG);
        ck_assert_int_eq(parse("HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n"), -EBADMSG);
        ck_assert_int_eq(parse("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), -EBADMSG);
        ck_assert_int_eq(parse("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n"), -EBADMSG);
        ck_assert_int_eq(parse("HTTP/1.1 200 OK\r\nA: b\x01\r\n\r\n"), -EBADMSG);
}
END_TEST

START_TEST(test_limits) {
        size_t size = SHIM_HTTP_HEAD_MAX + 64, n = 0;
        char *big = malloc(size + 1);

        ck_assert_ptr_nonnull(big);
        n += (size_t) sprintf(big, "HTTP/1.1 200 OK\r\n");
        for (unsigned i = 0; i < SHIM_HTTP_HEADERS_MAX + 1; i++)
                n += (size_t) sprintf(big + n, "X-%u: v\r\n", i);
        n += (size_t) sprintf(big + n, "\r\n");
        ck_assert_int_eq(shim_http_response_parse(big, n, &resp), -E2BIG);

        memset(big, 'a', size);
        memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
        ck_assert_int_eq(shim_http_response_parse(big, size, &resp), -E2BIG);
        ck_assert_int_eq(shim_http_response_parse(big, SHIM_HTTP_HEAD_MAX - 1, &resp), -EAGAIN);
        free(big);
}
END_TEST

/* Feeds text in pieces of step bytes; returns the payload, *done when the body ended. */
static int decode(ShimHttpBodyKind kind, uint64_t cl, const char *text, size_t step, char *out, bool *done,
                  size_t *used) {
        ShimHttpBody b;
        size_t len = strlen(text), o = 0, i = 0;

        shim_http_body_init(&b, kind, cl);
        while (i < len && !b.done) {
                size_t piece = MIN(step, len - i), off = 0;

                while (off < piece) {
                        size_t payload;
                        ssize_t n = shim_http_body_feed(&b, text + i + off, piece - off, &payload);

                        if (n < 0)
                                return (int) n;
                        if (n == 0)
                                break;
                        ck_assert(payload == 0 || payload == (size_t) n);
                        memcpy(out + o, text + i + off, payload);
                        o += payload;
                        off += (size_t) n;
                }
                i += off;
                if (off < piece)
                        break;
        }
        out[o] = 0;
        *done = b.done;
        *used = i;
        return 0;
}

START_TEST(test_chunked_any_split) {
        static const char wire[] = "5;ext=1\r\nhello\r\n1A\r\n{\"response\":\"abcdefghijk\"}\r\n"
                                   "0\r\nTrailer: x\r\n\r\nNEXT";
        char out[256];
        bool done;
        size_t used;

        for (size_t step = 1; step <= sizeof(wire); step++) {
                ck_assert_int_eq(decode(SHIM_HTTP_BODY_CHUNKED, 0, wire, step, out, &done, &used), 0);
                ck_assert(done);
                ck_assert_str_eq(out, "hello{\"response\":\"abcdefghijk\"}");
                ck_assert_uint_eq(used, strlen(wire) - 4);
        }
        ck_assert_int_eq(decode(SHIM_HTTP_BODY_CHUNKED, 0, "5\r\nhello\r\n", 3, out, &done, &used), 0);
        ck_assert(!done);
        ck_assert_int_eq(decode(SHIM_HTTP_BODY_CHUNKED, 0, "0\n\n", 1, out, &done, &used), 0);
        ck_assert(done);
        ck_assert_int_eq(decode(SHIM_HTTP_BODY_CHUNKED, 0, "g\r\n", 1, out, &done, &used), -EBADMSG);
        ck_assert_int_eq(decode(SHIM_HTTP_BODY_CHUNKED, 0, "2\r\nabX", 1, out, &done, &used), -EBADMSG);
        ck_assert_int_eq(decode(SHIM_HTTP_BODY_CHUNKED, 0, "fffffffffffffffff\r\n", 1, out, &done, &used), -E2BIG);
}
END_TEST

START_TEST(test_chunk_limits) {
        size_t n = SHIM_HTTP_CHUNK_LINE_MAX + 16;
        char *line = malloc(n + 8), out[8];
        bool done;
        size_t used;

        ck_assert_ptr_nonnull(line);
        memset(line, 'x', n);
        memcpy(line, "1;", 2);
        strcpy(line + n, "\r\n");
        ck_assert_int_eq(decode(SHIM_HTTP_BODY_CHUNKED, 0, line, 7, out, &done, &used), -E2BIG);
        free(line);
}
END_TEST

START_TEST(test_length_and_eof) {
        char out[64];
        bool done;
        size_t used;

        for (size_t step = 1; step < 12; step++) {
                ck_assert_int_eq(decode(SHIM_HTTP_BODY_LENGTH, 5, "helloEXTRA", step, out, &done, &used), 0);
                ck_assert(done);
                ck_assert_str_eq(out, "hello");
                ck_assert_uint_eq(used, 5);
                ck_assert_int_eq(decode(SHIM_HTTP_BODY_EOF, 0, "all of it", step, out, &done, &used), 0);
                ck_assert(!done);
                ck_assert_str_eq(out, "all of it");
        }
        ck_assert_int_eq(decode(SHIM_HTTP_BODY_NONE, 0, "x", 1, out, &done, &used), 0);
        ck_assert(done);
        ck_assert_str_eq(out, "");
}
END_TEST

START_TEST(test_head_any_split) {
        static const char wire[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 3\r\n\r\nabc";
        size_t head = strlen(wire) - 3;

        for (size_t n = 0; n < head; n++)
                ck_assert_int_eq(shim_http_response_parse(wire, n, &resp), -EAGAIN);
        ck_assert_int_eq(shim_http_response_parse(wire, strlen(wire), &resp), (ssize_t) head);
        ck_assert_int_eq(resp.content_type, 0);
}
END_TEST

static Suite *shim_http_suite(void) {
        Suite *s = suite_create("shim-http");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_status_and_headers);
        tcase_add_test(tc, test_connection);
        tcase_add_test(tc, test_invalid);
        tcase_add_test(tc, test_limits);
        tcase_add_test(tc, test_chunked_any_split);
        tcase_add_test(tc, test_chunk_limits);
        tcase_add_test(tc, test_length_and_eof);
        tcase_add_test(tc, test_head_any_split);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(shim_http_suite());
}
