/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* X-Mycelia-Auth on libevent HTTP requests between nodes (docs/mesh-forwarding.md): loading the
 * mesh key, signing what this node sends a peer, checking what a peer sent this node. shimd's
 * mesh API and shardd's transfer listener use the same. */
#pragma once

#include <event2/buffer.h>
#include <event2/http.h>

#include "mesh-auth.h"

/* Reads the mesh key file at path and derives the HTTP key from it. -ENOENT when path is empty
 * or missing, else mesh_key_load()'s and mesh_auth_key_derive()'s errors. */
int mesh_http_key_load(const char *path, MeshAuthKey *ret);

/* The X-Mycelia-Auth value for a request to node_id: method, target (the request target as
 * sent, path and query), body (may be NULL). */
int mesh_http_sign(const MeshAuthKey *k, const char *method, const char *target, const char *node_id,
                   struct evbuffer *body, char value[static MESH_AUTH_VALUE_MAX]);

/* Checks req's X-Mycelia-Auth, meant for node_id (this node) with method and uri as received.
 * 0 when valid; mesh_auth_verify()'s errors otherwise. */
int mesh_http_verify(const MeshAuthKey *k, const char *node_id, struct evhttp_request *req, const char *method,
                     const char *uri);

/* What a failed check says, for logs and the 401's message. */
const char *mesh_http_error_string(int r);
