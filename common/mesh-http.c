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

int mesh_http_keys_derive(const MeshKeyring *ring, MeshHttpKeys *ret) {
        MeshHttpKeys k = {};
        int r;

        for (size_t i = 0; i < ring->n && i < MESH_KEYRING_MAX; i++) {
                r = mesh_auth_key_derive(ring->keys[i], MESH_KEY_SIZE, &k.keys[k.n++]);
                if (r < 0) {
                        mesh_http_keys_wipe(&k);
                        return r;
                }
        }
        *ret = k;
        mesh_http_keys_wipe(&k);
        return ret->n > 0 ? 0 : -ENOKEY;
}

void mesh_http_keys_wipe(MeshHttpKeys *k) {
        for (size_t i = 0; i < MESH_KEYRING_MAX; i++)
                mesh_auth_key_wipe(&k->keys[i]);
        k->n = 0;
}

int mesh_keyring_load_config(const char *state_dir, const char *mesh_key_path, MeshKeyring *ret) {
        _cleanup_free_ char *path = NULL;

        if (!isempty(state_dir) && mesh_keyring_path(state_dir, &path) < 0)
                return -ENOMEM;
        return mesh_keyring_load(path, isempty(mesh_key_path) ? NULL : mesh_key_path, ret);
}

int mesh_http_sign(const MeshHttpKeys *keys, const char *method, const char *target, const char *node_id,
                   struct evbuffer *body, char value[static MESH_AUTH_VALUE_MAX]) {
        struct iovec small[16], *vec = small, *heap = NULL;
        uint8_t nonce[MESH_AUTH_NONCE_SIZE];
        int n = 0, r;

        if (body) {
                n = evbuffer_iovecs(body, small, ELEMENTSOF(small), &vec, &heap);
                if (n < 0)
                        return n;
        }
        if (keys->n == 0) {
                free(heap);
                return -ENOKEY;
        }
        randombytes_buf(nonce, sizeof(nonce));
        r = mesh_auth_sign(&keys->keys[0],
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

int mesh_http_verify(const MeshHttpKeys *keys, const char *node_id, struct evhttp_request *req, const char *method,
                     const char *uri) {
        struct iovec small[16], *vec, *heap = NULL;
        struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
        const char *value = evhttp_find_header(headers, MESH_AUTH_HEADER);
        uint64_t now = (uint64_t) time(NULL);
        int n, r = -ENOKEY;

        n = evbuffer_iovecs(evhttp_request_get_input_buffer(req), small, ELEMENTSOF(small), &vec, &heap);
        if (n < 0)
                return n;
        for (size_t i = 0; i < keys->n; i++) {
                int k = mesh_auth_verify(&keys->keys[i],
                                         &(MeshAuthRequest) {
                                                 .method = method,
                                                 .uri = uri,
                                                 .node_id = node_id,
                                                 .body = vec,
                                                 .n_body = (size_t) n,
                                         },
                                         now, value);
                if (k >= 0 || k != -EKEYREJECTED) {
                        /* Valid, or wrong whatever the key (no header, malformed, stale). */
                        r = k;
                        break;
                }
                r = k;
        }
        free(heap);
        return r;
}

const char *mesh_http_error_string(int r) {
        switch (r) {
        case -ENOKEY: return "no " MESH_AUTH_HEADER " header";
        case -EBADMSG: return "malformed " MESH_AUTH_HEADER;
        case -ETIME: return "timestamp outside the window (clock skew or replay)";
        case -EKEYREJECTED: return "wrong key, or the request was changed";
        case -EALREADY: return "replayed: this authenticator was used before";
        default: return "cannot be checked";
        }
}
