/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for the SWIM wire format and sealing (services/gossipd/swim-wire.c) and for what
 * swim_receive_datagram() refuses: truncated, oversized, wrongly keyed, tampered, replayed. */
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
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
