/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The mesh key: 32 random bytes, base64 in one file (/etc/mycelia/mesh.key). Gossip seals its
 * datagrams with it and node-to-node HTTP carries an authenticator derived from it. */
#pragma once

#include "macro.h"

#define MESH_KEY_SIZE 32
/* Base64 of 32 bytes with padding, plus a newline. */
#define MESH_KEY_FILE_MAX 128

/* Reads and decodes the key. -ENOENT when the file is missing, -EINVAL (with a log line) when
 * it is not base64 of exactly 32 bytes. Surrounding whitespace is ignored. */
int mesh_key_load(const char *path, uint8_t ret[MESH_KEY_SIZE]);
/* Writes a fresh random key to path (mode 0640, atomically via a temporary file); -EEXIST when
 * the file exists. */
int mesh_key_generate(const char *path);
/* The key as the file holds it (base64, NUL-terminated). */
int mesh_key_format(const uint8_t key[MESH_KEY_SIZE], char *buf, size_t size);
