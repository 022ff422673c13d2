/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* X-Mycelia-Auth on libevent HTTP requests between nodes (docs/mesh-forwarding.md): loading the
 * mesh key, signing what this node sends a peer, checking what a peer sent this node. shimd's
 * mesh API and shardd's transfer listener use the same. */
#pragma once

#include <event2/buffer.h>
#include <event2/http.h>

#include "mesh-auth.h"
#include "mesh-keyring.h"

/* The HTTP keys of a keyring's keys: requests are signed with the primary's, and one signed
 * with any of them is accepted (docs/key-rotation.md). */
typedef struct MeshHttpKeys {
        MeshAuthKey keys[MESH_KEYRING_MAX];     /* keys[0]: the primary's */
        size_t n;
} MeshHttpKeys;

int mesh_http_keys_derive(const MeshKeyring *ring, MeshHttpKeys *ret);
void mesh_http_keys_wipe(MeshHttpKeys *k);

/* The keyring a node-to-node daemon uses: STATE_DIR/keyring when gossipd wrote one, else the
 * mesh key file (mesh_keyring_load()). -ENOENT when neither exists. */
int mesh_keyring_load_config(const char *state_dir, const char *mesh_key_path, MeshKeyring *ret);

/* The X-Mycelia-Auth value for a request to node_id: method, target (the request target as
 * sent, path and query), body (may be NULL); signed with the primary key. */
int mesh_http_sign(const MeshHttpKeys *k, const char *method, const char *target, const char *node_id,
                   struct evbuffer *body, char value[static MESH_AUTH_VALUE_MAX]);

/* Checks req's X-Mycelia-Auth, meant for node_id (this node) with method and uri as received,
 * against every key. 0 when valid with one; mesh_auth_verify()'s errors otherwise (the
 * primary's, or -EKEYREJECTED when no key fits). */
int mesh_http_verify(const MeshHttpKeys *k, const char *node_id, struct evhttp_request *req, const char *method,
                     const char *uri);

/* What a failed check says, for logs and the 401's message. */
const char *mesh_http_error_string(int r);
