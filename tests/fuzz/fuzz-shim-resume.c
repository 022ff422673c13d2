/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes resuming a stream (shim-resume.c): the lines a serving node sends, before and after a
 * cut, and the continuation body made from a client's request. Input: the first byte picks the
 * API and where the cut comes; then the client's body up to a line "--", then the upstream's
 * lines. */
#include <json-c/json.h>
#include <string.h>

#include "fuzz.h"
#include "shim-resume.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        json_object *request = NULL;
        ShimResume r;
        ShimResumeApi api;
        size_t cut, n_line = 0, body_len = 0;
        const uint8_t *body = data + 1;
        char *next = NULL;
        size_t next_len;

        if (size < 1)
                return 0;
        api = (ShimResumeApi) (data[0] % _SHIM_RESUME_API_MAX);
        cut = data[0] >> 2;
        data++;
        size--;
        /* The request: everything up to a line "--". */
        while (body_len < size) {
                const uint8_t *nl = memchr(data + body_len, '\n', size - body_len);

                if (!nl)
                        break;
                if ((size_t) (nl - data) >= body_len + 2 && memcmp(nl - 2, "--", 2) == 0 &&
                    (nl - data == 2 || nl[-3] == '\n')) {
                        body_len = (size_t) (nl - data) - 2;
                        break;
                }
                body_len = (size_t) (nl - data) + 1;
        }
        if (body_len <= size && body_len < (1U << 20)) {
                char *s = fuzz_strndup(body, body_len);

                if (s) {
                        request = json_tokener_parse(s);
                        free(s);
                }
        }
        (void) shim_resume_request_refusal(api, request);

        shim_resume_init(&r, api, 4096, 2);
        shim_resume_part_start(&r, 1);
        while (size > 0) {
                size_t len;
                const uint8_t *line = fuzz_next_line(&data, &size, &len);
                char *rewritten = NULL;
                size_t rewritten_len = 0;
                ShimResumeLine k;

                k = shim_resume_line(&r, (const char *) line, len, 10 + n_line, &rewritten, &rewritten_len);
                fuzz_check(k != SHIM_RESUME_LINE_REWRITTEN || (rewritten && strlen(rewritten) == rewritten_len));
                fuzz_check(k == SHIM_RESUME_LINE_REWRITTEN || !rewritten);
                free(rewritten);
                fuzz_check(r.text.len + r.thinking.len <= r.max_bytes);
                if (++n_line == cut && shim_resume_possible(&r, NULL) && request) {
                        if (shim_resume_body(&r, request, &next, &next_len) >= 0) {
                                fuzz_check(strlen(next) == next_len);
                                free(next);
                                next = NULL;
                        }
                        shim_resume_begin(&r, 100 + n_line);
                }
        }
        shim_resume_done(&r);
        json_object_put(request);
        return 0;
}
