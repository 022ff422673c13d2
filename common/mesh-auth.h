/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The authenticator of node-to-node HTTP (the X-Mycelia-Auth header): an HMAC-SHA256, keyed
 * with a subkey of the mesh key, over the request. Pure: no clock, no I/O. docs/mesh-forwarding.md. */
#pragma once

#include <sys/uio.h>

#include "macro.h"

#define MESH_AUTH_HEADER "X-Mycelia-Auth"
#define MESH_HOP_HEADER "X-Mycelia-Hop"
/* Every header of this prefix is ours: stripped from client requests before anything else. */
#define MESH_HEADER_PREFIX "X-Mycelia-"

/* What BLAKE2b keyed with the mesh key hashes to make the subkey (the message, not a
 * personalisation), and the first line of what is signed. */
#define MESH_AUTH_CONTEXT "mycelia-http-v1"
/* A request is accepted this many seconds either side of the receiver's clock. */
#define MESH_AUTH_WINDOW_SEC 60
#define MESH_AUTH_KEY_SIZE 32
#define MESH_AUTH_NONCE_SIZE 8
/* "v1 " + up to 20 digits + " " + 16 hex + " " + 64 hex, and a NUL. */
#define MESH_AUTH_VALUE_MAX 128

typedef struct MeshAuthKey {
        uint8_t key[MESH_AUTH_KEY_SIZE];
} MeshAuthKey;

/* What the authenticator covers. uri is the request target exactly as on the wire (path and
 * query); node_id the id of the node the request is meant for (so it cannot be replayed
 * against another member); body the request body as pieces (n_body may be 0). */
typedef struct MeshAuthRequest {
        const char *method;
        const char *uri;
        const char *node_id;
        const struct iovec *body;
        size_t n_body;
} MeshAuthRequest;

/* Derives the HTTP subkey from the 32-byte mesh key (keyed BLAKE2b of MESH_AUTH_CONTEXT). */
int mesh_auth_key_derive(const uint8_t *mesh_key, size_t mesh_key_size, MeshAuthKey *ret);
void mesh_auth_key_wipe(MeshAuthKey *k);

/* Writes the header value "v1 <unix-seconds> <nonce hex> <hmac hex>" to buf. now_sec: wall
 * clock; nonce: MESH_AUTH_NONCE_SIZE random bytes. -ENOBUFS when buf is too small, -EINVAL for a
 * request without method, uri or node_id. */
int mesh_auth_sign(const MeshAuthKey *k, const MeshAuthRequest *req, uint64_t now_sec,
                   const uint8_t nonce[MESH_AUTH_NONCE_SIZE], char *buf, size_t size);

/* Checks a header value against the request, in constant time for the MAC. Returns 0 when
 * valid; -ENOKEY when there is no header, -EBADMSG when it is not of the form above (unknown
 * version included), -ETIME when its time is more than MESH_AUTH_WINDOW_SEC away from now_sec,
 * -EKEYREJECTED when the MAC does not match (wrong key, or method, URI, node or body changed). */
int mesh_auth_verify(const MeshAuthKey *k, const MeshAuthRequest *req, uint64_t now_sec, const char *value);

/* True for a header name starting with MESH_HEADER_PREFIX (any case). */
bool mesh_header_is_ours(const char *name);
