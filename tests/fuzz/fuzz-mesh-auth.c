/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the X-Mycelia-Auth verifier (common/mesh-auth.c) as a peer's request reaches it: a fixed
 * mesh key, clock and request line, the header value and the body from the input; and checks
 * that what mesh_auth_sign() makes for that body verifies.
 * Input: the header value, "\n", the body. */
#include <sys/uio.h>

#include "fuzz.h"
#include "mesh-auth.h"

#define FUZZ_NOW 1700000000ULL

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const uint8_t mesh_key[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
        const uint8_t nonce[MESH_AUTH_NONCE_SIZE] = { 1, 2, 3, 4, 5, 6, 7, 8 };
        const uint8_t *value_p;
        size_t value_size;
        char *value, signed_value[MESH_AUTH_VALUE_MAX];
        struct iovec body[2];
        MeshAuthRequest req;
        MeshAuthKey key;
        int r;

        value_p = fuzz_next_line(&data, &size, &value_size);
        value = fuzz_strndup(value_p, value_size);
        if (!value)
                return 0;
        fuzz_check(mesh_auth_key_derive(mesh_key, sizeof(mesh_key), &key) == 0);

        /* The body in two pieces, as an evbuffer may hold it. */
        body[0] = (struct iovec) { .iov_base = (void *) data, .iov_len = size / 2 };
        body[1] = (struct iovec) { .iov_base = (void *) (data + size / 2), .iov_len = size - size / 2 };
        req = (MeshAuthRequest) {
                .method = "POST",
                .uri = "/api/chat",
                .node_id = "0123456789abcdef0123456789abcdef",
                .body = body,
                .n_body = 2,
        };

        r = mesh_auth_verify(&key, &req, FUZZ_NOW, value);
        fuzz_check(IN_SET(r, 0, -EBADMSG, -ETIME, -EKEYREJECTED));
        (void) mesh_header_is_ours(value);

        fuzz_check(mesh_auth_sign(&key, &req, FUZZ_NOW, nonce, signed_value, sizeof(signed_value)) == 0);
        fuzz_check(mesh_auth_verify(&key, &req, FUZZ_NOW + 30, signed_value) == 0);

        mesh_auth_key_wipe(&key);
        free(value);
        return 0;
}
