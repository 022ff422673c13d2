/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* X-Mycelia-Auth on the shim's side: signing a request forwarded to a peer, and the mesh
 * listener's gate that checks one (common/mesh-auth.c, docs/mesh-forwarding.md). */
#include <event2/http.h>
#include <inttypes.h>

#include "log.h"
#include "mesh-http.h"
#include "shimd-errors.h"
#include "shimd-mesh.h"

int mesh_request_sign(Manager *m, const char *method, const char *target, const char *node_id, struct evbuffer *body,
                      char value[MESH_AUTH_VALUE_MAX]) {
        return mesh_http_sign(&m->creds.http, method, target, node_id, body, value);
}

/* The mesh listener's gate: a valid X-Mycelia-Auth for this request, meant for this node. */
int mesh_request_verify(Manager *m, struct evhttp_request *req, const char *method, const char *uri) {
        if (!m->have_mesh_key)
                return -ENOKEY;
        return mesh_credentials_verify(&m->creds, m->node_id, req, method, uri);
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
                 strempty(host), port, mesh_http_error_string(error), n);
        shim_reply_error(req, 401, SHIM_ERROR_JSON, "mesh authentication failed", false);
}
