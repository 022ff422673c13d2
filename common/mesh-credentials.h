/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What a daemon that talks to peers over TCP (shimd, shardd) holds of the mesh keyring: the HTTP
 * authenticator's keys and TLS for one purpose, read at start and again when gossipd says the
 * keyring changed (docs/key-rotation.md). */
#pragma once

#include "mesh-http.h"
#include "mesh-replay.h"
#include "mesh-tls.h"

typedef struct MeshCredentials {
        MeshHttpKeys http;
        MeshTls *tls;           /* NULL: no key at start (nothing crosses to peers until a restart) */
        MeshReplay *replay;     /* the authenticators accepted, so none is accepted twice */
} MeshCredentials;

/* From STATE_DIR/keyring or the mesh key file (mesh_keyring_load_config()). -ENOENT when there
 * is no key; -EIO (logged) when TLS cannot be set up. */
int mesh_credentials_load(MeshCredentials *c, const char *state_dir, const char *mesh_key, MeshTlsPurpose purpose);
/* Reads the keyring again: new signatures and handshakes use it. Nothing changes on failure
 * (logged). 0 without credentials. */
int mesh_credentials_reload(MeshCredentials *c, const char *state_dir, const char *mesh_key);
void mesh_credentials_done(MeshCredentials *c);

/* mesh_http_verify() with every key, and then a second use of an authenticator refused:
 * -EALREADY (mesh_http_error_string() says "replayed"). */
int mesh_credentials_verify(MeshCredentials *c, const char *node_id, struct evhttp_request *req, const char *method,
                            const char *uri);
