/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* HMAC-SHA256 (libsodium) over one canonical text per request: version, time, nonce, method,
 * URI, target node and a BLAKE2b hash of the body. Strict parsing, constant-time comparison. */
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <strings.h>

#include "mesh-auth.h"

#define MESH_AUTH_VERSION "v1"
#define MESH_AUTH_TS_DIGITS_MAX 20

int mesh_auth_key_derive(const uint8_t *mesh_key, size_t mesh_key_size, MeshAuthKey *ret) {
        if (!mesh_key || mesh_key_size < crypto_generichash_KEYBYTES_MIN ||
            mesh_key_size > crypto_generichash_KEYBYTES_MAX)
                return -EINVAL;
        if (sodium_init() < 0)
                return -EIO;
        /* A subkey of its own, so the mesh key itself never keys anything on the wire but the
         * gossip AEAD. */
        if (crypto_generichash(ret->key, sizeof(ret->key), (const unsigned char *) MESH_AUTH_CONTEXT,
                               strlen(MESH_AUTH_CONTEXT), mesh_key, mesh_key_size) != 0)
                return -EIO;
        return 0;
}

void mesh_auth_key_wipe(MeshAuthKey *k) {
        sodium_memzero(k, sizeof(*k));
}

bool mesh_header_is_ours(const char *name) {
        return name && strncasecmp(name, MESH_HEADER_PREFIX, strlen(MESH_HEADER_PREFIX)) == 0;
}

static bool request_valid(const MeshAuthRequest *req) {
        return req && !isempty(req->method) && !isempty(req->uri) && !isempty(req->node_id) &&
               (req->n_body == 0 || req->body);
}

/* HMAC over: "v1\n<ts>\n<nonce hex>\n<METHOD>\n<URI>\n<node id>\n<body BLAKE2b-256 hex>".
 * Method, URI and node id cannot hold '\n' on the wire, so the fields cannot run into each other. */
static int mesh_auth_mac(const MeshAuthKey *k, const MeshAuthRequest *req, const char *ts, const char *nonce_hex,
                         uint8_t mac[crypto_auth_hmacsha256_BYTES]) {
        crypto_generichash_state body_state;
        crypto_auth_hmacsha256_state st;
        uint8_t body_hash[32];
        char body_hex[sizeof(body_hash) * 2 + 1];
        const char *fields[] = { MESH_AUTH_VERSION, ts, nonce_hex, req->method, req->uri, req->node_id, body_hex };

        if (crypto_generichash_init(&body_state, NULL, 0, sizeof(body_hash)) != 0)
                return -EIO;
        for (size_t i = 0; i < req->n_body; i++)
                if (req->body[i].iov_len > 0)
                        (void) crypto_generichash_update(&body_state, req->body[i].iov_base, req->body[i].iov_len);
        (void) crypto_generichash_final(&body_state, body_hash, sizeof(body_hash));
        sodium_bin2hex(body_hex, sizeof(body_hex), body_hash, sizeof(body_hash));

        (void) crypto_auth_hmacsha256_init(&st, k->key, sizeof(k->key));
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                if (i > 0)
                        (void) crypto_auth_hmacsha256_update(&st, (const unsigned char *) "\n", 1);
                (void) crypto_auth_hmacsha256_update(&st, (const unsigned char *) fields[i], strlen(fields[i]));
        }
        (void) crypto_auth_hmacsha256_final(&st, mac);
        sodium_memzero(&st, sizeof(st));
        return 0;
}

int mesh_auth_sign(const MeshAuthKey *k, const MeshAuthRequest *req, uint64_t now_sec,
                   const uint8_t nonce[MESH_AUTH_NONCE_SIZE], char *buf, size_t size) {
        char ts[MESH_AUTH_TS_DIGITS_MAX + 1], nonce_hex[MESH_AUTH_NONCE_SIZE * 2 + 1];
        char mac_hex[crypto_auth_hmacsha256_BYTES * 2 + 1];
        uint8_t mac[crypto_auth_hmacsha256_BYTES];
        int r;

        if (!k || !nonce || !buf || !request_valid(req))
                return -EINVAL;
        snprintf(ts, sizeof(ts), "%" PRIu64, now_sec);
        sodium_bin2hex(nonce_hex, sizeof(nonce_hex), nonce, MESH_AUTH_NONCE_SIZE);
        r = mesh_auth_mac(k, req, ts, nonce_hex, mac);
        if (r < 0)
                return r;
        sodium_bin2hex(mac_hex, sizeof(mac_hex), mac, sizeof(mac));
        r = snprintf(buf, size, MESH_AUTH_VERSION " %s %s %s", ts, nonce_hex, mac_hex);
        if (r < 0 || (size_t) r >= size)
                return -ENOBUFS;
        return 0;
}

/* n lowercase hex digits exactly. */
static bool is_hex(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

int mesh_auth_verify(const MeshAuthKey *k, const MeshAuthRequest *req, uint64_t now_sec, const char *value) {
        char ts[MESH_AUTH_TS_DIGITS_MAX + 1], nonce_hex[MESH_AUTH_NONCE_SIZE * 2 + 1];
        uint8_t mac[crypto_auth_hmacsha256_BYTES], got[crypto_auth_hmacsha256_BYTES];
        const char *p, *mac_hex;
        uint64_t t = 0;
        size_t n;
        int r;

        if (!k || !request_valid(req))
                return -EINVAL;
        if (!value)
                return -ENOKEY;
        if (strnlen(value, MESH_AUTH_VALUE_MAX) >= MESH_AUTH_VALUE_MAX)
                return -EBADMSG;

        /* "v1 " */
        if (strncmp(value, MESH_AUTH_VERSION " ", strlen(MESH_AUTH_VERSION) + 1) != 0)
                return -EBADMSG;
        p = value + strlen(MESH_AUTH_VERSION) + 1;

        /* Decimal seconds, no sign, no leading zero, no overflow. */
        n = strspn(p, "0123456789");
        if (n == 0 || n > MESH_AUTH_TS_DIGITS_MAX || (n > 1 && p[0] == '0') || p[n] != ' ')
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                uint64_t d = (uint64_t) (p[i] - '0');

                if (t > (UINT64_MAX - d) / 10)
                        return -EBADMSG;
                t = t * 10 + d;
        }
        memcpy(ts, p, n);
        ts[n] = '\0';
        p += n + 1;

        if (!is_hex(p, MESH_AUTH_NONCE_SIZE * 2) || p[MESH_AUTH_NONCE_SIZE * 2] != ' ')
                return -EBADMSG;
        memcpy(nonce_hex, p, MESH_AUTH_NONCE_SIZE * 2);
        nonce_hex[MESH_AUTH_NONCE_SIZE * 2] = '\0';
        p += MESH_AUTH_NONCE_SIZE * 2 + 1;

        mac_hex = p;
        if (!is_hex(mac_hex, sizeof(got) * 2) || mac_hex[sizeof(got) * 2] != '\0')
                return -EBADMSG;
        if (sodium_hex2bin(got, sizeof(got), mac_hex, sizeof(got) * 2, NULL, NULL, NULL) != 0)
                return -EBADMSG;

        if (t > now_sec ? t - now_sec > MESH_AUTH_WINDOW_SEC : now_sec - t > MESH_AUTH_WINDOW_SEC)
                return -ETIME;

        r = mesh_auth_mac(k, req, ts, nonce_hex, mac);
        if (r < 0)
                return r;
        r = sodium_memcmp(mac, got, sizeof(mac)) == 0 ? 0 : -EKEYREJECTED;
        sodium_memzero(mac, sizeof(mac));
        return r;
}
