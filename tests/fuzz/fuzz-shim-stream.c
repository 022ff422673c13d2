/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the accounting of relayed responses (shim-stream.c): NDJSON lines and SSE frames counted
 * as they go by, in pieces. Input: a Content-Type line, then the body; the first byte of the body
 * also picks the piece size. */
#include "fuzz.h"
#include "shim-stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t *ct_p;
        size_t ct_size, piece;
        ShimStream whole, split;
        ShimErrorForm form;
        char *ct, *err = NULL;

        ct_p = fuzz_next_line(&data, &size, &ct_size);
        ct = fuzz_strndup(ct_p, ct_size);
        if (!ct)
                return 0;
        piece = size > 0 ? 1 + data[0] % 32 : 1;

        shim_stream_init(&whole, shim_stream_kind_from_content_type(ct));
        shim_stream_init(&split, whole.kind);
        (void) shim_stream_kind_to_string(whole.kind);
        shim_stream_feed(&whole, data, size);
        for (size_t off = 0; off < size; off += piece)
                shim_stream_feed(&split, data + off, MIN(piece, size - off));

        /* Counting must not depend on where the reads ended. */
        fuzz_check(whole.bytes == size && split.bytes == size);
        fuzz_check(whole.chunks == split.chunks && whole.tokens == split.tokens);
        fuzz_check(whole.done == split.done && whole.error_seen == split.error_seen);
        fuzz_check(whole.tokens <= whole.chunks);

        (void) shim_stream_error_prefix(&whole);
        if (shim_stream_error_form(whole.kind, &form) >= 0 && shim_error_format(form, 502, ct, &err) >= 0)
                fuzz_check(err && strlen(err) > 0);

        free(err);
        free(ct);
        return 0;
}
