/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Sliding-window replay detection, as IPsec does it (RFC 4303 3.4.3), kept per sender session
 * so that a replayed packet of a forgotten session cannot make the live session look old. */
#include "swim-replay.h"

int swim_replay_check(SwimReplay *r, uint64_t session, uint64_t seq) {
        SwimReplaySession *slot = NULL, *lru = NULL;

        if (seq == 0)
                return -EALREADY;

        for (size_t i = 0; i < SWIM_REPLAY_SESSIONS; i++) {
                SwimReplaySession *x = &r->sessions[i];

                if (x->highest != 0 && x->session == session) {
                        slot = x;
                        break;
                }
                /* An empty slot first, else the least recently used one. */
                if (!lru || (lru->highest != 0 && (x->highest == 0 || x->used < lru->used)))
                        lru = x;
        }

        if (!slot) {
                *lru = (SwimReplaySession) { .session = session, .highest = seq, .window = 1 };
                lru->used = ++r->clock;
                return 0;
        }

        if (seq > slot->highest) {
                uint64_t shift = seq - slot->highest;

                slot->window = shift >= SWIM_REPLAY_WINDOW ? 0 : slot->window << shift;
                slot->window |= 1;
                slot->highest = seq;
        } else {
                uint64_t off = slot->highest - seq;

                if (off >= SWIM_REPLAY_WINDOW || (slot->window & (UINT64_C(1) << off)))
                        return -EALREADY;
                slot->window |= UINT64_C(1) << off;
        }
        slot->used = ++r->clock;
        return 0;
}
