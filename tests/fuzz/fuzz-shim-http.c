/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the upstream response parser of shimd (shim-http.c): the head, then the body framing
 * (Content-Length, chunked with extensions and trailers, to EOF) fed in pieces.
 * Input: one flags byte (bit 0: the answer to a HEAD; the rest: piece size), then the response. */
#include "fuzz.h"
#include "shim-http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        ShimHttpResponse *resp;
        ShimHttpBody body;
        const char *p;
        size_t piece, left;
        bool head_request;
        ssize_t n;

        if (size < 1)
                return 0;
        head_request = data[0] & 1;
        piece = 1 + (data[0] >> 1);
        p = (const char *) data + 1;
        left = size - 1;

        resp = malloc(sizeof(*resp));   /* 1.6 kB: not on the stack of every run */
        if (!resp)
                return 0;
        n = shim_http_response_parse(p, left, resp);
        if (n <= 0)
                goto finish;
        fuzz_check((size_t) n <= left && (size_t) n == resp->head_len);
        fuzz_check(resp->n_headers <= SHIM_HTTP_HEADERS_MAX);
        for (unsigned i = 0; i < resp->n_headers; i++) {
                fuzz_check((size_t) resp->headers[i].name + resp->headers[i].name_len <= (size_t) n);
                fuzz_check((size_t) resp->headers[i].value + resp->headers[i].value_len <= (size_t) n);
        }
        fuzz_check(resp->content_type < (int) resp->n_headers && resp->connection < (int) resp->n_headers);

        shim_http_body_init(&body, shim_http_response_body_kind(resp, head_request), resp->content_length);
        p += n;
        left -= (size_t) n;
        while (left > 0 && !body.done) {
                size_t k = MIN(piece, left), payload = 0;
                ssize_t used;

                used = shim_http_body_feed(&body, p, k, &payload);
                if (used < 0)
                        break;
                /* Progress on every call that is not done: a stall would hang the proxy. */
                fuzz_check(used > 0 || body.done);
                fuzz_check((size_t) used <= k && (payload == 0 || payload == (size_t) used));
                p += used;
                left -= (size_t) used;
        }

finish:
        free(resp);
        return 0;
}
