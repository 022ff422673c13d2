/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes SWIM after unsealing: the plaintext decoders of swim-wire.c directly, then the same
 * plaintext sealed with the test key and handed to a fresh node as a datagram or a push-pull
 * message (swim.c's own walk over it, push-pull's member list included).
 * Input: one byte (bit 0: push-pull, else datagram), then the plaintext. */
#include "swim-fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const uint8_t nonce[SWIM_NONCE_SIZE] = { 7 };
        SwimAddr from = swim_fuzz_addr(7947);
        uint8_t *sealed;
        SwimKey key;
        bool push_pull;
        uint64_t rng;
        Swim *s;
        int n, r;

        if (size < 1 || size - 1 > SWIM_DATAGRAM_MAX * 4)
                return 0;
        push_pull = data[0] & 1;
        data++;
        size--;

        swim_fuzz_walk(data, size);

        swim_key_derive(swim_fuzz_key, &key);
        sealed = malloc(size + SWIM_SEAL_OVERHEAD);
        if (!sealed)
                return 0;
        n = swim_seal(&key, nonce, data, size, sealed, size + SWIM_SEAL_OVERHEAD);
        fuzz_check(n == (int) (size + SWIM_SEAL_OVERHEAD));

        s = swim_fuzz_new(&rng);
        if (!s)
                goto finish;
        if (push_pull) {
                r = swim_push_pull_receive(s, SWIM_FUZZ_NOW, sealed, (size_t) n);
                if (r == 1) {
                        void *reply = NULL;
                        size_t reply_size;

                        if (swim_push_pull_build(s, SWIM_FUZZ_NOW, true, &reply, &reply_size) >= 0)
                                free(reply);
                }
        } else
                r = swim_receive_datagram(s, SWIM_FUZZ_NOW, &from, sealed, (size_t) n);
        (void) r;
        swim_fuzz_drain(s);
        swim_free(s);

finish:
        free(sealed);
        return 0;
}
