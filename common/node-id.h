/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The node id: 128 random bits made on a node's first start and kept in its state directory,
 * unless [node] id names one. Every daemon of the node reads the same file. */
#pragma once

#include "macro.h"

/* 32 hex digits, lowercase: sd_id128_to_string() of 128 bits. */
#define NODE_ID_LEN 32
#define NODE_ID_FILE "node-id"

/* The configured id (32 hex digits) when there is one, else the one in STATE_DIR/node-id,
 * created when missing (state_dir itself too, one level, 0750). Several daemons may start at
 * once: the file appears whole, and the first to link it wins, so all read the same id.
 * Returns -EINVAL for a bad configured id, -EBADMSG for a file that does not hold one, or the
 * errno of what failed. ret is untouched on failure. */
int node_id_get(const char *configured, const char *state_dir, char ret[static NODE_ID_LEN + 1]);
