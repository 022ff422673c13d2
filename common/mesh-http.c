/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* X-Mycelia-Auth on libevent HTTP requests: the mesh key in, headers signed and checked over an
 * evbuffer body read in place. See mesh-http.h; the authenticator itself is mesh-auth.c. */
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "evbuffer-util.h"
#include "mesh-http.h"
#include "mesh-key.h"

int mesh_http_key_load(const char *path, MeshAuthKey *ret) {
        uint8_t key[MESH_KEY_SIZE];
        int r;

        if (isempty(path))
                return -ENOENT;
        r = mesh_key_load(path, key);
        if (r < 0)
                return r;
        r = mesh_auth_key_derive(key, sizeof(key), ret);
        explicit_bzero(key, sizeof(key));
        return r;
}

int mesh_http_sign(const MeshAuthKey *k, const char *method, const char *target, const char *node_id,
                   struct evbuffer *body, char value[static MESH_AUTH_VALUE_MAX]) {
        struct iovec small[16], *vec = small, *heap = NULL;
        uint8_t nonce[MESH_AUTH_NONCE_SIZE];
        int n = 0, r;

        if (body) {
                n = evbuffer_iovecs(body, small, ELEMENTSOF(small), &vec, &heap);
                if (n < 0)
                        return n;
        }
        randombytes_buf(nonce, sizeof(nonce));
        r = mesh_auth_sign(k,
                           &(MeshAuthRequest) {
                                   .method = method,
                                   .uri = target,
                                   .node_id = node_id,
                                   .body = vec,
                                   .n_body = (size_t) n,
                           },
                           (uint64_t) time(NULL), nonce, value, MESH_AUTH_VALUE_MAX);
        free(heap);
        return r;
}

int mesh_http_verify(const MeshAuthKey *k, const char *node_id, struct evhttp_request *req, const char *method,
                     const char *uri) {
        struct iovec small[16], *vec, *heap = NULL;
        struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
        int n, r;

        n = evbuffer_iovecs(evhttp_request_get_input_buffer(req), small, ELEMENTSOF(small), &vec, &heap);
        if (n < 0)
                return n;
        r = mesh_auth_verify(k,
                             &(MeshAuthRequest) {
                                     .method = method,
                                     .uri = uri,
                                     .node_id = node_id,
                                     .body = vec,
                                     .n_body = (size_t) n,
                             },
                             (uint64_t) time(NULL), evhttp_find_header(headers, MESH_AUTH_HEADER));
        free(heap);
        return r;
}

const char *mesh_http_error_string(int r) {
        switch (r) {
        case -ENOKEY: return "no " MESH_AUTH_HEADER " header";
        case -EBADMSG: return "malformed " MESH_AUTH_HEADER;
        case -ETIME: return "timestamp outside the window (clock skew or replay)";
        case -EKEYREJECTED: return "wrong key, or the request was changed";
        default: return "cannot be checked";
        }
}
