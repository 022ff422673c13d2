/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* X-Mycelia-Auth on the shim's side: signing what goes to a peer, checking what a peer sent. */
#pragma once

#include <event2/buffer.h>
#include <event2/http.h>

#include "mesh-auth.h"
#include "shimd-manager.h"

/* The X-Mycelia-Auth value for a request to node_id: over method, target (the request target
 * as sent, with the peer's path prefix), node_id and body. */
int mesh_request_sign(Manager *m, const char *method, const char *target, const char *node_id, struct evbuffer *body,
                      char value[MESH_AUTH_VALUE_MAX]);
/* The mesh listener's gate: 0 when req carries a valid X-Mycelia-Auth meant for this node;
 * -ENOKEY without a mesh key or header, else mesh_auth_verify()'s error. */
int mesh_request_verify(Manager *m, struct evhttp_request *req, const char *method, const char *uri);
/* Answers 401 and counts it; logs the 1st, 2nd, 4th, 8th... refusal at notice level. */
void mesh_request_reject(Manager *m, struct evhttp_request *req, const char *method, const char *uri, int error);
