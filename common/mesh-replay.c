/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The replay cache (mesh-replay.h): an open-addressing table keyed by the MAC's first 16 bytes.
 * Nothing is ever deleted: a slot whose authenticator is past its window is free to take, and
 * when every slot of a probe window is live the oldest one is overwritten (counted). */
#include <stdlib.h>
#include <string.h>

#include "mesh-auth.h"
#include "mesh-replay.h"

#define KEY_SIZE 16

typedef struct Slot {
        uint8_t key[KEY_SIZE];
        uint64_t ts;            /* 0: never used */
} Slot;

struct MeshReplay {
        Slot *slots;
        size_t mask;
        uint64_t evicted;
};

int mesh_replay_new(size_t slots, MeshReplay **ret) {
        MeshReplay *r;

        if (slots < MESH_REPLAY_PROBE || (slots & (slots - 1)) != 0)
                return -EINVAL;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->slots = calloc(slots, sizeof(Slot));
        if (!r->slots) {
                free(r);
                return -ENOMEM;
        }
        r->mask = slots - 1;
        *ret = r;
        return 0;
}

MeshReplay *mesh_replay_free(MeshReplay *r) {
        if (!r)
                return NULL;
        free(r->slots);
        free(r);
        return NULL;
}

/* Still replayable: within the window of now, either side. */
static bool slot_live(const Slot *s, uint64_t now_sec) {
        return s->ts != 0 && s->ts + MESH_AUTH_WINDOW_SEC >= now_sec;
}

int mesh_replay_check(MeshReplay *r, uint64_t ts, const uint8_t *mac, size_t mac_size, uint64_t now_sec) {
        uint8_t key[KEY_SIZE] = {};
        Slot *free_slot = NULL, *oldest = NULL;
        size_t h;

        memcpy(key, mac, MIN(mac_size, sizeof(key)));
        /* The MAC is uniformly random to anyone without the key: its bytes are the hash. */
        memcpy(&h, key, sizeof(h));
        if (ts == 0)
                ts = 1;         /* 0 marks an unused slot; a time of 0 is outside every window anyway */
        for (size_t i = 0; i < MESH_REPLAY_PROBE; i++) {
                Slot *s = &r->slots[(h + i) & r->mask];

                if (s->ts == 0) {
                        if (!free_slot)
                                free_slot = s;
                        break;  /* the end of this key's chain: nothing was ever put past here */
                }
                if (memcmp(s->key, key, sizeof(key)) == 0) {
                        if (slot_live(s, now_sec))
                                return -EALREADY;
                        free_slot = s;
                        break;
                }
                if (!slot_live(s, now_sec) && !free_slot)
                        free_slot = s;
                if (!oldest || s->ts < oldest->ts)
                        oldest = s;
        }
        if (!free_slot) {
                free_slot = oldest;
                r->evicted++;
        }
        memcpy(free_slot->key, key, sizeof(key));
        free_slot->ts = ts;
        return 0;
}

uint64_t mesh_replay_evicted(const MeshReplay *r) {
        return r->evicted;
}
