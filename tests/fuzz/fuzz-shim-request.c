/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes what shimd reads of a client's request before any I/O (shim-request.c): the method and
 * target, a header name and value, and the "model" scanner over a body cut into pieces.
 * Input: METHOD "\n" TARGET "\n" BODY. */
#include <sys/uio.h>

#include "fuzz.h"
#include "shim-request.h"

/* The model of body read in pieces of n bytes (the chunks of an evbuffer). */
static int extract_in_pieces(const uint8_t *body, size_t size, size_t n, char **ret) {
        struct iovec iov[64];
        size_t n_iov = 0, off = 0;

        while (off < size && n_iov < ELEMENTSOF(iov) - 1) {
                size_t k = MIN(n, size - off);

                iov[n_iov++] = (struct iovec) { .iov_base = (void *) (body + off), .iov_len = k };
                off += k;
        }
        if (off < size)
                iov[n_iov++] = (struct iovec) { .iov_base = (void *) (body + off), .iov_len = size - off };
        return shim_request_extract_model(iov, n_iov, ret);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *method_p, *uri_p;
        size_t method_size, uri_size, piece;
        char *method, *uri, *whole = NULL, *split = NULL;
        ShimRequestClass cls;
        uint64_t length;
        int r_whole, r_split;

        piece = size > 0 ? 1 + data[0] % 16 : 1;
        method_p = fuzz_next_line(&data, &size, &method_size);
        uri_p = fuzz_next_line(&data, &size, &uri_size);
        method = fuzz_strndup(method_p, method_size);
        uri = fuzz_strndup(uri_p, uri_size);
        if (!method || !uri)
                goto finish;

        shim_request_classify(method, uri, &cls);
        (void) shim_uri_is(uri, "/api/chat");
        (void) shim_uri_is(uri, "/v1/chat/completions");
        /* The same strings as a header name, a Connection value and a Content-Length. */
        (void) shim_header_classify(method);
        (void) shim_header_is_hop_by_hop(method, uri);
        if (shim_content_length_parse(uri, &length) >= 0) {
                char buf[256];

                shim_limit_body_message(uri, length, buf, sizeof(buf));
        }

        /* The body whole and in pieces: the scanner must not care where the chunks end. */
        r_whole = extract_in_pieces(data, size, size > 0 ? size : 1, &whole);
        r_split = extract_in_pieces(data, size, piece, &split);
        fuzz_check(r_whole == r_split);
        fuzz_check(r_whole < 0 || streq(whole, split));

finish:
        free(whole);
        free(split);
        free(method);
        free(uri);
        return 0;
}
