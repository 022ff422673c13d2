/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shardd's transfer listener: checks each request's X-Mycelia-Auth (meant for this node, signed
 * with the mesh key) and dispatches it. Without a mesh key every request is refused: the
 * listener is never open to the LAN. */
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>

#include "log.h"
#include "mesh-http.h"
#include "shardd-manager.h"
#include "shardd-peer.h"

static void peer_reply_error(struct evhttp_request *req, int status, const char *reason, const char *message) {
        struct evbuffer *b = evbuffer_new();

        if (!b) {
                evhttp_send_error(req, status, reason);
                return;
        }
        (void) evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
        /* message is ours (never a peer's bytes): no escaping needed beyond what it holds. */
        (void) evbuffer_add_printf(b, "{\"error\":\"%s\"}", message);
        evhttp_send_reply(req, status, reason, b);
        evbuffer_free(b);
}

static const char *method_name(enum evhttp_cmd_type t) {
        return t == EVHTTP_REQ_GET ? "GET" : t == EVHTTP_REQ_POST ? "POST" : "?";
}

void manager_peer_request(struct evhttp_request *req, void *userdata) {
        Manager *m = userdata;
        const char *uri = evhttp_request_get_uri(req), *method = method_name(evhttp_request_get_command(req));
        int r;

        r = m->have_mesh_key ? mesh_http_verify(&m->mesh_auth, m->node_id, req, method, uri) : -ENOKEY;
        if (r < 0) {
                m->peer_rejected++;
                log_debug("Refused %s %s from a peer: %s", method, uri, mesh_http_error_string(r));
                peer_reply_error(req, 401, "Unauthorized", "unauthorized");
                return;
        }
        peer_reply_error(req, 404, "Not Found", "no such route");
}
