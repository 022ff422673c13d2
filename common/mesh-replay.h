/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The authenticators a node accepted within their window (MESH_AUTH_WINDOW_SEC either side), so
 * that a second use of one is refused: a member of the mesh (who alone can open the TLS around
 * it) replaying a request it saw. Bounded memory; pure, the time is passed in.
 * docs/mesh-forwarding.md, "Replays". */
#pragma once

#include "macro.h"

/* Slots of the table (a power of two): 131,072 x 24 bytes, 3 MiB. Authenticators live at most
 * 2 x MESH_AUTH_WINDOW_SEC, so this holds about 1,000 accepted requests a second before the
 * oldest are forgotten early (counted in evicted). */
#define MESH_REPLAY_SLOTS (1U << 17)
/* How far an insertion or a lookup probes from its slot. */
#define MESH_REPLAY_PROBE 32U

typedef struct MeshReplay MeshReplay;

int mesh_replay_new(size_t slots, MeshReplay **ret);
MeshReplay *mesh_replay_free(MeshReplay *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(MeshReplay *, mesh_replay_free);

/* An authenticator that verified: its time (seconds) and MAC (any bytes that name it, the first
 * 16 used). 0 the first time; -EALREADY when the same one was accepted before and is still
 * within its window. now_sec: the receiver's clock. */
int mesh_replay_check(MeshReplay *r, uint64_t ts, const uint8_t *mac, size_t mac_size, uint64_t now_sec);

/* Authenticators forgotten before their window ended because the table was full around them. */
uint64_t mesh_replay_evicted(const MeshReplay *r);
