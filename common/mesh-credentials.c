/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The mesh keyring as shimd and shardd hold it (mesh-credentials.h). */
#include "log.h"
#include "mesh-credentials.h"

int mesh_credentials_load(MeshCredentials *c, const char *state_dir, const char *mesh_key, MeshTlsPurpose purpose) {
        MeshKeyring ring;
        int r;

        r = mesh_keyring_load_config(state_dir, mesh_key, &ring);
        if (r < 0)
                return r;
        r = mesh_http_keys_derive(&ring, &c->http);
        if (r >= 0)
                r = mesh_tls_new(&ring, purpose, &c->tls);
        mesh_keyring_wipe(&ring);
        if (r < 0) {
                mesh_http_keys_wipe(&c->http);
                return log_error_errno(r == -ENOENT ? -EIO : r, "Failed to set up TLS with the mesh keys: %m");
        }
        return 0;
}

int mesh_credentials_reload(MeshCredentials *c, const char *state_dir, const char *mesh_key) {
        MeshHttpKeys http;
        MeshKeyring ring;
        int r;

        if (!c->tls)
                return 0;
        r = mesh_keyring_load_config(state_dir, mesh_key, &ring);
        if (r >= 0)
                r = mesh_http_keys_derive(&ring, &http);
        if (r >= 0) {
                r = mesh_tls_set_keys(c->tls, &ring);
                if (r >= 0)
                        c->http = http;
                mesh_http_keys_wipe(&http);
        }
        mesh_keyring_wipe(&ring);
        if (r < 0)
                return log_warning_errno(r, "Failed to read the mesh keyring again, keeping the keys in use: %m");
        log_info("Mesh keys read again: %zu key(s).", c->http.n);
        return 0;
}

void mesh_credentials_done(MeshCredentials *c) {
        mesh_http_keys_wipe(&c->http);
        c->tls = mesh_tls_free(c->tls);
}
