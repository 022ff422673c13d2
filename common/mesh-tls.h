/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* TLS 1.3 between nodes (the shim's mesh listener, shardd's transfer listener), authenticated by
 * the mesh key alone: an external pre-shared key derived from it, one per purpose, with an
 * ephemeral (EC)DHE exchange for forward secrecy, and no certificates. OpenSSL does the
 * protocol, libevent's bufferevent_openssl the I/O. docs/mesh-tls.md. */
#pragma once

#include <event2/bufferevent.h>
#include <event2/event.h>

#include "macro.h"
#include "mesh-key.h"
#include "mesh-keyring.h"

/* What a connection is for: each has its own key (a peer's shard port cannot be talked to with
 * the mesh API's key, nor the reverse) and its own identity. */
typedef enum MeshTlsPurpose {
        MESH_TLS_API,           /* shimd's mesh listener: forwarded requests */
        MESH_TLS_SHARD,         /* shardd's transfer listener */
        _MESH_TLS_PURPOSE_MAX,
} MeshTlsPurpose;

#define MESH_TLS_PSK_SIZE 32
/* "mycelia-tls-<purpose>-v1 <key id hex>" */
#define MESH_TLS_IDENTITY_MAX 64

typedef struct MeshTls MeshTls;

/* What went wrong, for the daemons' counters and logs. */
typedef struct MeshTlsCounters {
        uint64_t accepted;              /* handshakes completed as server */
        uint64_t connected;             /* handshakes completed as client */
        uint64_t refused;               /* handshakes we ended as server: no or another key */
        uint64_t failed;                /* handshakes the server ended as client: it has another key */
} MeshTlsCounters;

/* Pure: the PSK and the identity of purpose for mesh_key. The PSK is keyed BLAKE2b of the
 * purpose's label with the mesh key; the identity names the label and a key id (BLAKE2b of a
 * fixed label, first 8 bytes), so a receiver with several keys knows which one is meant. */
int mesh_tls_derive(const uint8_t mesh_key[MESH_KEY_SIZE], MeshTlsPurpose purpose,
                    uint8_t ret_psk[MESH_TLS_PSK_SIZE], char ret_identity[MESH_TLS_IDENTITY_MAX]);

/* Both contexts (client, server) for one purpose and the keyring's keys: as a server it accepts
 * every key of the keyring, as a client it offers the primary one. -EIO when OpenSSL fails. */
int mesh_tls_new(const MeshKeyring *keys, MeshTlsPurpose purpose, MeshTls **ret);
/* The keyring changed (a key installed, used or removed): new handshakes use these keys;
 * connections made before keep theirs. */
int mesh_tls_set_keys(MeshTls *t, const MeshKeyring *keys);
MeshTls *mesh_tls_free(MeshTls *t);
DEFINE_TRIVIAL_CLEANUP_FUNC(MeshTls *, mesh_tls_free);

/* A bufferevent that will accept a TLS connection on the fd evhttp sets on it later (for
 * evhttp_set_bevcb()), or connect one: then bufferevent_socket_connect() it, or hand it to
 * evhttp_connection_base_bufferevent_new(). BEV_EVENT_CONNECTED comes after the handshake; an
 * EOF without close_notify is an EOF (as on plain TCP). NULL when out of memory. */
struct bufferevent *mesh_tls_bev_accepting(MeshTls *t, struct event_base *base);
struct bufferevent *mesh_tls_bev_connecting(MeshTls *t, struct event_base *base);

const MeshTlsCounters *mesh_tls_counters(const MeshTls *t);
