/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes blob digests and the blobs an /api/create body names (services/shimd/shim-blobs.c).
 * Input: the body (also taken as a digest string). */
#include "fuzz.h"
#include "json-document.h"
#include "shim-blobs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        json_object *body = NULL;
        ShimCreateBlobs *blobs;
        char *s;

        s = fuzz_strndup(data, size);
        if (!s)
                return 0;
        if (shim_digest_valid(s))
                fuzz_check(strlen(s) == SHIM_DIGEST_LEN);
        free(s);

        if (json_document_parse(data, size, &body) < 0)
                return 0;
        blobs = malloc(sizeof(*blobs));
        if (blobs && shim_create_blobs(body, blobs) >= 0) {
                fuzz_check(blobs->n <= SHIM_CREATE_BLOBS_MAX);
                for (size_t i = 0; i < blobs->n; i++)
                        fuzz_check(shim_digest_valid(blobs->digest[i]));
        }
        free(blobs);
        json_object_put(body);
        return 0;
}
