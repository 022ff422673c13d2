/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* X-Mycelia-Auth on the shim's side: signing a request forwarded to a peer, and the mesh
 * listener's gate that checks one (common/mesh-auth.c, docs/mesh-forwarding.md). */
#include <event2/http.h>
#include <inttypes.h>
#include <sodium.h>
#include <time.h>

#include "log.h"
#include "shimd-errors.h"
#include "shimd-evbuffer.h"
#include "shimd-mesh.h"

int mesh_request_sign(Manager *m, const char *method, const char *target, const char *node_id, struct evbuffer *body,
                      char value[MESH_AUTH_VALUE_MAX]) {
        struct iovec small[16], *vec, *heap = NULL;
        uint8_t nonce[MESH_AUTH_NONCE_SIZE];
        int n, r;

        n = shim_evbuffer_iovecs(body, small, ELEMENTSOF(small), &vec, &heap);
        if (n < 0)
                return n;
        randombytes_buf(nonce, sizeof(nonce));
        r = mesh_auth_sign(&m->mesh_auth,
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

static const char *mesh_auth_error_string(int r) {
        switch (r) {
        case -ENOKEY: return "no " MESH_AUTH_HEADER " header";
        case -EBADMSG: return "malformed " MESH_AUTH_HEADER;
        case -ETIME: return "timestamp outside the window (clock skew or replay)";
        case -EKEYREJECTED: return "wrong key, or the request was changed";
        default: return "cannot be checked";
        }
}

/* The mesh listener's gate: a valid X-Mycelia-Auth for this request, meant for this node. */
int mesh_request_verify(Manager *m, struct evhttp_request *req, const char *method, const char *uri) {
        struct iovec small[16], *vec, *heap = NULL;
        struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
        int n, r;

        if (!m->have_mesh_key)
                return -ENOKEY;
        n = shim_evbuffer_iovecs(evhttp_request_get_input_buffer(req), small, ELEMENTSOF(small), &vec, &heap);
        if (n < 0)
                return n;
        r = mesh_auth_verify(&m->mesh_auth,
                             &(MeshAuthRequest) {
                                     .method = method,
                                     .uri = uri,
                                     .node_id = m->node_id,
                                     .body = vec,
                                     .n_body = (size_t) n,
                             },
                             (uint64_t) time(NULL), evhttp_find_header(headers, MESH_AUTH_HEADER));
        free(heap);
        return r;
}

void mesh_request_reject(Manager *m, struct evhttp_request *req, const char *method, const char *uri,
                         int error) {
        uint64_t n = ++m->counters.rejected_unauthenticated;
        struct evhttp_connection *evcon = evhttp_request_get_connection(req);
        char *host = NULL;
        uint16_t port = 0;

        if (evcon)
                evhttp_connection_get_peer(evcon, &host, &port);
        /* Every one at debug; the 1st, 2nd, 4th, 8th... at notice, so a flood cannot fill the
         * journal but a misconfigured peer is seen. */
        log_full((n & (n - 1)) == 0 ? LOG_NOTICE : LOG_DEBUG,
                 "Refused %s %s on the mesh listener from %s:%u: %s (%" PRIu64 " refused so far).", method, uri,
                 strempty(host), port, mesh_auth_error_string(error), n);
        shim_reply_error(req, 401, SHIM_ERROR_JSON, "mesh authentication failed", false);
}
