/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Replay protection for sealed SWIM messages: per sender, the last few sessions each with its
 * highest sequence number and a 64-entry sliding window (docs/gossip-protocol.md). */
#pragma once

#include "macro.h"

#define SWIM_REPLAY_SESSIONS 4
#define SWIM_REPLAY_WINDOW 64

typedef struct SwimReplaySession {
        uint64_t session;
        uint64_t highest;       /* highest sequence number accepted; 0 = slot unused */
        uint64_t window;        /* bit i set: highest - i was accepted */
        uint64_t used;          /* SwimReplay.clock when last accepted, for LRU eviction */
} SwimReplaySession;

typedef struct SwimReplay {
        SwimReplaySession sessions[SWIM_REPLAY_SESSIONS];
        uint64_t clock;
} SwimReplay;

/* Accepts (and records) or refuses one (session, seq): 0, or -EALREADY for a duplicate or a
 * sequence number older than the window. seq 0 is never valid. A session not seen before takes
 * the least recently used slot. */
int swim_replay_check(SwimReplay *r, uint64_t session, uint64_t seq);
