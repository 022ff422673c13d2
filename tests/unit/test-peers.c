/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/discoveryd/peers.c: sightings merging into peers, the diff that
 * decides PeerDiscovered/PeerVanished, seed round syncs and the limits of the table. */
#include <stdio.h>

#include "peers.h"
#include "unit-test.h"

typedef struct Recorded {
        PeerEvent event;
        char name[PEER_NAME_MAX + 1];
        char id[PEER_ID_MAX + 1];
        char mesh[PEER_ADDR_MAX + 1];
        char gossip[256];       /* comma-joined */
} Recorded;

static Recorded events[64];
static size_t n_events;
static PeerTable t;

static void record(PeerEvent event, const Peer *p, void *userdata) {
        Recorded *r;

        ck_assert_ptr_eq(userdata, &t);
        ck_assert_uint_lt(n_events, ELEMENTSOF(events));
        r = &events[n_events++];
        *r = (Recorded) { .event = event };
        snprintf(r->name, sizeof(r->name), "%s", p->name);
        snprintf(r->id, sizeof(r->id), "%s", p->id);
        snprintf(r->mesh, sizeof(r->mesh), "%s", p->mesh);
        for (size_t i = 0; i < p->n_gossip; i++)
                snprintf(r->gossip + strlen(r->gossip), sizeof(r->gossip) - strlen(r->gossip), "%s%s",
                         i > 0 ? "," : "", p->gossip[i]);
}

static void setup(void) {
        n_events = 0;
        peer_table_init(&t, PEERS_MAX, record, &t);
}

static void teardown(void) {
        peer_table_clear(&t);
}

static int put1(const char *name, const char *key, const char *id, const char *mesh, const char *gossip) {
        char *const g[] = { (char *) gossip };
        return peer_table_put(&t, PEER_SOURCE_MDNS, name, key, id, mesh, g, gossip ? 1 : 0);
}

START_TEST(test_source_names) {
        ck_assert_str_eq(peer_source_to_string(PEER_SOURCE_MDNS), "mdns");
        ck_assert_str_eq(peer_source_to_string(PEER_SOURCE_SEED), "seed");
        ck_assert_ptr_null(peer_source_to_string(_PEER_SOURCE_MAX));
}
END_TEST

START_TEST(test_discover_change_vanish) {
        ck_assert_int_eq(put1("n2", "2/0", "aa", "10.0.0.2:11438", "10.0.0.2:11436"), 1);
        ck_assert_uint_eq(n_events, 1);
        ck_assert_int_eq(events[0].event, PEER_DISCOVERED);
        ck_assert_str_eq(events[0].name, "n2");
        ck_assert_str_eq(events[0].gossip, "10.0.0.2:11436");

        /* The same again: no signal. */
        ck_assert_int_eq(put1("n2", "2/0", "aa", "10.0.0.2:11438", "10.0.0.2:11436"), 0);
        ck_assert_uint_eq(n_events, 1);

        /* Port moved: discovered again with the new address. */
        ck_assert_int_eq(put1("n2", "2/0", "aa", "10.0.0.2:11438", "10.0.0.2:2000"), 1);
        ck_assert_uint_eq(n_events, 2);
        ck_assert_str_eq(events[1].gossip, "10.0.0.2:2000");

        /* A second interface: merged, newest first. */
        ck_assert_int_eq(put1("n2", "3/0", "aa", "10.1.0.2:11438", "10.1.0.2:2000"), 1);
        ck_assert_str_eq(events[2].gossip, "10.1.0.2:2000,10.0.0.2:2000");
        ck_assert_str_eq(events[2].mesh, "10.1.0.2:11438");
        ck_assert_uint_eq(t.n_peers, 1);

        /* One interface goes: changed, not vanished. */
        ck_assert_int_eq(peer_table_drop(&t, PEER_SOURCE_MDNS, "n2", "3/0"), 0);
        ck_assert_int_eq(events[3].event, PEER_DISCOVERED);
        ck_assert_str_eq(events[3].gossip, "10.0.0.2:2000");
        /* Dropping an unknown key or name changes nothing. */
        ck_assert_int_eq(peer_table_drop(&t, PEER_SOURCE_MDNS, "n2", "9/9"), 0);
        ck_assert_int_eq(peer_table_drop(&t, PEER_SOURCE_MDNS, "zz", "2/0"), 0);
        ck_assert_int_eq(peer_table_drop(&t, PEER_SOURCE_SEED, "n2", "2/0"), 0);
        ck_assert_uint_eq(n_events, 4);

        ck_assert_int_eq(peer_table_drop(&t, PEER_SOURCE_MDNS, "n2", "2/0"), 1);
        ck_assert_uint_eq(n_events, 5);
        ck_assert_int_eq(events[4].event, PEER_VANISHED);
        ck_assert_str_eq(events[4].name, "n2");
        ck_assert_str_eq(events[4].id, "aa");
        ck_assert_uint_eq(t.n_peers, 0);
}
END_TEST

START_TEST(test_no_gossip_is_no_peer) {
        ck_assert_int_eq(put1("n2", "2/0", "aa", "m:1", NULL), 0);
        ck_assert_uint_eq(n_events, 0);
        ck_assert_uint_eq(t.n_peers, 0);
        ck_assert_int_eq(put1("n2", "2/0", "aa", "m:1", ""), 0);
        ck_assert_uint_eq(t.n_peers, 0);

        ck_assert_int_eq(put1("n2", "2/0", "aa", "m:1", "g:1"), 1);
        /* Its only sighting loses the address: vanished. */
        ck_assert_int_eq(put1("n2", "2/0", "aa", "m:1", NULL), 0);
        ck_assert_uint_eq(n_events, 2);
        ck_assert_int_eq(events[1].event, PEER_VANISHED);
        ck_assert_uint_eq(t.n_peers, 0);
}
END_TEST

START_TEST(test_same_name_other_source) {
        char *const g[] = { "10.0.0.9:11436" };

        ck_assert_int_eq(put1("x", "1/0", "aa", "", "10.0.0.9:11436"), 1);
        ck_assert_int_eq(peer_table_put(&t, PEER_SOURCE_SEED, "x", "", "", "", g, 1), 1);
        ck_assert_uint_eq(t.n_peers, 2);
        ck_assert_ptr_nonnull(peer_table_find(&t, PEER_SOURCE_SEED, "x"));
        peer_table_drop_source(&t, PEER_SOURCE_MDNS);
        ck_assert_uint_eq(t.n_peers, 1);
        ck_assert_int_eq(events[2].event, PEER_VANISHED);
        ck_assert_ptr_null(peer_table_find(&t, PEER_SOURCE_MDNS, "x"));
}
END_TEST

START_TEST(test_sync_seeds) {
        char *const a[] = { "10.0.0.1:1", "[fd00::1]:1", "10.0.0.1:1" };
        char *const b[] = { "10.0.0.2:2" };
        PeerSpec specs[] = {
                { .name = "a.lan:1", .gossip = a, .n_gossip = 3 },
                { .name = "b.lan:2", .gossip = b, .n_gossip = 1 },
        };

        ck_assert_int_eq(peer_table_sync(&t, PEER_SOURCE_SEED, specs, 2), 2);
        ck_assert_uint_eq(t.n_peers, 2);
        ck_assert_str_eq(events[0].gossip, "10.0.0.1:1,[fd00::1]:1");
        ck_assert_str_eq(events[0].id, "");

        /* The same round again: nothing. */
        ck_assert_int_eq(peer_table_sync(&t, PEER_SOURCE_SEED, specs, 2), 0);
        ck_assert_uint_eq(n_events, 2);

        /* b no longer resolves (no address): it vanishes; a keeps quiet. */
        specs[1].n_gossip = 0;
        ck_assert_int_eq(peer_table_sync(&t, PEER_SOURCE_SEED, specs, 2), 1);
        ck_assert_int_eq(events[2].event, PEER_VANISHED);
        ck_assert_str_eq(events[2].name, "b.lan:2");

        /* mDNS peers are untouched by a seed sync. */
        ck_assert_int_eq(put1("m", "1/0", "aa", "", "10.0.0.3:1"), 1);
        ck_assert_int_eq(peer_table_sync(&t, PEER_SOURCE_SEED, NULL, 0), 1);
        ck_assert_uint_eq(t.n_peers, 1);
        ck_assert_int_eq(t.peers[0].source, PEER_SOURCE_MDNS);
}
END_TEST

START_TEST(test_limits) {
        char name[32], gossip[32], key[16];
        char big[PEER_NAME_MAX + 2];

        peer_table_clear(&t);
        peer_table_init(&t, 4, record, &t);
        for (unsigned i = 0; i < 4; i++) {
                snprintf(name, sizeof(name), "n%u", i);
                ck_assert_int_eq(put1(name, "1/0", "", "", "10.0.0.1:1"), 1);
        }
        ck_assert_int_eq(put1("n9", "1/0", "", "", "10.0.0.1:1"), -E2BIG);
        ck_assert_uint_eq(t.n_refused, 1);
        ck_assert_uint_eq(t.n_peers, 4);

        /* Sightings per peer. */
        for (unsigned i = 1; i < PEER_SIGHTINGS_MAX; i++) {
                snprintf(key, sizeof(key), "%u/0", i + 1);
                snprintf(gossip, sizeof(gossip), "10.0.%u.1:1", i);
                ck_assert_int_ge(put1("n0", key, "", "", gossip), 0);
        }
        ck_assert_int_eq(put1("n0", "99/0", "", "", "10.9.9.9:1"), -E2BIG);

        /* Gossip addresses of one sighting. */
        char *many[PEER_GOSSIP_MAX + 5];
        char bufs[PEER_GOSSIP_MAX + 5][32];
        for (unsigned i = 0; i < ELEMENTSOF(many); i++) {
                snprintf(bufs[i], sizeof(bufs[i]), "10.1.0.%u:1", i);
                many[i] = bufs[i];
        }
        ck_assert_int_eq(peer_table_put(&t, PEER_SOURCE_MDNS, "n1", "1/0", "", "", many, ELEMENTSOF(many)), 1);
        ck_assert_uint_eq(peer_table_find(&t, PEER_SOURCE_MDNS, "n1")->n_gossip, PEER_GOSSIP_MAX);

        /* Bad arguments. */
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        ck_assert_int_eq(put1(big, "1/0", "", "", "10.0.0.1:1"), -EINVAL);
        ck_assert_int_eq(put1("", "1/0", "", "", "10.0.0.1:1"), -EINVAL);
        ck_assert_int_eq(put1(NULL, "1/0", "", "", "10.0.0.1:1"), -EINVAL);
        ck_assert_int_eq(put1("n1", "1/0", "0123456789abcdef0123456789abcdef0", "", "10.0.0.1:1"), -EINVAL);
        ck_assert_int_eq(peer_table_put(&t, (PeerSource) 7, "n1", "", "", "", NULL, 0), -EINVAL);
        ck_assert_int_eq(peer_table_put(&t, PEER_SOURCE_MDNS, "n1", "", "", "", NULL, 2), -EINVAL);
}
END_TEST

static void record_quiet(PeerEvent event, const Peer *p, void *userdata) {
}

START_TEST(test_many_peers_quiet) {
        char name[32];

        peer_table_clear(&t);
        peer_table_init(&t, PEERS_MAX * 2, record_quiet, NULL);
        ck_assert_uint_eq(t.max_peers, PEERS_MAX);
        for (unsigned i = 0; i < PEERS_MAX + 10; i++) {
                snprintf(name, sizeof(name), "n%u", i);
                (void) put1(name, "1/0", "", "", "10.0.0.1:1");
        }
        ck_assert_uint_eq(t.n_peers, PEERS_MAX);
        peer_table_drop_source(&t, PEER_SOURCE_MDNS);
        ck_assert_uint_eq(t.n_peers, 0);
}
END_TEST

static Suite *peers_suite(void) {
        Suite *s = suite_create("peers");
        TCase *tc = tcase_create("peers");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_source_names);
        tcase_add_test(tc, test_discover_change_vanish);
        tcase_add_test(tc, test_no_gossip_is_no_peer);
        tcase_add_test(tc, test_same_name_other_source);
        tcase_add_test(tc, test_sync_seeds);
        tcase_add_test(tc, test_limits);
        tcase_add_test(tc, test_many_peers_quiet);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(peers_suite());
}
