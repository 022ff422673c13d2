/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for the SWIM wire format and sealing (services/gossipd/swim-wire.c) with known-answer
 * vectors, and what swim_receive_datagram() refuses: truncated, oversized, wrongly keyed, tampered, replayed. */
#include "hex.h"
#include "swim-replay.h"
#include "swim-test-net.h"

START_TEST(test_addr) {
        char buf[SWIM_ADDR_STRING_MAX];
        struct sockaddr_storage ss;
        socklen_t len;
        SwimAddr a, b;

        ck_assert_int_eq(swim_addr_parse("10.0.0.1:11436", &a), 0);
        ck_assert_int_eq(a.family, AF_INET);
        ck_assert_int_eq(a.port, 11436);
        ck_assert_int_eq(swim_addr_format(&a, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "10.0.0.1:11436");
        swim_addr_to_sockaddr(&a, &ss, &len);
        ck_assert_int_eq(swim_addr_from_sockaddr((struct sockaddr *) &ss, len, &b), 0);
        ck_assert(swim_addr_equal(&a, &b));

        ck_assert_int_eq(swim_addr_parse("[fd00::1]:7", &a), 0);
        ck_assert_int_eq(a.family, AF_INET6);
        ck_assert_int_eq(swim_addr_format(&a, buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "[fd00::1]:7");
        ck_assert(!swim_addr_equal(&a, &b));

        ck_assert_int_eq(swim_addr_parse("10.0.0.1", &a), -EINVAL);
        ck_assert_int_eq(swim_addr_parse("10.0.0.1:", &a), -EINVAL);
        ck_assert_int_eq(swim_addr_parse("10.0.0.1:65536", &a), -EINVAL);
        ck_assert_int_eq(swim_addr_parse("10.0.0.1:-1", &a), -EINVAL);
        ck_assert_int_eq(swim_addr_parse("host:1", &a), -EINVAL);
        ck_assert_int_eq(swim_addr_parse("fd00::1:1", &a), -EINVAL);
        ck_assert_int_eq(swim_addr_parse("[fd00::1]1", &a), -EINVAL);
        ck_assert_int_eq(swim_addr_parse("", &a), -EINVAL);
}
END_TEST

START_TEST(test_record_roundtrip) {
        char *keys[] = { "api", "models", "version" }, *values[] = { "0.0.0.0:11434", "llama3.2,qwen", "" };
        uint8_t buf[4096], id[SWIM_ID_SIZE];
        SwimAddr addr = net_addr(3);
        SwimWriter w;
        SwimReader r;
        SwimRecord rec;

        ck_assert_int_eq(swim_id_from_string("00112233445566778899AABBCCDDEEFF", id), 0);
        swim_writer_init_fixed(&w, buf, sizeof(buf));
        swim_record_write(&w, id, SWIM_STATE_SUSPECT, 7, 99, "büro-1", &addr, keys, values, 3);
        ck_assert(!w.overflow);

        swim_reader_init(&r, buf, w.len);
        ck_assert_int_eq(swim_record_read(&r, &rec), 0);
        ck_assert(memcmp(rec.id, id, SWIM_ID_SIZE) == 0);
        ck_assert_int_eq(rec.state, SWIM_STATE_SUSPECT);
        ck_assert_uint_eq(rec.incarnation, 7);
        ck_assert_uint_eq(rec.meta_version, 99);
        ck_assert_str_eq(rec.name, "büro-1");
        ck_assert(swim_addr_equal(&rec.addr, &addr));
        ck_assert_uint_eq(rec.n_meta, 3);
        ck_assert_str_eq(rec.meta[1].key, "models");
        ck_assert_uint_eq(rec.meta[1].value_len, strlen("llama3.2,qwen"));
        ck_assert(memcmp(rec.meta[1].value, "llama3.2,qwen", rec.meta[1].value_len) == 0);
        ck_assert_uint_eq(rec.meta[2].value_len, 0);

        /* Every shorter prefix, and one byte more, are refused. */
        for (size_t n = 0; n < w.len; n++) {
                swim_reader_init(&r, buf, n);
                ck_assert_int_eq(swim_record_read(&r, &rec), -EBADMSG);
        }
        buf[w.len] = 0;
        swim_reader_init(&r, buf, w.len + 1);
        ck_assert_int_eq(swim_record_read(&r, &rec), -EBADMSG);

        {
                char id_s[NODE_ID_LEN + 1];

                swim_id_to_string(id, id_s);
                ck_assert_str_eq(id_s, "00112233445566778899aabbccddeeff");
                ck_assert_int_eq(swim_id_from_string("0011", id), -EINVAL);
                ck_assert_int_eq(swim_id_from_string("g0112233445566778899aabbccddeeff", id), -EINVAL);
        }
}
END_TEST

START_TEST(test_record_limits) {
        uint8_t buf[16384], id[SWIM_ID_SIZE] = { 1 };
        SwimAddr addr = net_addr(0);
        SwimWriter w;
        SwimReader r;
        SwimRecord rec;

        /* Unsorted keys. */
        {
                char *keys[] = { "b", "a" }, *values[] = { "1", "2" };

                swim_writer_init_fixed(&w, buf, sizeof(buf));
                swim_record_write(&w, id, SWIM_STATE_ALIVE, 1, 1, "n", &addr, keys, values, 2);
                swim_reader_init(&r, buf, w.len);
                ck_assert_int_eq(swim_record_read(&r, &rec), -EBADMSG);
        }
        /* Invalid key characters, a value with a newline. */
        {
                char *keys[] = { "A" }, *values[] = { "1" };

                swim_writer_init_fixed(&w, buf, sizeof(buf));
                swim_record_write(&w, id, SWIM_STATE_ALIVE, 1, 1, "n", &addr, keys, values, 1);
                swim_reader_init(&r, buf, w.len);
                ck_assert_int_eq(swim_record_read(&r, &rec), -EBADMSG);
        }
        {
                char *keys[] = { "a" }, *values[] = { "x\ny" };

                swim_writer_init_fixed(&w, buf, sizeof(buf));
                swim_record_write(&w, id, SWIM_STATE_ALIVE, 1, 1, "n", &addr, keys, values, 1);
                swim_reader_init(&r, buf, w.len);
                ck_assert_int_eq(swim_record_read(&r, &rec), -EBADMSG);
        }
        /* More metadata bytes than SWIM_META_SIZE_MAX. */
        {
                static char big[3000];
                char *keys[] = { "a", "b" }, *values[] = { big, big };

                memset(big, 'x', sizeof(big) - 1);
                swim_writer_init_fixed(&w, buf, sizeof(buf));
                swim_record_write(&w, id, SWIM_STATE_ALIVE, 1, 1, "n", &addr, keys, values, 2);
                ck_assert(!w.overflow);
                swim_reader_init(&r, buf, w.len);
                ck_assert_int_eq(swim_record_read(&r, &rec), -EBADMSG);
        }
        /* A bad state, a bad address family, a control character in the name. */
        {
                size_t state_off = SWIM_ID_SIZE, name_off = SWIM_ID_SIZE + 1 + 4 + 8 + 1;     /* the name's first byte */

                swim_writer_init_fixed(&w, buf, sizeof(buf));
                swim_record_write(&w, id, SWIM_STATE_ALIVE, 1, 1, "n", &addr, NULL, NULL, 0);
                buf[state_off] = _SWIM_STATE_MAX;
                swim_reader_init(&r, buf, w.len);
                ck_assert_int_eq(swim_record_read(&r, &rec), -EBADMSG);
                buf[state_off] = 0;
                buf[name_off] = 5;
                swim_reader_init(&r, buf, w.len);
                ck_assert_int_eq(swim_record_read(&r, &rec), -EBADMSG);
                buf[name_off] = 'n';
                buf[name_off + 1] = 5;
                swim_reader_init(&r, buf, w.len);
                ck_assert_int_eq(swim_record_read(&r, &rec), -EBADMSG);
                buf[name_off + 1] = 4;
                swim_reader_init(&r, buf, w.len);
                ck_assert_int_eq(swim_record_read(&r, &rec), 0);
        }
}
END_TEST

START_TEST(test_seal_open) {
        uint8_t plain[100], sealed[200], out[200], nonce[SWIM_NONCE_SIZE] = { 9 };
        SwimKey k1, k2, both[2];
        int n;

        for (size_t i = 0; i < sizeof(plain); i++)
                plain[i] = (uint8_t) i;
        swim_key_derive(test_key1, &k1);
        swim_key_derive(test_key2, &k2);
        ck_assert_uint_eq(k1.id, swim_key_id(test_key1));
        ck_assert_uint_ne(k1.id, k2.id);        /* true for these two keys */
        ck_assert(memcmp(k1.aead, test_key1, SWIM_KEY_SIZE) != 0);

        n = swim_seal(&k1, nonce, plain, sizeof(plain), sealed, sizeof(sealed));
        ck_assert_int_eq(n, (int) (sizeof(plain) + SWIM_SEAL_OVERHEAD));
        ck_assert_uint_eq(sealed[0], SWIM_PROTOCOL_VERSION);
        ck_assert_uint_eq(sealed[1], k1.id);
        ck_assert_int_eq(swim_seal(&k1, nonce, plain, sizeof(plain), sealed, sizeof(plain) + 10), -ENOBUFS);

        ck_assert_int_eq(swim_open(&k1, 1, sealed, n, 1000, out, sizeof(out)), (int) sizeof(plain));
        ck_assert(memcmp(out, plain, sizeof(plain)) == 0);
        ck_assert_int_eq(swim_open(&k2, 1, sealed, n, 1000, out, sizeof(out)), -EKEYREJECTED);
        both[0] = k2;
        both[1] = k1;
        ck_assert_int_eq(swim_open(both, 2, sealed, n, 1000, out, sizeof(out)), (int) sizeof(plain));
        /* A key whose id collides but which is not the key. */
        k2.id = k1.id;
        ck_assert_int_eq(swim_open(&k2, 1, sealed, n, 1000, out, sizeof(out)), -EKEYREJECTED);
        ck_assert_int_eq(swim_open(&k1, 1, sealed, n, n - 1, out, sizeof(out)), -EMSGSIZE);

        for (int i = 0; i <= n; i++) {
                int r = swim_open(&k1, 1, sealed, (size_t) i, 1000, out, sizeof(out));

                if (i < 2 || (i < SWIM_SEAL_OVERHEAD))
                        ck_assert_int_eq(r, -EBADMSG);
                else if (i < n)
                        ck_assert_int_eq(r, -EKEYREJECTED);
                else
                        ck_assert_int_eq(r, (int) sizeof(plain));
        }
        for (int i = 0; i < n; i++) {
                sealed[i] ^= 0x40;
                ck_assert_int_eq(swim_open(&k1, 1, sealed, n, 1000, out, sizeof(out)),
                                 i == 0 ? -EPROTONOSUPPORT : -EKEYREJECTED);
                sealed[i] ^= 0x40;
        }
}
END_TEST

/* A real datagram of node 0 to node 1: node 0 announces itself. */
static size_t take_datagram(TestNet *net, size_t from, uint8_t *buf) {
        const void *data;
        size_t size;
        SwimAddr to;

        ck_assert_int_eq(swim_next_datagram(net->nodes[from], &to, &data, &size), 1);
        memcpy(buf, data, size);
        return size;
}

START_TEST(test_receive_rejects) {
        SwimConfig c = net_config();
        const SwimCounters *k;
        uint8_t buf[SWIM_DATAGRAM_MAX + 1];
        SwimAddr a1 = net_addr(1), a0 = net_addr(0);
        TestNet net;
        size_t n;
        uint64_t expect_malformed = 0, expect_key = 0;

        net_init(&net, 2, &c);
        k = swim_counters(net.nodes[1]);
        ck_assert_int_eq(swim_announce(net.nodes[0], net.now, &a1), 0);
        n = take_datagram(&net, 0, buf);

        /* Every truncation. */
        for (size_t i = 0; i < n; i++) {
                int r = swim_receive_datagram(net.nodes[1], net.now, &a0, buf, i);

                if (i < SWIM_SEAL_OVERHEAD) {
                        ck_assert_int_eq(r, -EBADMSG);
                        expect_malformed++;
                } else {
                        ck_assert_int_eq(r, -EKEYREJECTED);
                        expect_key++;
                }
        }
        ck_assert_uint_eq(k->dropped_malformed, expect_malformed);
        ck_assert_uint_eq(k->dropped_key, expect_key);
        ck_assert_uint_eq(swim_n_members(net.nodes[1]), 1);

        /* Tampering with any byte. */
        for (size_t i = 1; i < n; i++) {
                buf[i] ^= 1;
                ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, buf, n), -EKEYREJECTED);
                buf[i] ^= 1;
        }
        ck_assert_uint_eq(k->dropped_key, expect_key + n - 1);

        /* Another protocol version. */
        buf[0]++;
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, buf, n), -EPROTONOSUPPORT);
        buf[0]--;
        ck_assert_uint_eq(k->dropped_version, 1);

        /* Oversized. */
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, buf, SWIM_DATAGRAM_MAX + 1), -EMSGSIZE);
        ck_assert_uint_eq(k->dropped_oversized, 1);

        /* The real thing: accepted once, learned from, answered; then a replay. */
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, buf, n), 0);
        ck_assert_uint_eq(swim_n_members(net.nodes[1]), 2);
        ck_assert_int_eq(net_state(&net, 1, 0), SWIM_STATE_ALIVE);
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, buf, n), -EALREADY);
        ck_assert_uint_eq(k->dropped_replay, 1);
        /* The answer carries node 1's own record, so node 0 learns it too. */
        net_flush(&net);
        ck_assert_int_eq(net_state(&net, 0, 1), SWIM_STATE_ALIVE);

        /* Our own datagram coming back is a replay too. */
        ck_assert_int_eq(swim_announce(net.nodes[1], net.now, &a0), 0);
        n = take_datagram(&net, 1, buf);
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a1, buf, n), -EALREADY);

        /* Without keys nothing is accepted or sent. */
        {
                Swim *s = NULL;
                SwimLocal l = { .id = "000000000000000000000000000000ff", .name = "x", .addr = a0 };
                const void *d;
                size_t sz;
                SwimAddr to;
                uint64_t rng = 1;

                ck_assert_int_eq(swim_new(&s, &c, &l, test_random, &rng, net.now), 0);
                ck_assert_int_eq(swim_receive_datagram(s, net.now, &a0, buf, n), -EKEYREJECTED);
                ck_assert_int_eq(swim_announce(s, net.now, &a1), -ENOKEY);
                ck_assert_int_eq(swim_tick(s, net.now + 10 * SEC), 0);
                ck_assert_int_eq(swim_next_datagram(s, &to, &d, &sz), 0);
                swim_free(s);
        }
        net_done(&net);
}
END_TEST

START_TEST(test_receive_malformed_plaintext) {
        SwimConfig c = net_config();
        const SwimCounters *k;
        uint8_t out[SWIM_DATAGRAM_MAX], msgs[512];
        SwimAddr a0 = net_addr(0);
        SwimWriter w;
        TestNet net;
        size_t n, o;
        uint64_t seq = 1;

        net_init(&net, 2, &c);
        k = swim_counters(net.nodes[1]);

        /* A message whose length runs past the end. */
        swim_writer_init_fixed(&w, msgs, sizeof(msgs));
        o = swim_msg_begin(&w, SWIM_MSG_ACK);
        swim_writer_u32(&w, 5);
        swim_msg_end(&w, o);
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 1, seq++, msgs, w.len - 1, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, out, n), -EBADMSG);

        /* An ACK with a wrong body size, a SUSPECT too short. */
        msgs[2]++;
        msgs[w.len] = 0;
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 1, seq++, msgs, w.len + 1, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, out, n), -EBADMSG);
        swim_writer_init_fixed(&w, msgs, sizeof(msgs));
        msg_state(&w, SWIM_MSG_SUSPECT, 1, 1);
        msgs[2]--;
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 1, seq++, msgs, w.len - 1, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, out, n), -EBADMSG);

        /* A push-pull message where a datagram is expected, and a bad kind. */
        n = craft(test_key1, SWIM_KIND_PUSH_PULL_REQUEST, 0, 1, seq++, NULL, 0, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, out, n), -EBADMSG);
        n = craft(test_key1, 77, 0, 1, seq++, NULL, 0, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, out, n), -EBADMSG);
        ck_assert_uint_eq(k->dropped_malformed, 5);

        /* An unknown message type is skipped; an empty datagram is fine. */
        swim_writer_init_fixed(&w, msgs, sizeof(msgs));
        o = swim_msg_begin(&w, 200);
        swim_writer_u32(&w, 5);
        swim_msg_end(&w, o);
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 1, seq++, msgs, w.len, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, out, n), 0);

        /* Garbage sealed with the right key: refused, never a crash. */
        for (unsigned i = 0; i < 2000; i++) {
                uint64_t x = i;
                size_t len = splitmix64(&x) % sizeof(msgs);
                int r;

                test_random(msgs, len, &x);
                n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 1, seq++, msgs, len, out, sizeof(out));
                r = swim_receive_datagram(net.nodes[1], net.now, &a0, out, n);
                ck_assert(r == 0 || r == -EBADMSG);
        }
        /* And unsealed garbage. */
        for (unsigned i = 0; i < 2000; i++) {
                uint64_t x = i + 99999;
                size_t len = splitmix64(&x) % sizeof(out);
                int r;

                test_random(out, len, &x);
                if (len > 0 && i % 2)
                        out[0] = SWIM_PROTOCOL_VERSION;
                r = swim_receive_datagram(net.nodes[1], net.now, &a0, out, len);
                ck_assert(r < 0);
        }
        net_done(&net);
}
END_TEST

START_TEST(test_replay_window) {
        SwimReplay r = {};

        ck_assert_int_eq(swim_replay_check(&r, 1, 0), -EALREADY);
        ck_assert_int_eq(swim_replay_check(&r, 1, 5), 0);
        ck_assert_int_eq(swim_replay_check(&r, 1, 5), -EALREADY);
        ck_assert_int_eq(swim_replay_check(&r, 1, 3), 0);       /* reordered, inside the window */
        ck_assert_int_eq(swim_replay_check(&r, 1, 3), -EALREADY);
        ck_assert_int_eq(swim_replay_check(&r, 1, 100), 0);
        ck_assert_int_eq(swim_replay_check(&r, 1, 37), 0);      /* 100 - 63 */
        ck_assert_int_eq(swim_replay_check(&r, 1, 36), -EALREADY); /* older than the window */
        ck_assert_int_eq(swim_replay_check(&r, 1, 99), 0);
        ck_assert_int_eq(swim_replay_check(&r, 1, 99), -EALREADY);
        ck_assert_int_eq(swim_replay_check(&r, 1, 1000), 0);
        ck_assert_int_eq(swim_replay_check(&r, 1, 999), 0);
        ck_assert_int_eq(swim_replay_check(&r, 1, 100), -EALREADY);

        /* A new session (the sender restarted) starts its own window; the old one stays
         * remembered, so its packets cannot be replayed either. */
        ck_assert_int_eq(swim_replay_check(&r, 2, 1), 0);
        ck_assert_int_eq(swim_replay_check(&r, 2, 1), -EALREADY);
        ck_assert_int_eq(swim_replay_check(&r, 1, 999), -EALREADY);
        ck_assert_int_eq(swim_replay_check(&r, 1, 1000), -EALREADY);
        ck_assert_int_eq(swim_replay_check(&r, 1, 2), -EALREADY);
        ck_assert_int_eq(swim_replay_check(&r, 3, 1), 0);
        ck_assert_int_eq(swim_replay_check(&r, 4, 1), 0);
        /* Session 1 was used least recently: a fifth session evicts it, the others stay. */
        ck_assert_int_eq(swim_replay_check(&r, 5, 1), 0);
        ck_assert_int_eq(swim_replay_check(&r, 2, 1), -EALREADY);
        ck_assert_int_eq(swim_replay_check(&r, 5, 1), -EALREADY);
        ck_assert_int_eq(swim_replay_check(&r, 2, 2), 0);
}
END_TEST

START_TEST(test_replay_crafted) {
        SwimConfig c = net_config();
        uint8_t out[SWIM_DATAGRAM_MAX], msgs[64];
        SwimAddr a0 = net_addr(0);
        SwimWriter w;
        TestNet net;
        size_t n;

        net_init(&net, 2, &c);
        swim_writer_init_fixed(&w, msgs, sizeof(msgs));
        msg_state(&w, SWIM_MSG_SUSPECT, 5, 1);   /* about a node nobody knows: ignored */

        n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 77, 10, msgs, w.len, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, out, n), 0);
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, out, n), -EALREADY);
        /* The same sequence number sealed afresh (another nonce) is still a replay. */
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 77, 10, msgs, w.len, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, out, n), -EALREADY);
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 77, 9, msgs, w.len, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, out, n), 0);
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 77, 200, msgs, w.len, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, out, n), 0);
        n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 77, 100, msgs, w.len, out, sizeof(out));
        ck_assert_int_eq(swim_receive_datagram(net.nodes[1], net.now, &a0, out, n), -EALREADY);
        ck_assert_uint_eq(swim_counters(net.nodes[1])->dropped_replay, 3);
        net_done(&net);
}
END_TEST

START_TEST(test_key_rotation) {
        SwimConfig c = net_config();
        uint8_t keys[2][SWIM_KEY_SIZE];
        TestNet net;

        net_init(&net, 2, &c);
        /* Node 1 already seals with the new key and still opens the old one. */
        memcpy(keys[0], test_key2, SWIM_KEY_SIZE);
        memcpy(keys[1], test_key1, SWIM_KEY_SIZE);
        ck_assert_int_eq(swim_set_keys(net.nodes[1], (const uint8_t (*)[SWIM_KEY_SIZE]) keys, 2), 0);
        ck_assert_int_eq(swim_set_keys(net.nodes[1], (const uint8_t (*)[SWIM_KEY_SIZE]) keys, 0), -EINVAL);
        ck_assert_int_eq(swim_set_keys(net.nodes[1], (const uint8_t (*)[SWIM_KEY_SIZE]) keys, SWIM_KEYS_MAX + 1), -EINVAL);

        /* 0 -> 1 opens (second key); 1 -> 0 does not (node 0 lacks the new key). */
        {
                void *req, *rep;
                size_t req_size, rep_size;

                ck_assert_int_eq(swim_push_pull_build(net.nodes[0], net.now, false, &req, &req_size), 0);
                ck_assert_int_eq(swim_push_pull_receive(net.nodes[1], net.now, req, req_size), 1);
                ck_assert_int_eq(swim_push_pull_build(net.nodes[1], net.now, true, &rep, &rep_size), 0);
                ck_assert_int_eq(swim_push_pull_receive(net.nodes[0], net.now, rep, rep_size), -EKEYREJECTED);
                free(req);
                free(rep);
        }
        ck_assert_int_eq(net_state(&net, 1, 0), SWIM_STATE_ALIVE);
        ck_assert_int_eq(net_state(&net, 0, 1), _SWIM_STATE_INVALID);
        ck_assert_uint_eq(swim_counters(net.nodes[0])->dropped_key, 1);

        /* Node 0 learns the new key as second key: both directions work. */
        memcpy(keys[0], test_key1, SWIM_KEY_SIZE);
        memcpy(keys[1], test_key2, SWIM_KEY_SIZE);
        ck_assert_int_eq(swim_set_keys(net.nodes[0], (const uint8_t (*)[SWIM_KEY_SIZE]) keys, 2), 0);
        net_push_pull(&net, 1, 0);
        ck_assert_int_eq(net_state(&net, 0, 1), SWIM_STATE_ALIVE);
        net_run(&net, 2 * SEC);
        ck_assert_uint_eq(swim_n_alive(net.nodes[0]), 2);
        ck_assert_uint_eq(swim_n_alive(net.nodes[1]), 2);

        /* The old key retired everywhere: still fine. */
        ck_assert_int_eq(swim_set_keys(net.nodes[0], &test_key2, 1), 0);
        ck_assert_int_eq(swim_set_keys(net.nodes[1], &test_key2, 1), 0);
        net_run(&net, 3 * SEC);
        ck_assert_int_eq(net_state(&net, 0, 1), SWIM_STATE_ALIVE);
        ck_assert_int_eq(net_state(&net, 1, 0), SWIM_STATE_ALIVE);

        /* A node with another key never becomes a member. */
        net_start(&net, 2, &c, 1);
        ck_assert_int_eq(swim_set_keys(net.nodes[2], &test_key1, 1), 0);
        {
                SwimAddr a0 = net_addr(0);

                ck_assert_int_eq(swim_announce(net.nodes[2], net.now, &a0), 0);
        }
        net_run(&net, 2 * SEC);
        ck_assert_int_eq(net_state(&net, 0, 2), _SWIM_STATE_INVALID);
        ck_assert_int_eq(net_state(&net, 1, 2), _SWIM_STATE_INVALID);
        ck_assert_uint_eq(swim_n_members(net.nodes[2]), 1);
        ck_assert_uint_gt(swim_counters(net.nodes[0])->dropped_key, 0);
        net_done(&net);
}
END_TEST

START_TEST(test_push_pull_rejects) {
        SwimConfig c = net_config();
        void *req;
        size_t size;
        TestNet net;
        uint8_t big[64] = { SWIM_PROTOCOL_VERSION };

        net_init(&net, 2, &c);
        ck_assert_int_eq(swim_push_pull_build(net.nodes[0], net.now, false, &req, &size), 0);
        for (size_t i = 0; i < size; i++)
                ck_assert_int_lt(swim_push_pull_receive(net.nodes[1], net.now, req, i), 0);
        ((uint8_t *) req)[size - 1] ^= 1;
        ck_assert_int_eq(swim_push_pull_receive(net.nodes[1], net.now, req, size), -EKEYREJECTED);
        ((uint8_t *) req)[size - 1] ^= 1;
        /* Oversized: refused before anything is read. */
        ck_assert_int_eq(swim_push_pull_receive(net.nodes[1], net.now, big, SWIM_PUSH_PULL_MAX + 1), -EMSGSIZE);
        ck_assert_int_eq(swim_push_pull_receive(net.nodes[1], net.now, req, size), 1);
        ck_assert_int_eq(swim_push_pull_receive(net.nodes[1], net.now, req, size), -EALREADY);
        ck_assert_uint_eq(swim_counters(net.nodes[1])->dropped_replay, 1);
        ck_assert_uint_eq(swim_counters(net.nodes[1])->dropped_oversized, 1);
        free(req);

        /* A datagram is not a push-pull message. */
        {
                uint8_t out[256];
                size_t n = craft(test_key1, SWIM_KIND_DATAGRAM, 0, 5, 1, NULL, 0, out, sizeof(out));

                ck_assert_int_eq(swim_push_pull_receive(net.nodes[1], net.now, out, n), -EBADMSG);
                /* A count that does not match the records. */
                {
                        uint8_t cnt[4] = { 0, 0, 0, 1 };

                        n = craft(test_key1, SWIM_KIND_PUSH_PULL_REPLY, 0, 5, 2, cnt, 4, out, sizeof(out));
                        ck_assert_int_eq(swim_push_pull_receive(net.nodes[1], net.now, out, n), -EBADMSG);
                        cnt[0] = 0xff;
                        n = craft(test_key1, SWIM_KIND_PUSH_PULL_REPLY, 0, 5, 3, cnt, 4, out, sizeof(out));
                        ck_assert_int_eq(swim_push_pull_receive(net.nodes[1], net.now, out, n), -EBADMSG);
                }
        }
        net_done(&net);
}
END_TEST

/* Names and values end up in D-Bus strings: invalid UTF-8 is refused where they are decoded. */
START_TEST(test_text_validation) {
        static const char *const good[] = { "", "node-1", "Büro", "日本", "\xf0\x9f\x8d\x84", "a,b,c" };
        static const char *const bad[] = {
                "\xff", "\xc0\xaf",                   /* invalid byte, overlong '/' */
                "\xe0\x80\xaf", "\xed\xa0\x80",        /* overlong, surrogate */
                "\xf4\x90\x80\x80", "\xc3", "ab\xe6\x97", /* above U+10FFFF, truncated */
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                ck_assert(swim_name_valid(good[i], strlen(good[i])));
                ck_assert(swim_meta_value_valid(good[i], strlen(good[i])));
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                ck_assert(!swim_name_valid(bad[i], strlen(bad[i])));
                ck_assert(!swim_meta_value_valid(bad[i], strlen(bad[i])));
        }
        ck_assert(!swim_meta_value_valid("a\nb", 3));
        ck_assert(!swim_name_valid("a\tb", 3));
}
END_TEST

/* --- Known-answer vectors ---
 * The expected bytes come from tests/unit/kat-vectors.py, which computes them from
 * docs/gossip-protocol.md with Python's hashlib and its own XChaCha20-Poly1305, not from this
 * code. Nodes of different versions must agree on every byte: when one of these fails, the wire
 * format changed, and a mixed-version mesh would drop each other's datagrams. */

/* BLAKE2b-256(key = mesh key, "mycelia swim key id v1")[0] and BLAKE2b-256(key = mesh key,
 * "mycelia swim seal v1"), for the mesh key 00 01 .. 1f and the other key 20 21 .. 3f. */
#define KAT_KEY_ID 0x84
#define KAT_AEAD_KEY "adf9d078a5db2d9f69d38ae4dec91739869b74557a96537e633375d220156757"
#define KAT_KEY_ID_OTHER 0xa7
#define KAT_AEAD_KEY_OTHER "f1fea23e807e2ba6b795c1ddf44c051a7c02bba3b7fcc3c2985fc0aa30c76ad4"

#define KAT_ID_A "00112233445566778899aabbccddeeff"
#define KAT_ID_B "ffeeddccbbaa99887766554433221100"
#define KAT_ID_C "0123456789abcdeffedcba9876543210"
#define KAT_ID_R "0000000000000000000000000000abcd"

/* kind 3, sender B, session 0x1112131415161718, seq 0x2122232425262728, incarnation
 * 0x31323334, meta_version 0x4142434445464748. */
#define KAT_HEADER \
        "03ffeeddccbbaa99887766554433221100111213141516171821222324252627" \
        "28313233344142434445464748"

/* ALIVE: A, alive, incarnation 7, meta_version 3, "büro-1", 10.0.0.1:11436, api, models and an
 * empty version. */
#define KAT_ALIVE_A \
        "04006100112233445566778899aabbccddeeff00000000070000000000000003" \
        "0762c3bc726f2d31040a0000012cac0303617069000e31302e302e302e313a31" \
        "31343334066d6f64656c73000d6c6c616d61332e322c7177656e077665727369" \
        "6f6e0000"

/* MEMBER: B, dead, incarnation 0x01020304, meta_version 0x0a0b0c0d0e0f1011, no name,
 * [fd00::1]:7, no metadata. */
#define KAT_MEMBER_B \
        "080032ffeeddccbbaa9988776655443322110002010203040a0b0c0d0e0f1011" \
        "0006fd000000000000000000000000000001000700"

/* PING 0x01020304 for whoever is there, PING 0xfffffffe for B, ACK 0x01020304, PING-REQ
 * 0x0a0b0c0d for B at 192.168.1.20:7946. */
#define KAT_PROBES \
        "0100140102030400000000000000000000000000000000010014fffffffeffee" \
        "ddccbbaa998877665544332211000200040102030403001b0a0b0c0dffeeddcc" \
        "bbaa9988776655443322110004c0a801141f0a"

/* SUSPECT B at 5, DEAD B at 6, LEFT C at 0x01020304. */
#define KAT_STATES \
        "050014ffeeddccbbaa9988776655443322110000000005060014ffeeddccbbaa" \
        "99887766554433221100000000060700140123456789abcdeffedcba98765432" \
        "1001020304"

/* A announces itself: header (datagram, A, session 0x0123456789abcdef, seq 1, record version
 * (7, 3)), KAT_ALIVE_A, a PING 0x01020304 for whoever is there. Then sealed with the nonce
 * 40 41 .. 57. */
#define KAT_DATAGRAM \
        "0100112233445566778899aabbccddeeff0123456789abcdef00000000000000" \
        "0100000007000000000000000304006100112233445566778899aabbccddeeff" \
        "000000000700000000000000030762c3bc726f2d31040a0000012cac03036170" \
        "69000e31302e302e302e313a3131343334066d6f64656c73000d6c6c616d6133" \
        "2e322c7177656e0776657273696f6e0000010014010203040000000000000000" \
        "0000000000000000"
#define KAT_DATAGRAM_SEALED \
        "0184404142434445464748494a4b4c4d4e4f5051525354555657fe6d59f8f9cb" \
        "30829a93fcc5cf858f597f567ec10e1ec6f9429c6fb4c5b75bd8a12e6290033a" \
        "6e6de52b56bd726d0ef980cff63f8c0d881866f187933b0b1d97416956a612dd" \
        "2d21d2ada1ed9d1ecd9070ccf758af53ec6afcb939184a024228b12ec4f332cd" \
        "056616b3e50fc4e26115c4e01ec0ef5b42400b60567eaf97b47491ee505ef5bf" \
        "429a843fb009e70144b2131cb2a49be21e5c640737463f212b006c0626cfcddf" \
        "1b859c80ea0df4c2b546207deb8c8970e57f"

/* C's push-pull request: header (push-pull request, C, session 0xfedcba9876543210, seq 1,
 * record version (2, 1)), count 2, MEMBER C (alive, 2, 1, "gpu-box", [fd00::c]:11436,
 * api=[fd00::c]:11434), MEMBER B (suspect, 9, 0, "old", 10.0.0.9:11436). Sealed with the nonce
 * 60 61 .. 77. */
#define KAT_PUSH_PULL \
        "020123456789abcdeffedcba9876543210fedcba987654321000000000000000" \
        "010000000200000000000000010000000208004e0123456789abcdeffedcba98" \
        "7654321000000000020000000000000001076770752d626f7806fd0000000000" \
        "0000000000000000000c2cac0103617069000f5b666430303a3a635d3a313134" \
        "3334080029ffeeddccbbaa998877665544332211000100000009000000000000" \
        "0000036f6c64040a0000092cac00"
#define KAT_PUSH_PULL_SEALED \
        "0184606162636465666768696a6b6c6d6e6f707172737475767714bf2783210c" \
        "32d235b665ebdc257893466380dd3b4762232e6f31f023b242580406176c6705" \
        "58a01479af71be0309d59df166c272df68a0fd22b05863a5d29cbb727d4a8900" \
        "c5f3d32fdfe60892be0812dd0552fd632b4e7623f3ae1183f57307f86cc79db8" \
        "3620db70fdbfe7fd3b53d3de46b082546c57cd7b620e99ed1f826446c63f97c0" \
        "7fabe80ba4bb50039f4f0ffbf14a98b5f86ce6e6883f280d5b5a58c513d0e234" \
        "66eb96aa70263a9c4213f753f7183d75d7f142d8bf52bc4f"

/* What node R ("kat", 10.0.0.2:11436, incarnation 1) answers to KAT_DATAGRAM: header
 * (datagram, R, its random session, zeroed here, seq 1, record version (1, 0)), ACK 0x01020304,
 * its own ALIVE record (the ping was an announce). */
#define KAT_ANSWER \
        "010000000000000000000000000000abcd000000000000000000000000000000" \
        "0100000001000000000000000002000401020304040029000000000000000000" \
        "0000000000abcd00000000010000000000000000036b6174040a0000022cac00"
#define KAT_SESSION_OFFSET (1 + SWIM_ID_SIZE)

/* LOAD (in_flight 3, capacity 16), LOAD (0xffffffff, 0). Computed from docs/gossip-protocol.md
 * ("Load") with kat-vectors.py's functions: msg(9, struct.pack('>II', in_flight, capacity)). */
#define KAT_LOADS \
        "0900080000000300000010090008ffffffff00000000"

/* A again, in the session of KAT_DATAGRAM: header (datagram, A, session 0x0123456789abcdef,
 * seq 2, record version (7, 3)), LOAD (3, 16), a PING 0x01020305 for R. Sealed with the nonce
 * 80 81 .. 97. A node of an earlier version skips the LOAD (an unknown type) and answers the
 * ping. */
#define KAT_DATAGRAM_LOAD \
        "0100112233445566778899aabbccddeeff0123456789abcdef00000000000000" \
        "0200000007000000000000000309000800000003000000100100140102030500" \
        "00000000000000000000000000abcd"
#define KAT_DATAGRAM_LOAD_SEALED \
        "0184808182838485868788898a8b8c8d8e8f90919293949596976acedd900066" \
        "aba7bfb9a05536e6fcd2de73e0b8693a9f9ba1fe278c28cafb4329b55c4aa4a7" \
        "0a9b30260762c87bfcb831631dd8c5093a41d2d0932b688c1e6833e497aee4c6" \
        "e48b494049e65fbbf787f69c36bcaaa68f069c9c7a01f8f573"

/* R, its load set to (2, 4), answers KAT_DATAGRAM_LOAD: header (datagram, R, session zeroed,
 * seq 2, record version (1, 0)), its LOAD right after the header, then ACK 0x01020305. */
#define KAT_ANSWER_LOAD \
        "010000000000000000000000000000abcd000000000000000000000000000000" \
        "02000000010000000000000000090008000000020000000402000401020305"

/* The mesh key first, first + 1, ... */
static void kat_mesh_key(uint8_t first, uint8_t ret[SWIM_KEY_SIZE]) {
        for (size_t i = 0; i < SWIM_KEY_SIZE; i++)
                ret[i] = (uint8_t) (first + i);
}

static void kat_nonce(uint8_t first, uint8_t ret[SWIM_NONCE_SIZE]) {
        for (size_t i = 0; i < SWIM_NONCE_SIZE; i++)
                ret[i] = (uint8_t) (first + i);
}

/* Lowercase hex of n bytes into ret (2n + 1 bytes), so that a mismatch prints both sides. */
static const char *kat_hex(const void *p, size_t n, char *ret) {
        static const char hex[] = "0123456789abcdef";
        const uint8_t *b = p;

        for (size_t i = 0; i < n; i++) {
                ret[2 * i] = hex[b[i] >> 4];
                ret[2 * i + 1] = hex[b[i] & 15];
        }
        ret[2 * n] = '\0';
        return ret;
}

/* The bytes of a hex literal; returns their number. */
static size_t kat_unhex(const char *s, uint8_t *ret, size_t size) {
        size_t n = strlen(s) / 2;

        ck_assert_uint_eq(strlen(s) % 2, 0);
        ck_assert_uint_le(n, size);
        for (size_t i = 0; i < n; i++) {
                int a = unhexchar(s[2 * i]), b = unhexchar(s[2 * i + 1]);

                ck_assert(a >= 0 && b >= 0);
                ret[i] = (uint8_t) (a << 4 | b);
        }
        return n;
}

static void kat_id(const char *s, uint8_t ret[SWIM_ID_SIZE]) {
        ck_assert_int_eq(swim_id_from_string(s, ret), 0);
}

static void kat_assert_id(const uint8_t id[SWIM_ID_SIZE], const char *want) {
        char s[NODE_ID_LEN + 1];

        swim_id_to_string(id, s);
        ck_assert_str_eq(s, want);
}

static void kat_assert_addr(const SwimAddr *a, const char *want) {
        char s[SWIM_ADDR_STRING_MAX];

        ck_assert_int_eq(swim_addr_format(a, s, sizeof(s)), 0);
        ck_assert_str_eq(s, want);
}

static void kat_assert_meta(const SwimMetaRef *m, const char *key, const char *value) {
        ck_assert_str_eq(m->key, key);
        ck_assert_uint_eq(m->value_len, strlen(value));
        ck_assert(memcmp(m->value, value, m->value_len) == 0);
}

static SwimAddr kat_addr(const char *s) {
        SwimAddr a;

        ck_assert_int_eq(swim_addr_parse(s, &a), 0);
        return a;
}

/* Writes the messages of the vectors with the encoders swim.c uses. */
static void kat_write_alive_a(SwimWriter *w) {
        char *keys[] = { "api", "models", "version" }, *values[] = { "10.0.0.1:11434", "llama3.2,qwen", "" };
        SwimAddr a = kat_addr("10.0.0.1:11436");
        uint8_t id[SWIM_ID_SIZE];
        size_t o;

        kat_id(KAT_ID_A, id);
        o = swim_msg_begin(w, SWIM_MSG_ALIVE);
        swim_record_write(w, id, SWIM_STATE_ALIVE, 7, 3, "büro-1", &a, keys, values, 3);
        swim_msg_end(w, o);
}

static void kat_write_probe(SwimWriter *w, uint8_t type, uint32_t seq, const char *target, const char *addr) {
        static const uint8_t zero[SWIM_ID_SIZE] = {};
        uint8_t id[SWIM_ID_SIZE];
        size_t o;

        o = swim_msg_begin(w, type);
        swim_writer_u32(w, seq);
        if (type != SWIM_MSG_ACK) {
                if (target)
                        kat_id(target, id);
                swim_writer_put(w, target ? id : zero, SWIM_ID_SIZE);
        }
        if (addr) {
                SwimAddr a = kat_addr(addr);

                swim_addr_write(w, &a);
        }
        swim_msg_end(w, o);
}

static void kat_write_state(SwimWriter *w, uint8_t type, const char *of, uint32_t incarnation) {
        uint8_t id[SWIM_ID_SIZE];
        size_t o;

        kat_id(of, id);
        o = swim_msg_begin(w, type);
        swim_writer_put(w, id, SWIM_ID_SIZE);
        swim_writer_u32(w, incarnation);
        swim_msg_end(w, o);
}

static void kat_write_header(SwimWriter *w, uint8_t kind, const char *sender, uint64_t session, uint64_t seq,
                             uint32_t incarnation, uint64_t meta_version) {
        SwimHeader h = {
                .kind = kind, .session = session, .seq = seq, .incarnation = incarnation, .meta_version = meta_version,
        };

        kat_id(sender, h.sender);
        swim_header_write(w, &h);
}

static void kat_write_datagram(SwimWriter *w) {
        kat_write_header(w, SWIM_KIND_DATAGRAM, KAT_ID_A, UINT64_C(0x0123456789abcdef), 1, 7, 3);
        kat_write_alive_a(w);
        kat_write_probe(w, SWIM_MSG_PING, 0x01020304, NULL, NULL);
}

static void kat_write_datagram_load(SwimWriter *w) {
        kat_write_header(w, SWIM_KIND_DATAGRAM, KAT_ID_A, UINT64_C(0x0123456789abcdef), 2, 7, 3);
        swim_load_write(w, 3, 16);
        kat_write_probe(w, SWIM_MSG_PING, 0x01020305, KAT_ID_R, NULL);
}

static void kat_write_push_pull(SwimWriter *w) {
        char *keys[] = { "api" }, *values[] = { "[fd00::c]:11434" };
        SwimAddr c = kat_addr("[fd00::c]:11436"), b = kat_addr("10.0.0.9:11436");
        uint8_t id[SWIM_ID_SIZE];
        size_t o;

        kat_write_header(w, SWIM_KIND_PUSH_PULL_REQUEST, KAT_ID_C, UINT64_C(0xfedcba9876543210), 1, 2, 1);
        swim_writer_u32(w, 2);
        kat_id(KAT_ID_C, id);
        o = swim_msg_begin(w, SWIM_MSG_MEMBER);
        swim_record_write(w, id, SWIM_STATE_ALIVE, 2, 1, "gpu-box", &c, keys, values, 1);
        swim_msg_end(w, o);
        kat_id(KAT_ID_B, id);
        o = swim_msg_begin(w, SWIM_MSG_MEMBER);
        swim_record_write(w, id, SWIM_STATE_SUSPECT, 9, 0, "old", &b, NULL, NULL, 0);
        swim_msg_end(w, o);
}

START_TEST(test_kat_key_derive) {
        uint8_t mk[SWIM_KEY_SIZE], other[SWIM_KEY_SIZE];
        char h[SWIM_KEY_SIZE * 2 + 1];
        SwimKey k;

        kat_mesh_key(0x00, mk);
        kat_mesh_key(0x20, other);
        swim_key_derive(mk, &k);
        ck_assert_uint_eq(k.id, KAT_KEY_ID);
        ck_assert_str_eq(kat_hex(k.aead, sizeof(k.aead), h), KAT_AEAD_KEY);
        ck_assert_uint_eq(swim_key_id(mk), KAT_KEY_ID);
        swim_key_derive(other, &k);
        ck_assert_uint_eq(k.id, KAT_KEY_ID_OTHER);
        ck_assert_str_eq(kat_hex(k.aead, sizeof(k.aead), h), KAT_AEAD_KEY_OTHER);
}
END_TEST

START_TEST(test_kat_header) {
        uint8_t buf[256];
        char h[sizeof(buf) * 2 + 1];
        SwimHeader hd;
        SwimWriter w;
        SwimReader r;
        size_t n;

        swim_writer_init_fixed(&w, buf, sizeof(buf));
        kat_write_header(&w, SWIM_KIND_PUSH_PULL_REPLY, KAT_ID_B, UINT64_C(0x1112131415161718),
                         UINT64_C(0x2122232425262728), 0x31323334, UINT64_C(0x4142434445464748));
        ck_assert(!w.overflow);
        ck_assert_uint_eq(w.len, SWIM_HEADER_SIZE);
        ck_assert_str_eq(kat_hex(buf, w.len, h), KAT_HEADER);

        n = kat_unhex(KAT_HEADER, buf, sizeof(buf));
        swim_reader_init(&r, buf, n);
        ck_assert_int_eq(swim_header_read(&r, &hd), 0);
        ck_assert_uint_eq(r.left, 0);
        ck_assert_uint_eq(hd.kind, SWIM_KIND_PUSH_PULL_REPLY);
        kat_assert_id(hd.sender, KAT_ID_B);
        ck_assert_uint_eq(hd.session, UINT64_C(0x1112131415161718));
        ck_assert_uint_eq(hd.seq, UINT64_C(0x2122232425262728));
        ck_assert_uint_eq(hd.incarnation, 0x31323334);
        ck_assert_uint_eq(hd.meta_version, UINT64_C(0x4142434445464748));
}
END_TEST

START_TEST(test_kat_records) {
        uint8_t buf[512], id[SWIM_ID_SIZE];
        char h[sizeof(buf) * 2 + 1];
        SwimAddr a6 = kat_addr("[fd00::1]:7");
        SwimReader r, body;
        SwimRecord rec;
        SwimWriter w;
        uint8_t type;
        size_t n, o;

        /* ALIVE, IPv4, UTF-8 name, metadata with an empty value. */
        swim_writer_init_fixed(&w, buf, sizeof(buf));
        kat_write_alive_a(&w);
        ck_assert(!w.overflow);
        ck_assert_str_eq(kat_hex(buf, w.len, h), KAT_ALIVE_A);

        n = kat_unhex(KAT_ALIVE_A, buf, sizeof(buf));
        swim_reader_init(&r, buf, n);
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 1);
        ck_assert_uint_eq(type, SWIM_MSG_ALIVE);
        ck_assert_int_eq(swim_record_read(&body, &rec), 0);
        kat_assert_id(rec.id, KAT_ID_A);
        ck_assert_int_eq(rec.state, SWIM_STATE_ALIVE);
        ck_assert_uint_eq(rec.incarnation, 7);
        ck_assert_uint_eq(rec.meta_version, 3);
        ck_assert_str_eq(rec.name, "büro-1");
        kat_assert_addr(&rec.addr, "10.0.0.1:11436");
        ck_assert_uint_eq(rec.n_meta, 3);
        kat_assert_meta(&rec.meta[0], "api", "10.0.0.1:11434");
        kat_assert_meta(&rec.meta[1], "models", "llama3.2,qwen");
        kat_assert_meta(&rec.meta[2], "version", "");
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 0);

        /* MEMBER, dead, IPv6, empty name, no metadata, every byte of the versions distinct. */
        swim_writer_init_fixed(&w, buf, sizeof(buf));
        kat_id(KAT_ID_B, id);
        o = swim_msg_begin(&w, SWIM_MSG_MEMBER);
        swim_record_write(&w, id, SWIM_STATE_DEAD, 0x01020304, UINT64_C(0x0a0b0c0d0e0f1011), "", &a6, NULL, NULL, 0);
        swim_msg_end(&w, o);
        ck_assert(!w.overflow);
        ck_assert_str_eq(kat_hex(buf, w.len, h), KAT_MEMBER_B);

        n = kat_unhex(KAT_MEMBER_B, buf, sizeof(buf));
        swim_reader_init(&r, buf, n);
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 1);
        ck_assert_uint_eq(type, SWIM_MSG_MEMBER);
        ck_assert_int_eq(swim_record_read(&body, &rec), 0);
        kat_assert_id(rec.id, KAT_ID_B);
        ck_assert_int_eq(rec.state, SWIM_STATE_DEAD);
        ck_assert_uint_eq(rec.incarnation, 0x01020304);
        ck_assert_uint_eq(rec.meta_version, UINT64_C(0x0a0b0c0d0e0f1011));
        ck_assert_str_eq(rec.name, "");
        kat_assert_addr(&rec.addr, "[fd00::1]:7");
        ck_assert_uint_eq(rec.n_meta, 0);
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 0);
}
END_TEST

START_TEST(test_kat_messages) {
        static const uint8_t zero[SWIM_ID_SIZE] = {};
        uint8_t buf[512];
        char h[sizeof(buf) * 2 + 1];
        SwimReader r, body;
        SwimWriter w;
        SwimAddr a;
        uint8_t type;
        size_t n;

        swim_writer_init_fixed(&w, buf, sizeof(buf));
        kat_write_probe(&w, SWIM_MSG_PING, 0x01020304, NULL, NULL);
        kat_write_probe(&w, SWIM_MSG_PING, 0xfffffffe, KAT_ID_B, NULL);
        kat_write_probe(&w, SWIM_MSG_ACK, 0x01020304, NULL, NULL);
        kat_write_probe(&w, SWIM_MSG_PING_REQ, 0x0a0b0c0d, KAT_ID_B, "192.168.1.20:7946");
        ck_assert(!w.overflow);
        ck_assert_str_eq(kat_hex(buf, w.len, h), KAT_PROBES);

        n = kat_unhex(KAT_PROBES, buf, sizeof(buf));
        swim_reader_init(&r, buf, n);
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 1);
        ck_assert_uint_eq(type, SWIM_MSG_PING);
        ck_assert_uint_eq(swim_reader_u32(&body), 0x01020304);
        ck_assert(memcmp(swim_reader_take(&body, SWIM_ID_SIZE), zero, SWIM_ID_SIZE) == 0);
        ck_assert(!body.error && body.left == 0);
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 1);
        ck_assert_uint_eq(type, SWIM_MSG_PING);
        ck_assert_uint_eq(swim_reader_u32(&body), 0xfffffffe);
        kat_assert_id(swim_reader_take(&body, SWIM_ID_SIZE), KAT_ID_B);
        ck_assert(!body.error && body.left == 0);
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 1);
        ck_assert_uint_eq(type, SWIM_MSG_ACK);
        ck_assert_uint_eq(swim_reader_u32(&body), 0x01020304);
        ck_assert(!body.error && body.left == 0);
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 1);
        ck_assert_uint_eq(type, SWIM_MSG_PING_REQ);
        ck_assert_uint_eq(swim_reader_u32(&body), 0x0a0b0c0d);
        kat_assert_id(swim_reader_take(&body, SWIM_ID_SIZE), KAT_ID_B);
        ck_assert_int_eq(swim_addr_read(&body, &a), 0);
        kat_assert_addr(&a, "192.168.1.20:7946");
        ck_assert(!body.error && body.left == 0);
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 0);

        swim_writer_init_fixed(&w, buf, sizeof(buf));
        kat_write_state(&w, SWIM_MSG_SUSPECT, KAT_ID_B, 5);
        kat_write_state(&w, SWIM_MSG_DEAD, KAT_ID_B, 6);
        kat_write_state(&w, SWIM_MSG_LEFT, KAT_ID_C, 0x01020304);
        ck_assert(!w.overflow);
        ck_assert_str_eq(kat_hex(buf, w.len, h), KAT_STATES);

        n = kat_unhex(KAT_STATES, buf, sizeof(buf));
        swim_reader_init(&r, buf, n);
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 1);
        ck_assert_uint_eq(type, SWIM_MSG_SUSPECT);
        kat_assert_id(swim_reader_take(&body, SWIM_ID_SIZE), KAT_ID_B);
        ck_assert_uint_eq(swim_reader_u32(&body), 5);
        ck_assert(!body.error && body.left == 0);
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 1);
        ck_assert_uint_eq(type, SWIM_MSG_DEAD);
        kat_assert_id(swim_reader_take(&body, SWIM_ID_SIZE), KAT_ID_B);
        ck_assert_uint_eq(swim_reader_u32(&body), 6);
        ck_assert(!body.error && body.left == 0);
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 1);
        ck_assert_uint_eq(type, SWIM_MSG_LEFT);
        kat_assert_id(swim_reader_take(&body, SWIM_ID_SIZE), KAT_ID_C);
        ck_assert_uint_eq(swim_reader_u32(&body), 0x01020304);
        ck_assert(!body.error && body.left == 0);
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 0);
}
END_TEST

START_TEST(test_kat_load) {
        uint8_t buf[512];
        char h[sizeof(buf) * 2 + 1];
        uint32_t in_flight, capacity;
        SwimReader r, body;
        SwimHeader hd;
        SwimWriter w;
        uint8_t type;
        size_t n;

        swim_writer_init_fixed(&w, buf, sizeof(buf));
        swim_load_write(&w, 3, 16);
        swim_load_write(&w, UINT32_MAX, 0);
        ck_assert(!w.overflow);
        ck_assert_uint_eq(w.len, 2 * SWIM_LOAD_MSG_SIZE);
        ck_assert_str_eq(kat_hex(buf, w.len, h), KAT_LOADS);

        n = kat_unhex(KAT_LOADS, buf, sizeof(buf));
        swim_reader_init(&r, buf, n);
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 1);
        ck_assert_uint_eq(type, SWIM_MSG_LOAD);
        ck_assert_int_eq(swim_load_read(&body, &in_flight, &capacity), 0);
        ck_assert_uint_eq(in_flight, 3);
        ck_assert_uint_eq(capacity, 16);
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 1);
        ck_assert_int_eq(swim_load_read(&body, &in_flight, &capacity), 0);
        ck_assert_uint_eq(in_flight, UINT32_MAX);
        ck_assert_uint_eq(capacity, 0);
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 0);

        /* A body is exactly 8 bytes. */
        for (size_t len = 0; len < 12; len++) {
                uint8_t b[12] = {};

                swim_reader_init(&body, b, len);
                ck_assert_int_eq(swim_load_read(&body, &in_flight, &capacity), len == SWIM_LOAD_BODY_SIZE ? 0 : -EBADMSG);
        }

        /* The datagram, and how a decoder that knows only types 1 to 8 walks it: the framing
         * alone takes it past the LOAD to the PING. */
        swim_writer_init_fixed(&w, buf, sizeof(buf));
        kat_write_datagram_load(&w);
        ck_assert(!w.overflow);
        ck_assert_str_eq(kat_hex(buf, w.len, h), KAT_DATAGRAM_LOAD);
        swim_reader_init(&r, buf, w.len);
        ck_assert_int_eq(swim_header_read(&r, &hd), 0);
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 1);
        ck_assert_uint_gt(type, SWIM_MSG_MEMBER);
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 1);
        ck_assert_uint_eq(type, SWIM_MSG_PING);
        ck_assert_uint_eq(swim_reader_u32(&body), 0x01020305);
        kat_assert_id(swim_reader_take(&body, SWIM_ID_SIZE), KAT_ID_R);
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 0);
}
END_TEST

START_TEST(test_kat_push_pull) {
        uint8_t buf[512];
        char h[sizeof(buf) * 2 + 1];
        SwimReader r, body;
        SwimHeader hd;
        SwimRecord rec;
        SwimWriter w;
        uint8_t type;
        size_t n;

        swim_writer_init_fixed(&w, buf, sizeof(buf));
        kat_write_push_pull(&w);
        ck_assert(!w.overflow);
        ck_assert_str_eq(kat_hex(buf, w.len, h), KAT_PUSH_PULL);

        n = kat_unhex(KAT_PUSH_PULL, buf, sizeof(buf));
        swim_reader_init(&r, buf, n);
        ck_assert_int_eq(swim_header_read(&r, &hd), 0);
        ck_assert_uint_eq(hd.kind, SWIM_KIND_PUSH_PULL_REQUEST);
        kat_assert_id(hd.sender, KAT_ID_C);
        ck_assert_uint_eq(hd.session, UINT64_C(0xfedcba9876543210));
        ck_assert_uint_eq(hd.seq, 1);
        ck_assert_uint_eq(hd.incarnation, 2);
        ck_assert_uint_eq(hd.meta_version, 1);
        ck_assert_uint_eq(swim_reader_u32(&r), 2);

        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 1);
        ck_assert_uint_eq(type, SWIM_MSG_MEMBER);
        ck_assert_int_eq(swim_record_read(&body, &rec), 0);
        kat_assert_id(rec.id, KAT_ID_C);
        ck_assert_int_eq(rec.state, SWIM_STATE_ALIVE);
        ck_assert_uint_eq(rec.incarnation, 2);
        ck_assert_uint_eq(rec.meta_version, 1);
        ck_assert_str_eq(rec.name, "gpu-box");
        kat_assert_addr(&rec.addr, "[fd00::c]:11436");
        ck_assert_uint_eq(rec.n_meta, 1);
        kat_assert_meta(&rec.meta[0], "api", "[fd00::c]:11434");

        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 1);
        ck_assert_uint_eq(type, SWIM_MSG_MEMBER);
        ck_assert_int_eq(swim_record_read(&body, &rec), 0);
        kat_assert_id(rec.id, KAT_ID_B);
        ck_assert_int_eq(rec.state, SWIM_STATE_SUSPECT);
        ck_assert_uint_eq(rec.incarnation, 9);
        ck_assert_uint_eq(rec.meta_version, 0);
        ck_assert_str_eq(rec.name, "old");
        kat_assert_addr(&rec.addr, "10.0.0.9:11436");
        ck_assert_uint_eq(rec.n_meta, 0);
        ck_assert_int_eq(swim_msg_next(&r, &type, &body), 0);
}
END_TEST

/* Seal gives exactly these bytes, open gives back the plaintext, and only under this key. */
static void kat_seal_open(void (*write)(SwimWriter *w), const char *plain_hex, uint8_t nonce_first,
                          const char *sealed_hex) {
        uint8_t mk[SWIM_KEY_SIZE], other[SWIM_KEY_SIZE], nonce[SWIM_NONCE_SIZE];
        uint8_t plain[512], sealed[512], out[512];
        char h[sizeof(sealed) * 2 + 1];
        SwimKey k, ko, both[2];
        SwimWriter w;
        size_t n;
        int r;

        kat_mesh_key(0x00, mk);
        kat_mesh_key(0x20, other);
        kat_nonce(nonce_first, nonce);
        swim_key_derive(mk, &k);
        swim_key_derive(other, &ko);

        swim_writer_init_fixed(&w, plain, sizeof(plain));
        write(&w);
        ck_assert(!w.overflow);
        ck_assert_str_eq(kat_hex(plain, w.len, h), plain_hex);
        r = swim_seal(&k, nonce, plain, w.len, sealed, sizeof(sealed));
        ck_assert_int_eq(r, (int) (w.len + SWIM_SEAL_OVERHEAD));
        ck_assert_str_eq(kat_hex(sealed, (size_t) r, h), sealed_hex);

        n = kat_unhex(sealed_hex, sealed, sizeof(sealed));
        r = swim_open(&k, 1, sealed, n, sizeof(sealed), out, sizeof(out));
        ck_assert_int_eq(r, (int) (n - SWIM_SEAL_OVERHEAD));
        ck_assert_str_eq(kat_hex(out, (size_t) r, h), plain_hex);

        /* Another mesh's key; a key that claims this key's id; both keys, the right one second. */
        ck_assert_int_eq(swim_open(&ko, 1, sealed, n, sizeof(sealed), out, sizeof(out)), -EKEYREJECTED);
        both[0] = ko;
        both[0].id = k.id;
        ck_assert_int_eq(swim_open(both, 1, sealed, n, sizeof(sealed), out, sizeof(out)), -EKEYREJECTED);
        both[1] = k;
        r = swim_open(both, 2, sealed, n, sizeof(sealed), out, sizeof(out));
        ck_assert_int_eq(r, (int) (n - SWIM_SEAL_OVERHEAD));
}

START_TEST(test_kat_seal_open) {
        kat_seal_open(kat_write_datagram, KAT_DATAGRAM, 0x40, KAT_DATAGRAM_SEALED);
        kat_seal_open(kat_write_push_pull, KAT_PUSH_PULL, 0x60, KAT_PUSH_PULL_SEALED);
        kat_seal_open(kat_write_datagram_load, KAT_DATAGRAM_LOAD, 0x80, KAT_DATAGRAM_LOAD_SEALED);
}
END_TEST

/* The protocol core itself takes the vectors: it learns what they say, and its answer to the
 * announce has the documented layout. */
START_TEST(test_kat_core) {
        uint8_t mk[SWIM_KEY_SIZE], other[SWIM_KEY_SIZE], sealed[512], plain[512];
        char h[sizeof(plain) * 2 + 1];
        SwimConfig c = net_config();
        SwimLocal l = { .id = KAT_ID_R, .name = "kat", .addr = kat_addr("10.0.0.2:11436"), .incarnation = 1 };
        SwimAddr from = kat_addr("10.0.0.1:11436"), to;
        const SwimMember *m;
        const void *data;
        Swim *s = NULL;
        uint64_t rng = 77;
        SwimKey k;
        size_t n, size;
        int r;

        kat_mesh_key(0x00, mk);
        kat_mesh_key(0x20, other);
        swim_key_derive(mk, &k);
        ck_assert_int_eq(swim_new(&s, &c, &l, test_random, &rng, T0), 0);

        /* Under another mesh's key nothing opens. */
        ck_assert_int_eq(swim_set_keys(s, (const uint8_t (*)[SWIM_KEY_SIZE]) &other, 1), 0);
        n = kat_unhex(KAT_DATAGRAM_SEALED, sealed, sizeof(sealed));
        ck_assert_int_eq(swim_receive_datagram(s, T0, &from, sealed, n), -EKEYREJECTED);
        ck_assert_int_eq(swim_set_keys(s, (const uint8_t (*)[SWIM_KEY_SIZE]) &mk, 1), 0);

        ck_assert_int_eq(swim_receive_datagram(s, T0, &from, sealed, n), 0);
        m = swim_member_find(s, KAT_ID_A);
        ck_assert_ptr_nonnull(m);
        ck_assert_int_eq(m->state, SWIM_STATE_ALIVE);
        ck_assert_uint_eq(m->incarnation, 7);
        ck_assert_uint_eq(m->meta_version, 3);
        ck_assert_str_eq(m->name, "büro-1");
        kat_assert_addr(&m->addr, "10.0.0.1:11436");
        ck_assert_uint_eq(m->n_meta, 3);
        ck_assert_str_eq(m->meta_keys[0], "api");
        ck_assert_str_eq(m->meta_values[0], "10.0.0.1:11434");
        ck_assert_str_eq(m->meta_keys[1], "models");
        ck_assert_str_eq(m->meta_values[1], "llama3.2,qwen");
        ck_assert_str_eq(m->meta_keys[2], "version");
        ck_assert_str_eq(m->meta_values[2], "");

        /* The answer: an ack and R's own record, sealed under the mesh key. */
        ck_assert_int_eq(swim_next_datagram(s, &to, &data, &size), 1);
        ck_assert(swim_addr_equal(&to, &from));
        ck_assert_uint_le(size, sizeof(sealed));
        ck_assert_uint_eq(((const uint8_t *) data)[0], SWIM_PROTOCOL_VERSION);
        ck_assert_uint_eq(((const uint8_t *) data)[1], KAT_KEY_ID);
        r = swim_open(&k, 1, data, size, sizeof(sealed), plain, sizeof(plain));
        ck_assert_int_gt(r, KAT_SESSION_OFFSET + 8);
        memset(plain + KAT_SESSION_OFFSET, 0, 8);
        ck_assert_str_eq(kat_hex(plain, (size_t) r, h), KAT_ANSWER);

        /* A tells its load: R takes it, without a new record version, and answers with its own
         * load in front of the ack. */
        ck_assert_int_eq(swim_set_local_load(s, 2, 4), 1);
        n = kat_unhex(KAT_DATAGRAM_LOAD_SEALED, sealed, sizeof(sealed));
        ck_assert_int_eq(swim_receive_datagram(s, T0 + 5, &from, sealed, n), 0);
        m = swim_member_find(s, KAT_ID_A);
        ck_assert_uint_eq(m->load_in_flight, 3);
        ck_assert_uint_eq(m->load_capacity, 16);
        ck_assert_uint_eq(m->load_at, T0 + 5);
        ck_assert_uint_eq(m->load_serial, swim_load_serial(s));
        ck_assert_uint_eq(m->incarnation, 7);
        ck_assert_uint_eq(m->meta_version, 3);
        ck_assert_int_eq(swim_next_datagram(s, &to, &data, &size), 1);
        ck_assert(swim_addr_equal(&to, &from));
        r = swim_open(&k, 1, data, size, sizeof(sealed), plain, sizeof(plain));
        ck_assert_int_gt(r, KAT_SESSION_OFFSET + 8);
        memset(plain + KAT_SESSION_OFFSET, 0, 8);
        ck_assert_str_eq(kat_hex(plain, (size_t) r, h), KAT_ANSWER_LOAD);
        ck_assert_int_eq(swim_next_datagram(s, &to, &data, &size), 0);

        /* C's push-pull request: C alive, B learned as a suspect. */
        n = kat_unhex(KAT_PUSH_PULL_SEALED, sealed, sizeof(sealed));
        ck_assert_int_eq(swim_push_pull_receive(s, T0, sealed, n), 1);
        m = swim_member_find(s, KAT_ID_C);
        ck_assert_ptr_nonnull(m);
        ck_assert_int_eq(m->state, SWIM_STATE_ALIVE);
        ck_assert_uint_eq(m->incarnation, 2);
        ck_assert_uint_eq(m->meta_version, 1);
        ck_assert_str_eq(m->name, "gpu-box");
        kat_assert_addr(&m->addr, "[fd00::c]:11436");
        ck_assert_uint_eq(m->n_meta, 1);
        ck_assert_str_eq(m->meta_keys[0], "api");
        ck_assert_str_eq(m->meta_values[0], "[fd00::c]:11434");
        m = swim_member_find(s, KAT_ID_B);
        ck_assert_ptr_nonnull(m);
        ck_assert_int_eq(m->state, SWIM_STATE_SUSPECT);
        ck_assert_uint_eq(m->incarnation, 9);
        ck_assert_str_eq(m->name, "old");
        kat_assert_addr(&m->addr, "10.0.0.9:11436");
        swim_free(s);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("swim-wire");
        TCase *tc = tcase_create("core");

        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_addr);
        tcase_add_test(tc, test_record_roundtrip);
        tcase_add_test(tc, test_record_limits);
        tcase_add_test(tc, test_seal_open);
        tcase_add_test(tc, test_receive_rejects);
        tcase_add_test(tc, test_receive_malformed_plaintext);
        tcase_add_test(tc, test_replay_window);
        tcase_add_test(tc, test_replay_crafted);
        tcase_add_test(tc, test_key_rotation);
        tcase_add_test(tc, test_push_pull_rejects);
        tcase_add_test(tc, test_text_validation);
        suite_add_tcase(s, tc);

        tc = tcase_create("known-answer");
        tcase_add_test(tc, test_kat_key_derive);
        tcase_add_test(tc, test_kat_header);
        tcase_add_test(tc, test_kat_records);
        tcase_add_test(tc, test_kat_messages);
        tcase_add_test(tc, test_kat_load);
        tcase_add_test(tc, test_kat_push_pull);
        tcase_add_test(tc, test_kat_seal_open);
        tcase_add_test(tc, test_kat_core);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
