/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* shardd's transfer listener: TLS with the mesh key (docs/mesh-tls.md), then each request's
 * X-Mycelia-Auth (meant for this node, signed with the mesh key) is checked and dispatched. Without a mesh key every request is refused: the
 * listener is never open to the LAN. */
#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <string.h>

#include "log.h"
#include "mesh-http.h"
#include "shardd-blobs.h"
#include "shardd-manager.h"
#include "shardd-peer.h"
#include "shardd-reply.h"

static const char *method_name(enum evhttp_cmd_type t) {
        switch (t) {
        case EVHTTP_REQ_GET: return "GET";
        case EVHTTP_REQ_POST: return "POST";
        case EVHTTP_REQ_HEAD: return "HEAD";
        case EVHTTP_REQ_PUT: return "PUT";
        default: return "?";
        }
}

/* Routes a request that passed the gate: path, method, and the collection named in the query. */
static void peer_dispatch(Manager *m, struct evhttp_request *req) {
        const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
        enum evhttp_cmd_type method = evhttp_request_get_command(req);
        const char *path = uri ? evhttp_uri_get_path(uri) : NULL, *query = uri ? evhttp_uri_get_query(uri) : NULL;
        struct evkeyvalq params = TAILQ_HEAD_INITIALIZER(params);
        const char *collection;

        if (!path) {
                shard_peer_reply_error(req, 400, "Bad Request", "bad request target");
                return;
        }
        if (query && evhttp_parse_query_str(query, &params) < 0) {
                shard_peer_reply_error(req, 400, "Bad Request", "bad query");
                return;
        }
        collection = evhttp_find_header(&params, "collection");
        /* Blobs (shardd-blobs.c) are the only bodies allowed above SHARD_PEER_BODY_MAX. */
        if (streq(path, "/blob"))
                manager_peer_blob(m, req, evhttp_find_header(&params, "digest"));
        else if (evbuffer_get_length(evhttp_request_get_input_buffer(req)) > SHARD_PEER_BODY_MAX)
                shard_peer_reply_error(req, 413, "Payload Too Large", "body too large");
        else if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_POST)
                shard_peer_reply_error(req, 405, "Method Not Allowed", "method not allowed");
        else if (!collection)
                shard_peer_reply_error(req, 400, "Bad Request", "no collection");
        else if (streq(path, "/shard/search") && method == EVHTTP_REQ_POST)
                manager_peer_search(m, req, collection);
        else if (streq(path, "/shard/apply") && method == EVHTTP_REQ_POST)
                manager_peer_apply(m, req, collection);
        else if (streq(path, "/shard/get") && method == EVHTTP_REQ_GET)
                manager_peer_get(m, req, collection, evhttp_find_header(&params, "id"));
        else if (streq(path, "/shard/cursor") && method == EVHTTP_REQ_GET)
                manager_peer_cursor(m, req, collection, evhttp_find_header(&params, "shard"),
                                    evhttp_find_header(&params, "source"));
        else if (streq(path, "/shard/ready") && method == EVHTTP_REQ_POST)
                manager_peer_ready(m, req, collection, evhttp_find_header(&params, "shard"));
        else if (streq(path, "/shard/collection") && method == EVHTTP_REQ_POST)
                manager_peer_collection(m, req, collection, !!evhttp_find_header(&params, "delete"));
        else
                shard_peer_reply_error(req, 404, "Not Found", "no such route");
        evhttp_clear_headers(&params);
}

struct bufferevent *manager_peer_bev_new(struct event_base *base, void *userdata) {
        Manager *m = userdata;

        return mesh_tls_bev_accepting(m->creds.tls, base);
}

void manager_peer_request(struct evhttp_request *req, void *userdata) {
        Manager *m = userdata;
        const char *uri = evhttp_request_get_uri(req), *method = method_name(evhttp_request_get_command(req));
        int r;

        r = m->have_mesh_key ? mesh_credentials_verify(&m->creds, m->node_id, req, method, uri) : -ENOKEY;
        if (r < 0) {
                m->peer_rejected++;
                log_debug("Refused %s %s from a peer: %s", method, uri, mesh_http_error_string(r));
                shard_peer_reply_error(req, 401, "Unauthorized", "unauthorized");
                return;
        }
        peer_dispatch(m, req);
}
