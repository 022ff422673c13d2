/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The mesh keyring as shimd and shardd hold it (mesh-credentials.h). */
#include <event2/keyvalq_struct.h>
#include <sodium.h>
#include <stdlib.h>
#include <time.h>

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
        if (r >= 0)
                r = mesh_replay_new(MESH_REPLAY_SLOTS, &c->replay);
        mesh_keyring_wipe(&ring);
        if (r < 0) {
                mesh_credentials_done(c);
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
        c->replay = mesh_replay_free(c->replay);
}

int mesh_credentials_verify(MeshCredentials *c, const char *node_id, struct evhttp_request *req, const char *method,
                            const char *uri) {
        const char *value, *mac_hex;
        uint8_t mac[16];
        uint64_t ts;
        int r;

        r = mesh_http_verify(&c->http, node_id, req, method, uri);
        if (r < 0 || !c->replay)
                return r;
        /* It verified, so it is "v1 <ts> <nonce> <64 hex>": its time, and the MAC names it. */
        value = evhttp_find_header(evhttp_request_get_input_headers(req), MESH_AUTH_HEADER);
        ts = strtoull(value + 3, NULL, 10);
        mac_hex = strrchr(value, ' ') + 1;
        if (sodium_hex2bin(mac, sizeof(mac), mac_hex, sizeof(mac) * 2, NULL, NULL, NULL) != 0)
                return -EBADMSG;
        return mesh_replay_check(c->replay, ts, mac, sizeof(mac), (uint64_t) time(NULL));
}
