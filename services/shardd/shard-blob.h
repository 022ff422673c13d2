/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Blobs (docs/blobs.md): their names ("sha256:<64 hex>", as Ollama has them), the file each is
 * stored in, and which nodes hold one. Pure: no I/O. test-shard-blob drives it. */
#pragma once

#include <stdint.h>

#include "macro.h"
#include "shard-placement.h"

#define SHARD_BLOB_DIGEST_SIZE 32
/* "sha256:" and 64 hex digits, and a NUL. */
#define SHARD_BLOB_DIGEST_STRING_MAX (7 + 64 + 1)
/* The file name of a stored blob: "sha256-" and 64 hex digits (Ollama's own), and a NUL. */
#define SHARD_BLOB_FILE_NAME_MAX SHARD_BLOB_DIGEST_STRING_MAX

/* Parses "sha256:<64 hex>" (also "sha256-<64 hex>", as Ollama accepts; hex in either case).
 * -EINVAL for anything else. */
int shard_blob_digest_parse(const char *s, uint8_t ret[static SHARD_BLOB_DIGEST_SIZE]);
/* The canonical name: "sha256:" and lowercase hex. Returns buf. */
const char *shard_blob_digest_to_string(const uint8_t d[static SHARD_BLOB_DIGEST_SIZE],
                                        char buf[static SHARD_BLOB_DIGEST_STRING_MAX]);
/* The file a blob is stored in: "sha256-" and lowercase hex. Returns buf. */
const char *shard_blob_file_name(const uint8_t d[static SHARD_BLOB_DIGEST_SIZE],
                                 char buf[static SHARD_BLOB_FILE_NAME_MAX]);
/* The digest of a stored blob's file name; -EINVAL for any other name (temporary files). */
int shard_blob_file_name_parse(const char *name, uint8_t ret[static SHARD_BLOB_DIGEST_SIZE]);

/* The holders of a blob among members: the top r by rendezvous hashing, as shard_holders() ranks
 * the holders of a shard, scored with a seed made from the digest (its canonical name taken as
 * a collection of one shard). Same return values as shard_holders(). */
int shard_blob_holders(const uint8_t d[static SHARD_BLOB_DIGEST_SIZE], char *const *members, size_t n_members,
                       unsigned r, const char *ret_holders[static SHARD_REPLICAS_MAX]);
