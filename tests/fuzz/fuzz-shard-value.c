/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Fuzzes the decoders of the shard store's values (services/shardd/shard-value.c): the checked
 * frame on raw bytes, and each payload decoder (document, log entry, shard state, cursor) behind
 * a frame sealed here, so that the fuzzer gets past the checksum, as a damaged disk would not.
 * Input: a byte picking the decoder (low 2 bits) and the dimension, a key length byte, the key,
 * then the value (raw for the frame check) whose frame flags are its first two bytes. */
#include "fuzz.h"
#include "shard-value.h"

static const uint8_t kinds[4] = { SHARD_VALUE_DOC, SHARD_VALUE_LOG, SHARD_VALUE_STATE, SHARD_VALUE_CURSOR };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char id[SHARD_ID_MAX + 1];
        const uint8_t *key, *payload;
        size_t key_size, payload_size;
        unsigned which, dimension;
        uint8_t *value;
        uint16_t flags;
        ShardReader r;

        if (size < 4)
                return 0;
        which = data[0] & 3;
        dimension = 1 + (data[0] >> 2);
        key_size = MIN((size_t) data[1], size - 2);
        key = data + 2;
        payload = key + key_size;
        payload_size = size - 2 - key_size;

        /* The raw bytes as a stored value: the checksum must turn them away, without reading past. */
        (void) shard_frame_open(payload, payload_size, kinds[which], &flags, &r);

        if (payload_size < 2)
                return 0;
        flags = (uint16_t) (payload[0] << 8 | payload[1]);
        payload += 2;
        payload_size -= 2;
        value = malloc(SHARD_FRAME_HEADER + payload_size);
        if (!value)
                return 0;
        if (payload_size > 0)
                memcpy(value + SHARD_FRAME_HEADER, payload, payload_size);
        shard_frame_seal(value, kinds[which], flags, payload_size);
        fuzz_check(shard_frame_open(value, SHARD_FRAME_HEADER + payload_size, kinds[which], &flags, &r) == 0);

        switch (kinds[which]) {
        case SHARD_VALUE_DOC: {
                ShardDoc d;

                if (shard_doc_decode(key, key_size, value, SHARD_FRAME_HEADER + payload_size, dimension, id, &d) < 0)
                        break;
                fuzz_check(strlen(id) <= SHARD_ID_MAX);
                if (!d.deleted) {
                        float *v = malloc(sizeof(float) * d.dimension);

                        fuzz_check(d.dimension == dimension);
                        if (v)
                                shard_doc_embedding(&d, v);
                        free(v);
                }
                break;
        }
        case SHARD_VALUE_LOG: {
                ShardLogEntry e;

                if (shard_log_decode(key, key_size, value, SHARD_FRAME_HEADER + payload_size, id, &e) >= 0)
                        fuzz_check(strlen(id) <= SHARD_ID_MAX);
                break;
        }
        case SHARD_VALUE_STATE: {
                ShardInfo info;
                uint16_t state_flags;

                if (shard_state_decode(key, key_size, value, SHARD_FRAME_HEADER + payload_size, &info, &state_flags) >= 0)
                        fuzz_check(info.floor_seq <= info.head.seq);
                break;
        }
        case SHARD_VALUE_CURSOR: {
                ShardCursor c;

                (void) shard_cursor_decode(value, SHARD_FRAME_HEADER + payload_size, &c);
                break;
        }
        }
        free(value);
        return 0;
}
