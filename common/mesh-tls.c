/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* TLS 1.3 with an external PSK derived from the mesh key (RFC 8446 section 2.2, psk_dhe_ke):
 * OpenSSL's PSK session callbacks hand it a session whose master key is the PSK, so a peer
 * without the key cannot finish the handshake, and no certificate is involved. docs/mesh-tls.md. */
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "mesh-tls.h"

struct MeshTls {
        MeshTlsPurpose purpose;
        SSL_CTX *client;
        SSL_CTX *server;
        /* One per key of the keyring, the primary first. */
        uint8_t psk[MESH_KEYRING_MAX][MESH_TLS_PSK_SIZE];
        char identity[MESH_KEYRING_MAX][MESH_TLS_IDENTITY_MAX];
        size_t n_keys;
        MeshTlsCounters counters;
};

static const char *const purpose_label[_MESH_TLS_PURPOSE_MAX] = {
        [MESH_TLS_API] = "mycelia-tls-api-v1",
        [MESH_TLS_SHARD] = "mycelia-tls-shard-v1",
};

static const char *const purpose_name[_MESH_TLS_PURPOSE_MAX] = {
        [MESH_TLS_API] = "mesh",
        [MESH_TLS_SHARD] = "shard transfer",
};

/* SHA-256 suites only: the PSK's session names TLS_AES_128_GCM_SHA256, and a PSK may be used
 * with any suite of the same hash. AES-GCM first (AES-NI), ChaCha20 for hosts without it. */
#define MESH_TLS_SUITES "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256"

int mesh_tls_derive(const uint8_t mesh_key[MESH_KEY_SIZE], MeshTlsPurpose purpose,
                    uint8_t ret_psk[MESH_TLS_PSK_SIZE], char ret_identity[MESH_TLS_IDENTITY_MAX]) {
        const char *label;
        char id[MESH_KEY_ID_LEN + 1];

        if (purpose < 0 || purpose >= _MESH_TLS_PURPOSE_MAX)
                return -EINVAL;
        label = purpose_label[purpose];
        if (crypto_generichash(ret_psk, MESH_TLS_PSK_SIZE, (const uint8_t *) label, strlen(label), mesh_key,
                               MESH_KEY_SIZE) != 0)
                return -EIO;
        /* The keyring's id of the key (mesh-keyring.c), so "key list" names what TLS offers. */
        mesh_key_id(mesh_key, id);
        snprintf(ret_identity, MESH_TLS_IDENTITY_MAX, "%s %s", label, id);
        return 0;
}

static MeshTls *ssl_mesh_tls(const SSL *ssl) {
        return SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
}

/* The session that carries PSK i; NULL when OpenSSL fails. */
static SSL_SESSION *psk_session(SSL *ssl, const MeshTls *t, size_t i) {
        static const unsigned char aes_128_gcm_sha256[] = { 0x13, 0x01 };
        const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, aes_128_gcm_sha256);
        SSL_SESSION *s;

        if (!cipher)
                return NULL;
        s = SSL_SESSION_new();
        if (!s)
                return NULL;
        if (!SSL_SESSION_set1_master_key(s, t->psk[i], sizeof(t->psk[i])) || !SSL_SESSION_set_cipher(s, cipher) ||
            !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
                SSL_SESSION_free(s);
                return NULL;
        }
        return s;
}

/* Client: offers the primary key's PSK with its identity. md is set on a second ClientHello (after a
 * HelloRetryRequest) to the hash the server chose; every suite allowed is SHA-256. */
static int psk_use_session_cb(SSL *ssl, const EVP_MD *md, const unsigned char **id, size_t *idlen,
                              SSL_SESSION **sess) {
        MeshTls *t = ssl_mesh_tls(ssl);
        SSL_SESSION *s;

        s = psk_session(ssl, t, 0);
        if (!s)
                return 0;
        if (md && EVP_MD_get_type(md) != EVP_MD_get_type(SSL_CIPHER_get_handshake_digest(SSL_SESSION_get0_cipher(s)))) {
                SSL_SESSION_free(s);
                *sess = NULL;
                *id = NULL;
                *idlen = 0;
                return 1;
        }
        *sess = s;
        *id = (const unsigned char *) t->identity[0];
        *idlen = strlen(t->identity[0]);
        return 1;
}

/* Server: the PSK of the keyring key the identity names; else none, and the handshake fails
 * (there is no certificate to fall back on). A client with another key but a known identity
 * fails at the binder check. */
static int psk_find_session_cb(SSL *ssl, const unsigned char *id, size_t idlen, SSL_SESSION **sess) {
        MeshTls *t = ssl_mesh_tls(ssl);

        *sess = NULL;
        for (size_t i = 0; i < t->n_keys; i++)
                if (idlen == strlen(t->identity[i]) && memcmp(id, t->identity[i], idlen) == 0) {
                        *sess = psk_session(ssl, t, i);
                        return *sess ? 1 : 0;
                }
        return 1;
}

static void peer_string(const SSL *ssl, char *buf, size_t size) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        char host[INET6_ADDRSTRLEN] = "?";
        uint16_t port = 0;
        int fd = SSL_get_fd(ssl);

        if (fd >= 0 && getpeername(fd, (struct sockaddr *) &ss, &len) == 0) {
                if (ss.ss_family == AF_INET) {
                        const struct sockaddr_in *in = (const struct sockaddr_in *) &ss;

                        (void) inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
                        port = ntohs(in->sin_port);
                } else if (ss.ss_family == AF_INET6) {
                        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) &ss;

                        (void) inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
                        port = ntohs(in6->sin6_port);
                }
        }
        snprintf(buf, size, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
}

/* What SSL_get_app_data() says of a connection's handshake. */
static char handshake_done, handshake_counted;

/* A handshake that failed, counted once per connection and logged at notice the 1st, 2nd, 4th,
 * 8th... time, so a scanner cannot fill the journal but a node with the wrong key is seen. */
static void handshake_failed(const SSL *ssl, MeshTls *t, const char *why) {
        bool server = SSL_is_server((SSL *) ssl);
        char peer[INET6_ADDRSTRLEN + 8];
        uint64_t n;

        if (SSL_get_app_data(ssl))
                return;
        (void) SSL_set_app_data((SSL *) ssl, &handshake_counted);
        n = server ? ++t->counters.refused : ++t->counters.failed;
        peer_string(ssl, peer, sizeof(peer));
        log_full((n & (n - 1)) == 0 ? LOG_NOTICE : LOG_DEBUG,
                 server ? "Refused a %s connection from %s at the TLS handshake (%s): not TLS, or no or another "
                          "mesh key (%" PRIu64 " refused so far)."
                        : "The %s listener at %s refused our TLS handshake (%s): it has another mesh key "
                          "(%" PRIu64 " so far).",
                 purpose_name[t->purpose], peer, why, n);
}

static void info_cb(const SSL *ssl, int where, int ret) {
        MeshTls *t = ssl_mesh_tls(ssl);
        bool server = SSL_is_server((SSL *) ssl);

        /* OpenSSL writes a request as several records (head, body) in separate send()s: with
         * Nagle's algorithm the second waits for the first's delayed ACK, 40 ms on Linux. Every
         * side's socket, whoever made it (evhttp, the shim's pool, an accept). */
        if (where & SSL_CB_HANDSHAKE_START) {
                int one = 1, fd = SSL_get_fd(ssl);

                if (fd >= 0)
                        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }

        if (where & SSL_CB_HANDSHAKE_DONE) {
                /* SSL_is_init_finished() is false again once an error or the end of the
                 * connection sets the "error" state: the mark is what tells. */
                if (SSL_get_app_data(ssl))
                        return;
                (void) SSL_set_app_data((SSL *) ssl, &handshake_done);
                if (server)
                        t->counters.accepted++;
                else
                        t->counters.connected++;
                return;
        }
        if (SSL_get_app_data(ssl))
                return;
        /* The alert we send (server) or get (client) says why... */
        if ((where & SSL_CB_ALERT) && (where & (server ? SSL_CB_WRITE : SSL_CB_READ)))
                handshake_failed(ssl, t, SSL_alert_desc_string_long(ret));
        /* ...and a handshake that ended without one (plain HTTP, a reset) is counted too. */
        else if ((where & SSL_CB_EXIT) && (ret == 0 || (ret < 0 && SSL_get_error(ssl, ret) == SSL_ERROR_SSL))) {
                unsigned long e = ERR_peek_error();

                handshake_failed(ssl, t, e ? ERR_reason_error_string(e) : "connection closed");
        }
}

static SSL_CTX *ctx_new(MeshTls *t, bool server) {
        SSL_CTX *ctx;

        ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
        if (!ctx)
                return NULL;
        if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) || !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
            !SSL_CTX_set_ciphersuites(ctx, MESH_TLS_SUITES) || !SSL_CTX_set_app_data(ctx, t)) {
                SSL_CTX_free(ctx);
                return NULL;
        }
        /* The PSK is the only resumption there is: no tickets, no session cache. */
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
        (void) SSL_CTX_set_num_tickets(ctx, 0);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        /* Pooled idle connections keep no 34 KiB of buffers each. */
        SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
        /* No read-ahead (SSL_CTX_set_read_ahead()), though it would save a read() per record:
         * bufferevent_openssl 2.1 waits for the socket to be readable and misses records that
         * OpenSSL read ahead into its own buffer (seen: forwarded requests stalled, then 502). */
        SSL_CTX_set_info_callback(ctx, info_cb);
        if (server)
                SSL_CTX_set_psk_find_session_callback(ctx, psk_find_session_cb);
        else
                SSL_CTX_set_psk_use_session_callback(ctx, psk_use_session_cb);
        return ctx;
}

int mesh_tls_set_keys(MeshTls *t, const MeshKeyring *keys) {
        if (keys->n == 0 || keys->n > MESH_KEYRING_MAX)
                return -EINVAL;
        for (size_t i = 0; i < keys->n; i++) {
                int r = mesh_tls_derive(keys->keys[i], t->purpose, t->psk[i], t->identity[i]);

                if (r < 0)
                        return r;
        }
        for (size_t i = keys->n; i < t->n_keys; i++)
                sodium_memzero(t->psk[i], sizeof(t->psk[i]));
        t->n_keys = keys->n;
        return 0;
}

int mesh_tls_new(const MeshKeyring *keys, MeshTlsPurpose purpose, MeshTls **ret) {
        _cleanup_(mesh_tls_freep) MeshTls *t = NULL;
        int r;

        if (purpose < 0 || purpose >= _MESH_TLS_PURPOSE_MAX)
                return -EINVAL;
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->purpose = purpose;
        r = mesh_tls_set_keys(t, keys);
        if (r < 0)
                return r;
        t->client = ctx_new(t, false);
        t->server = ctx_new(t, true);
        if (!t->client || !t->server) {
                unsigned long e = ERR_get_error();

                log_error("Failed to set up TLS for the %s connections: %s", purpose_name[purpose],
                          e ? ERR_reason_error_string(e) : "out of memory");
                ERR_clear_error();
                return -EIO;
        }
        *ret = TAKE_PTR(t);
        return 0;
}

MeshTls *mesh_tls_free(MeshTls *t) {
        if (!t)
                return NULL;
        SSL_CTX_free(t->client);
        SSL_CTX_free(t->server);
        sodium_memzero(t->psk, sizeof(t->psk));
        free(t);
        return NULL;
}

/* bufferevent_openssl writes each chain of its output buffer as a TLS record of its own, with a
 * send() of its own; a streamed answer in chunked encoding is two or three tiny chains per NDJSON
 * line. So whatever waits in the buffer is joined into one chain as it is added, up to one full
 * record: a loop iteration then writes a record and a send() per 16 KiB, as writev() does on a
 * plain socket. Larger buffers (bulk transfers) are left as they are: their chains are large. */
#define COALESCE_MAX (16U << 10)

static void coalesce_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *userdata) {
        size_t len;

        if (info->n_added == 0)
                return;
        len = evbuffer_get_length(buf);
        if (len > 1 && len <= COALESCE_MAX)
                (void) evbuffer_pullup(buf, -1);
}

static struct bufferevent *bev_new(SSL_CTX *ctx, struct event_base *base, enum bufferevent_ssl_state state) {
        struct bufferevent *bev;
        SSL *ssl;

        ssl = SSL_new(ctx);
        if (!ssl)
                return NULL;
        /* The bufferevent owns ssl (and the fd) from here: freed with it. */
        bev = bufferevent_openssl_socket_new(base, -1, ssl, state, BEV_OPT_CLOSE_ON_FREE);
        if (!bev) {
                SSL_free(ssl);
                return NULL;
        }
        /* Peers and clients close TCP connections without close_notify (a kill -9, a pooled
         * connection dropped): that is an EOF, as on a plain socket, not an error. Truncation
         * cannot go unnoticed: HTTP framing (Content-Length, chunked) ends every message. */
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
        if (!evbuffer_add_cb(bufferevent_get_output(bev), coalesce_cb, NULL)) {
                bufferevent_free(bev);
                return NULL;
        }
        return bev;
}

struct bufferevent *mesh_tls_bev_accepting(MeshTls *t, struct event_base *base) {
        return bev_new(t->server, base, BUFFEREVENT_SSL_ACCEPTING);
}

struct bufferevent *mesh_tls_bev_connecting(MeshTls *t, struct event_base *base) {
        return bev_new(t->client, base, BUFFEREVENT_SSL_CONNECTING);
}

const MeshTlsCounters *mesh_tls_counters(const MeshTls *t) {
        return &t->counters;
}
