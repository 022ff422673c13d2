/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The mesh keyring, as memberlist's: the keys a node accepts, the first of them the primary one
 * it sends with, so a mesh moves to a new key without a moment where two nodes cannot talk
 * (docs/key-rotation.md). Kept by gossipd in STATE_DIR/keyring once a key is installed; until
 * then the keyring is the mesh key file's one key. Parsing and the operations are pure. */
#pragma once

#include "macro.h"
#include "mesh-key.h"

/* As many as gossip accepts at once (SWIM_KEYS_MAX). */
#define MESH_KEYRING_MAX 4
/* A key's id: the first 8 bytes of BLAKE2b(key = the key, "mycelia-key-id-v1"), in hex. The
 * same id names the key in TLS identities (mesh-tls.c); it says nothing of the key. */
#define MESH_KEY_ID_LEN 16
/* A line a key, comments; well below this. */
#define MESH_KEYRING_FILE_MAX 4096

typedef struct MeshKeyring {
        uint8_t keys[MESH_KEYRING_MAX][MESH_KEY_SIZE];  /* keys[0]: the primary one */
        size_t n;
} MeshKeyring;

void mesh_key_id(const uint8_t key[MESH_KEY_SIZE], char ret[MESH_KEY_ID_LEN + 1]);

/* STATE_DIR/keyring, malloc()ed. */
int mesh_keyring_path(const char *state_dir, char **ret);

/* The file's text: one base64 key a line, the primary first; '#' comments, blank lines. -EINVAL
 * for a line that is not a key, no key, or a key twice; -E2BIG past MESH_KEYRING_MAX. */
int mesh_keyring_parse(const char *text, MeshKeyring *ret);
/* Its text (a comment, then the keys), malloc()ed; the caller wipes and frees it. */
int mesh_keyring_format(const MeshKeyring *k, char **ret);

/* The keyring a daemon starts with: keyring_path's when that file exists, else the one key of
 * mesh_key_path. -ENOENT when neither exists. */
int mesh_keyring_load(const char *keyring_path, const char *mesh_key_path, MeshKeyring *ret);
/* Writes the file atomically (temporary file, fsync, rename), mode 0640. */
int mesh_keyring_write(const char *path, const MeshKeyring *k);

/* Finds a key by its base64 text or its id; the index, or -ENOENT (-EINVAL: neither form). */
int mesh_keyring_find(const MeshKeyring *k, const char *key_or_id);
/* Adds a key (base64) as a secondary one: -EEXIST when it is there, -E2BIG when full, -EINVAL
 * when it is not base64 of 32 bytes. */
int mesh_keyring_install(MeshKeyring *k, const char *key_base64);
/* Makes an installed key (base64 or id) the primary one; 0 when it was already. */
int mesh_keyring_use(MeshKeyring *k, const char *key_or_id);
/* Removes an installed key (base64 or id); -EBUSY for the primary one. */
int mesh_keyring_remove(MeshKeyring *k, const char *key_or_id);

void mesh_keyring_wipe(MeshKeyring *k);
