/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A fresh SWIM node for each fuzz run (fixed id, key, clock and random stream), and the plaintext
 * walk both SWIM harnesses share. Everything lives in the run's own Swim: nothing is kept. */
#pragma once

#include "fuzz.h"
#include "swim-wire.h"
#include "swim.h"

#define SWIM_FUZZ_NOW (1000 * USEC_PER_SEC)

static const uint8_t swim_fuzz_key[SWIM_KEY_SIZE] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
static const uint8_t swim_fuzz_key_old[SWIM_KEY_SIZE] = { 42, 42, 42 };

static inline void swim_fuzz_random(void *buf, size_t n, void *userdata) {
        uint64_t *x = userdata;
        uint8_t *b = buf;

        for (size_t i = 0; i < n; i++) {
                uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

                z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
                b[i] = (uint8_t) (z >> 56);
        }
}

static inline SwimAddr swim_fuzz_addr(uint16_t port) {
        return (SwimAddr) { .family = AF_INET, .addr = { 127, 0, 0, 1 }, .port = port };
}

/* rng must outlive the Swim. */
static inline Swim *swim_fuzz_new(uint64_t *rng) {
        const uint8_t keys[2][SWIM_KEY_SIZE] = {
                { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 },
                { 42, 42, 42 },
        };
        SwimLocal l = {
                .id = "0123456789abcdef0123456789abcdef",
                .name = "fuzz",
                .addr = swim_fuzz_addr(7946),
                .incarnation = 5,
        };
        SwimConfig c;
        Swim *s = NULL;

        swim_config_lan(&c);
        *rng = 1;
        if (swim_new(&s, &c, &l, swim_fuzz_random, rng, SWIM_FUZZ_NOW) < 0)
                return NULL;
        if (swim_set_keys(s, keys, 2) < 0)
                return swim_free(s);
        return s;
}

/* Reads everything swim has for the caller after a receive, and lets its timers run over what it
 * learnt, so that member records taken from the input are used, not only stored. */
static inline void swim_fuzz_drain(Swim *s) {
        SwimEvent e;
        SwimAddr to;
        const void *d;
        size_t n;

        while (swim_next_event(s, &e) > 0)
                ;
        for (usec_t t = SWIM_FUZZ_NOW; t <= SWIM_FUZZ_NOW + 30 * USEC_PER_SEC; t += 5 * USEC_PER_SEC) {
                (void) swim_tick(s, t);
                while (swim_next_datagram(s, &to, &d, &n) > 0)
                        fuzz_check(n <= SWIM_DATAGRAM_MAX);
                while (swim_next_event(s, &e) > 0)
                        ;
        }
        for (size_t i = 0; i < swim_n_members(s); i++)
                fuzz_check(swim_member(s, i) != NULL);
}

/* The plaintext decoders of swim-wire.c on their own: header, messages, each body. */
static inline void swim_fuzz_walk(const uint8_t *plain, size_t size) {
        SwimReader r, body;
        SwimHeader h;
        uint8_t type;

        swim_reader_init(&r, plain, size);
        if (swim_header_read(&r, &h) < 0)
                return;
        if (h.kind != SWIM_KIND_DATAGRAM)
                (void) swim_reader_u32(&r);
        while (swim_msg_next(&r, &type, &body) > 0) {
                SwimReader b = body;
                SwimRecord rec;
                SwimAddr a;
                uint32_t x, y;

                if (swim_record_read(&b, &rec) >= 0) {
                        fuzz_check(rec.n_meta <= SWIM_META_KEYS_MAX);
                        fuzz_check(strlen(rec.name) <= SWIM_NAME_MAX);
                        for (size_t i = 0; i < rec.n_meta; i++)
                                fuzz_check(rec.meta[i].value_len == 0 ||
                                           (rec.meta[i].value >= (const char *) plain &&
                                            rec.meta[i].value + rec.meta[i].value_len <= (const char *) plain + size));
                }
                b = body;
                (void) swim_load_read(&b, &x, &y);
                b = body;
                (void) swim_reader_u32(&b);
                (void) swim_reader_take(&b, SWIM_ID_SIZE);
                (void) swim_addr_read(&b, &a);
        }
}
