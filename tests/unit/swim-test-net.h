/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A tiny in-memory network for the SWIM unit tests: a few Swim instances, a fake clock, a seeded
 * PRNG, instant delivery with links that can be cut, and a crafter of sealed packets. */
#pragma once

#include <stdio.h>

#include "swim-wire.h"
#include "swim.h"
#include "unit-test.h"

#define NET_NODES_MAX 8
#define MS USEC_PER_MSEC
#define SEC USEC_PER_SEC
#define T0 (1000 * SEC)

static inline uint64_t splitmix64(uint64_t *x) {
        uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));

        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        return z ^ (z >> 31);
}

static inline void test_random(void *buf, size_t n, void *userdata) {
        uint8_t *b = buf;

        for (size_t i = 0; i < n; i += 8) {
                uint64_t v = splitmix64(userdata);

                memcpy(b + i, &v, MIN((size_t) 8, n - i));
        }
}

static const uint8_t test_key1[SWIM_KEY_SIZE] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 };
static const uint8_t test_key2[SWIM_KEY_SIZE] = { 42, 42, 42 };

typedef struct TestNet {
        usec_t now;
        size_t n;
        Swim *nodes[NET_NODES_MAX];
        uint64_t rng[NET_NODES_MAX];
        bool down[NET_NODES_MAX];               /* crashed: sends and receives nothing */
        bool cut[NET_NODES_MAX][NET_NODES_MAX]; /* a -> b dropped */
        uint64_t delivered, dropped;
        int last_error[NET_NODES_MAX];
} TestNet;

static inline void net_id(size_t i, char ret[NODE_ID_LEN + 1]) {
        snprintf(ret, NODE_ID_LEN + 1, "%032zx", i + 0xa0);
}

/* The id of node i as it goes on the wire. */
static inline void net_bid(size_t i, uint8_t ret[SWIM_ID_SIZE]) {
        char id[NODE_ID_LEN + 1];

        net_id(i, id);
        ck_assert_int_eq(swim_id_from_string(id, ret), 0);
}

static inline SwimAddr net_addr(size_t i) {
        SwimAddr a = { .family = AF_INET, .addr = { 10, 0, 0, (uint8_t) (i + 1) }, .port = 11436 };

        return a;
}

static inline int net_index(const SwimAddr *a) {
        if (a->family != AF_INET || a->addr[0] != 10 || a->addr[3] == 0 || a->addr[3] > NET_NODES_MAX)
                return -1;
        return a->addr[3] - 1;
}

static inline SwimConfig net_config(void) {
        SwimConfig c;

        swim_config_lan(&c);
        return c;
}

/* (Re)creates node i at its own address with the id of node id_of (i itself, or another node's
 * to make a twin) and the given incarnation. */
static inline void net_start_as(TestNet *net, size_t i, size_t id_of, const SwimConfig *c, uint32_t incarnation) {
        char id[NODE_ID_LEN + 1], name[16];
        SwimLocal l;

        net_id(id_of, id);
        snprintf(name, sizeof(name), "node%zu", i);
        l = (SwimLocal) { .id = id, .name = name, .addr = net_addr(i), .incarnation = incarnation };
        net->nodes[i] = swim_free(net->nodes[i]);
        net->rng[i] = 0x1234 + i * 7919 + net->now;
        ck_assert_int_eq(swim_new(&net->nodes[i], c, &l, test_random, &net->rng[i], net->now), 0);
        ck_assert_int_eq(swim_set_keys(net->nodes[i], &test_key1, 1), 0);
        net->down[i] = false;
        if (i >= net->n)
                net->n = i + 1;
}

/* (Re)creates node i with the given incarnation. */
static inline void net_start(TestNet *net, size_t i, const SwimConfig *c, uint32_t incarnation) {
        net_start_as(net, i, i, c, incarnation);
}

static inline void net_init(TestNet *net, size_t n, const SwimConfig *c) {
        *net = (TestNet) { .now = T0 };
        for (size_t i = 0; i < n; i++)
                net_start(net, i, c, 1);
}

static inline void net_done(TestNet *net) {
        for (size_t i = 0; i < net->n; i++)
                net->nodes[i] = swim_free(net->nodes[i]);
}

/* Delivers every queued datagram (and what the answers queue) at once. */
static inline void net_flush(TestNet *net) {
        bool any = true;

        while (any) {
                any = false;
                for (size_t i = 0; i < net->n; i++) {
                        const void *data;
                        size_t size;
                        SwimAddr to;
                        uint8_t copy[SWIM_DATAGRAM_MAX];

                        if (!net->nodes[i])
                                continue;
                        while (swim_next_datagram(net->nodes[i], &to, &data, &size) > 0) {
                                int j = net_index(&to);

                                any = true;
                                if (net->down[i] || j < 0 || (size_t) j >= net->n || !net->nodes[j] ||
                                    net->down[j] || net->cut[i][j]) {
                                        net->dropped++;
                                        continue;
                                }
                                memcpy(copy, data, size);
                                net->delivered++;
                                SwimAddr from = net_addr(i);
                                net->last_error[j] = swim_receive_datagram(net->nodes[j], net->now, &from, copy, size);
                        }
                }
        }
}

/* Runs the clock for d in steps of 5 ms. */
static inline void net_run(TestNet *net, usec_t d) {
        usec_t end = net->now + d;

        while (net->now < end) {
                net->now += 5 * MS;
                for (size_t i = 0; i < net->n; i++) {
                        SwimAddr pp;

                        if (!net->nodes[i] || net->down[i])
                                continue;
                        if (swim_next_deadline(net->nodes[i]) <= net->now)
                                ck_assert_int_eq(swim_tick(net->nodes[i], net->now), 0);
                        if (swim_push_pull_due(net->nodes[i], net->now, &pp) > 0) {
                                int j = net_index(&pp);
                                void *req = NULL, *rep = NULL;
                                size_t req_size, rep_size;

                                if (j < 0 || net->down[j] || net->cut[i][j] || net->cut[j][i])
                                        continue;
                                ck_assert_int_eq(swim_push_pull_build(net->nodes[i], net->now, false, &req, &req_size), 0);
                                if (swim_push_pull_receive(net->nodes[j], net->now, req, req_size) == 1) {
                                        ck_assert_int_eq(swim_push_pull_build(net->nodes[j], net->now, true, &rep, &rep_size), 0);
                                        ck_assert_int_eq(swim_push_pull_receive(net->nodes[i], net->now, rep, rep_size), 0);
                                }
                                free(req);
                                free(rep);
                        }
                }
                net_flush(net);
        }
}

/* A full push-pull from a to b, as a join does. */
static inline void net_push_pull(TestNet *net, size_t a, size_t b) {
        void *req, *rep;
        size_t req_size, rep_size;

        ck_assert_int_eq(swim_push_pull_build(net->nodes[a], net->now, false, &req, &req_size), 0);
        ck_assert_int_eq(swim_push_pull_receive(net->nodes[b], net->now, req, req_size), 1);
        ck_assert_int_eq(swim_push_pull_build(net->nodes[b], net->now, true, &rep, &rep_size), 0);
        ck_assert_int_eq(swim_push_pull_receive(net->nodes[a], net->now, rep, rep_size), 0);
        free(req);
        free(rep);
}

static inline const SwimMember *net_view(TestNet *net, size_t at, size_t of) {
        char id[NODE_ID_LEN + 1];

        net_id(of, id);
        return swim_member_find(net->nodes[at], id);
}

static inline SwimState net_state(TestNet *net, size_t at, size_t of) {
        const SwimMember *m = net_view(net, at, of);

        return m ? m->state : _SWIM_STATE_INVALID;
}

static inline void net_isolate(TestNet *net, size_t i, bool cut) {
        for (size_t j = 0; j < NET_NODES_MAX; j++)
                if (j != i)
                        net->cut[i][j] = net->cut[j][i] = cut;
}

/* All nodes join node 0 by push-pull, then gossip settles. */
static inline void net_join_all(TestNet *net) {
        for (size_t i = 1; i < net->n; i++)
                net_push_pull(net, i, 0);
        net_run(net, 3 * SEC);
        for (size_t i = 0; i < net->n; i++)
                ck_assert_uint_eq(swim_n_alive(net->nodes[i]), net->n);
}

static inline void net_drain_events(TestNet *net, size_t i) {
        SwimEvent e;

        while (swim_next_event(net->nodes[i], &e) > 0)
                ;
}

/* Seals a hand-made plaintext: header from the arguments (the sender's record version in it is
 * (incarnation, meta_version)), then msgs. */
static inline size_t craft_versioned(const uint8_t key[SWIM_KEY_SIZE], uint8_t kind, size_t sender,
                                     uint64_t session, uint64_t seq, uint32_t incarnation, uint64_t meta_version,
                                     const void *msgs, size_t msgs_len, uint8_t *out, size_t out_size) {
        uint8_t plain[SWIM_DATAGRAM_MAX], nonce[SWIM_NONCE_SIZE] = { (uint8_t) seq, 7 };
        SwimHeader h = {
                .kind = kind,
                .session = session,
                .seq = seq,
                .incarnation = incarnation,
                .meta_version = meta_version,
        };
        SwimWriter w;
        SwimKey k;
        int r;

        net_bid(sender, h.sender);
        swim_writer_init_fixed(&w, plain, sizeof(plain));
        swim_header_write(&w, &h);
        swim_writer_put(&w, msgs, msgs_len);
        ck_assert(!w.overflow);
        swim_key_derive(key, &k);
        r = swim_seal(&k, nonce, plain, w.len, out, out_size);
        ck_assert_int_gt(r, 0);
        return (size_t) r;
}

/* The same with record version (0, 0): news to nobody. */
static inline size_t craft(const uint8_t key[SWIM_KEY_SIZE], uint8_t kind, size_t sender, uint64_t session,
                           uint64_t seq, const void *msgs, size_t msgs_len, uint8_t *out, size_t out_size) {
        return craft_versioned(key, kind, sender, session, seq, 0, 0, msgs, msgs_len, out, out_size);
}

/* Appends a SUSPECT/DEAD/LEFT message about node `of`. */
static inline void msg_state(SwimWriter *w, uint8_t type, size_t of, uint32_t inc) {
        uint8_t bid[SWIM_ID_SIZE];
        size_t o;

        net_bid(of, bid);
        o = swim_msg_begin(w, type);
        swim_writer_put(w, bid, SWIM_ID_SIZE);
        swim_writer_u32(w, inc);
        swim_msg_end(w, o);
}

/* Appends an ALIVE record of node `of` at addr, named "twin". */
static inline void msg_alive_at(SwimWriter *w, size_t of, uint32_t inc, const SwimAddr *addr) {
        uint8_t bid[SWIM_ID_SIZE];
        size_t o;

        net_bid(of, bid);
        o = swim_msg_begin(w, SWIM_MSG_ALIVE);
        swim_record_write(w, bid, SWIM_STATE_ALIVE, inc, 0, "twin", addr, NULL, NULL, 0);
        swim_msg_end(w, o);
}
