/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes SWIM before unsealing: raw bytes from the network to swim_open() with the test keys, and
 * to a fresh node as a datagram and as a push-pull message. Whatever opens is walked too. */
#include "swim-fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        SwimAddr from = swim_fuzz_addr(7947);
        SwimKey keys[2];
        uint8_t *plain;
        uint64_t rng;
        Swim *s;
        int n;

        swim_key_derive(swim_fuzz_key, &keys[0]);
        swim_key_derive(swim_fuzz_key_old, &keys[1]);
        plain = malloc(MAX(size, (size_t) SWIM_SEAL_OVERHEAD) - SWIM_SEAL_OVERHEAD + 1);
        if (!plain)
                return 0;
        n = swim_open(keys, 2, data, size, SWIM_DATAGRAM_MAX, plain,
                      MAX(size, (size_t) SWIM_SEAL_OVERHEAD) - SWIM_SEAL_OVERHEAD + 1);
        if (n >= 0) {
                fuzz_check((size_t) n + SWIM_SEAL_OVERHEAD == size);
                swim_fuzz_walk(plain, (size_t) n);
        }
        free(plain);

        s = swim_fuzz_new(&rng);
        if (!s)
                return 0;
        (void) swim_receive_datagram(s, SWIM_FUZZ_NOW, &from, data, size);
        (void) swim_push_pull_receive(s, SWIM_FUZZ_NOW, data, size);
        swim_fuzz_drain(s);
        swim_free(s);
        return 0;
}
