/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/routerd/gossip-members.c: a Gossip1 member to a route entry, mesh
 * URLs, model lists and load values, with no manager and no bus. */
#include <stdio.h>

#include "gossip-member-fixture.h"
#include "gossip-members.h"
#include "unit-test.h"

#define PEER_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

/* ---- pure mapping ---- */

static void check_url(const char *mesh, const char *gossip, const char *expect) {
        char buf[128];
        int r = gossip_meta_url(mesh, gossip, buf, sizeof(buf));

        if (!expect) {
                ck_assert_msg(r < 0, "'%s' (gossip '%s') gave %s", mesh, strempty(gossip), buf);
                return;
        }
        ck_assert_msg(r == 0, "'%s' (gossip '%s') failed: %d", mesh, strempty(gossip), r);
        ck_assert_str_eq(buf, expect);
}

START_TEST(test_mesh_url) {
        check_url("10.0.0.2:11438", "10.0.0.9:11436", "http://10.0.0.2:11438");
        check_url("0.0.0.0:11438", "10.0.0.9:11436", "http://10.0.0.9:11438");
        check_url("[::]:11438", "10.0.0.9:11436", "http://10.0.0.9:11438");
        check_url(":11438", "10.0.0.9:11436", "http://10.0.0.9:11438");
        check_url("[::]:11438", "[fd00::9]:11436", "http://[fd00::9]:11438");
        check_url("[fd00::2]:11438", "10.0.0.9:11436", "http://[fd00::2]:11438");
        check_url("127.0.0.1:40001", NULL, "http://127.0.0.1:40001");
        /* Unusable: no port, bad port, names (no DNS from gossip), bare IPv6, nothing to
         * replace an unspecified host with. */
        check_url("10.0.0.2", "10.0.0.9:11436", NULL);
        check_url("10.0.0.2:", "10.0.0.9:11436", NULL);
        check_url("10.0.0.2:0", "10.0.0.9:11436", NULL);
        check_url("10.0.0.2:65536", "10.0.0.9:11436", NULL);
        check_url("10.0.0.2:11a", "10.0.0.9:11436", NULL);
        check_url("10.0.0.2:-1", "10.0.0.9:11436", NULL);
        check_url("node-b.lan:11438", "10.0.0.9:11436", NULL);
        check_url("fd00::2:11438", "10.0.0.9:11436", NULL);
        check_url("[fd00::2]11438", "10.0.0.9:11436", NULL);
        check_url("0.0.0.0:11438", NULL, NULL);
        check_url("0.0.0.0:11438", "0.0.0.0:11436", NULL);
        check_url("0.0.0.0:11438", "gossip.lan:11436", NULL);
        check_url("", "10.0.0.9:11436", NULL);
        check_url(NULL, "10.0.0.9:11436", NULL);
        check_url("[" "fd00:0000:0000:0000:0000:0000:0000:0000:0000:0000:0000" "]:1", NULL, NULL);
}
END_TEST

START_TEST(test_models) {
        char **v = NULL, *s = NULL, *many[3] = { "a", "b,c", "d" };
        size_t n = 0;
        bool truncated = true;
        char long_name[GOSSIP_MODEL_NAME_MAX + 2];

        ck_assert_int_eq(gossip_models_parse("llama3.2,qwen2.5:7b,,nomic-embed-text", &v, &n), 0);
        ck_assert_uint_eq(n, 3);
        ck_assert_str_eq(v[0], "llama3.2");
        ck_assert_str_eq(v[1], "qwen2.5:7b");
        ck_assert_str_eq(v[2], "nomic-embed-text");
        gossip_models_free(v, n);

        ck_assert_int_eq(gossip_models_parse("", &v, &n), 0);
        ck_assert_uint_eq(n, 0);
        gossip_models_free(v, n);
        ck_assert_int_eq(gossip_models_parse(NULL, &v, &n), 0);
        ck_assert_uint_eq(n, 0);
        gossip_models_free(v, n);

        /* Spaces, control bytes, non-ASCII and overlong names are skipped. */
        memset(long_name, 'x', sizeof(long_name) - 1);
        long_name[sizeof(long_name) - 1] = '\0';
        ck_assert_int_eq(gossip_models_parse("a b,ok,\x01x,caf\xc3\xa9", &v, &n), 0);
        ck_assert_uint_eq(n, 1);
        ck_assert_str_eq(v[0], "ok");
        gossip_models_free(v, n);
        ck_assert_int_eq(gossip_models_parse(long_name, &v, &n), 0);
        ck_assert_uint_eq(n, 0);
        gossip_models_free(v, n);

        ck_assert_int_eq(gossip_models_format(many, 3, &s, &truncated), 0);
        ck_assert_str_eq(s, "a,d");
        ck_assert(!truncated);
        free(s);
        ck_assert_int_eq(gossip_models_format(NULL, 0, &s, NULL), 0);
        ck_assert_str_eq(s, "");
        free(s);
}
END_TEST

START_TEST(test_models_bounds) {
        /* More than ROUTE_MAX_MODELS items: capped. */
        size_t size = (ROUTE_MAX_MODELS + 50) * 2 + 1, n = 0;
        char *list = malloc(size), **v = NULL, *s = NULL;
        char *names[600];
        char name_buf[600][12];
        bool truncated = false;

        ck_assert_ptr_nonnull(list);
        list[0] = '\0';
        for (size_t i = 0; i < ROUTE_MAX_MODELS + 50; i++)
                strcat(list, i == 0 ? "m" : ",m");
        ck_assert_int_eq(gossip_models_parse(list, &v, &n), 0);
        ck_assert_uint_eq(n, ROUTE_MAX_MODELS);
        gossip_models_free(v, n);
        free(list);

        /* Formatting stops at GOSSIP_MODELS_META_MAX, at a name boundary. */
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                snprintf(name_buf[i], sizeof(name_buf[i]), "model%04zu", i);
                names[i] = name_buf[i];
        }
        ck_assert_int_eq(gossip_models_format(names, ELEMENTSOF(names), &s, &truncated), 0);
        ck_assert(truncated);
        ck_assert_uint_le(strlen(s), GOSSIP_MODELS_META_MAX);
        ck_assert_uint_eq(strlen(s) % 10, 9);     /* whole "modelNNNN" items */
        free(s);
}
END_TEST

START_TEST(test_load) {
        ck_assert_uint_eq(gossip_load_parse("0"), 0);
        ck_assert_uint_eq(gossip_load_parse("17"), 17);
        ck_assert_uint_eq(gossip_load_parse("99999999999999999999999"), GOSSIP_LOAD_MAX);
        ck_assert_uint_eq(gossip_load_parse("-3"), 0);
        ck_assert_uint_eq(gossip_load_parse("3x"), 0);
        ck_assert_uint_eq(gossip_load_parse(""), 0);
        ck_assert_uint_eq(gossip_load_parse(NULL), 0);
}
END_TEST

START_TEST(test_loads_table) {
        GossipLoads l = {};
        const GossipLoad *x;
        GossipRoute r = { .in_flight = 3, .capacity = 4 };
        char id[NODE_ID_LEN + 1];

        ck_assert_ptr_null(gossip_loads_find(&l, PEER_B));
        ck_assert_int_eq(gossip_loads_set(&l, PEER_B, 2, 8), 1);
        ck_assert_int_eq(gossip_loads_set(&l, PEER_B, 2, 8), 0);
        ck_assert_int_eq(gossip_loads_set(&l, PEER_B, 5, 8), 1);
        ck_assert_int_eq(gossip_loads_set(&l, "aaaa", 1, 1), 1);
        x = gossip_loads_find(&l, PEER_B);
        ck_assert_ptr_nonnull(x);
        ck_assert_uint_eq(x->in_flight, 5);
        ck_assert_uint_eq(x->capacity, 8);
        /* Sorted: binary search finds both. */
        ck_assert_str_eq(l.loads[0].id, "aaaa");
        ck_assert_ptr_nonnull(gossip_loads_find(&l, "aaaa"));
        ck_assert_ptr_null(gossip_loads_find(&l, "aaa"));
        ck_assert_ptr_null(gossip_loads_find(&l, NULL));

        /* A peer cannot make the numbers absurd. */
        ck_assert_int_eq(gossip_loads_set(&l, PEER_B, UINT32_MAX, UINT64_MAX), 1);
        x = gossip_loads_find(&l, PEER_B);
        ck_assert_uint_eq(x->in_flight, GOSSIP_LOAD_MAX);
        ck_assert_uint_eq(x->capacity, GOSSIP_LOAD_MAX);
        ck_assert_int_eq(gossip_loads_set(&l, "", 1, 1), -EINVAL);
        ck_assert_int_eq(gossip_loads_set(&l, NULL, 1, 1), -EINVAL);
        ck_assert_int_eq(gossip_loads_set(&l, PEER_B "0", 1, 1), -EINVAL);

        /* A load heard directly wins over metadata; none leaves the route as it is. */
        gossip_route_set_load(&r, NULL);
        ck_assert_uint_eq(r.in_flight, 3);
        ck_assert_uint_eq(r.capacity, 4);
        gossip_route_set_load(&r, gossip_loads_find(&l, "aaaa"));
        ck_assert_uint_eq(r.in_flight, 1);
        ck_assert_uint_eq(r.capacity, 1);

        ck_assert_int_eq(gossip_loads_remove(&l, PEER_B), 1);
        ck_assert_int_eq(gossip_loads_remove(&l, PEER_B), 0);
        ck_assert_int_eq(gossip_loads_remove(&l, NULL), 0);
        ck_assert_uint_eq(l.n, 1);

        /* Bounded: as many as gossip holds members. */
        for (unsigned i = 1; i < GOSSIP_LOADS_MAX; i++) {
                snprintf(id, sizeof(id), "%032x", i);
                ck_assert_int_eq(gossip_loads_set(&l, id, i, 1), 1);
        }
        ck_assert_uint_eq(l.n, GOSSIP_LOADS_MAX);
        ck_assert_int_eq(gossip_loads_set(&l, PEER_B, 1, 1), -E2BIG);
        ck_assert_int_eq(gossip_loads_set(&l, id, 7, 1), 1);   /* an update still goes */
        for (size_t i = 1; i < l.n; i++)
                ck_assert_int_lt(strcmp(l.loads[i - 1].id, l.loads[i].id), 0);
        gossip_loads_done(&l);
        ck_assert_uint_eq(l.n, 0);
        ck_assert_ptr_null(l.loads);
}
END_TEST

START_TEST(test_member_route) {
        GossipMember g;
        GossipRoute r = {};
        const char *reason = NULL;

        g = member(PEER_B, "alive", "127.0.0.1:40000", "0.0.0.0:40001", "llama3.2,qwen");
        g.meta_keys[g.n_meta] = "in_flight";
        g.meta_values[g.n_meta++] = "3";
        g.meta_keys[g.n_meta] = "capacity";
        g.meta_values[g.n_meta++] = "4";
        ck_assert_int_eq(gossip_member_route(&g, &r, &reason), 1);
        ck_assert_str_eq(r.address, "http://127.0.0.1:40001");
        ck_assert_uint_eq(r.n_models, 2);
        ck_assert_str_eq(r.models[1], "qwen");
        ck_assert(r.up);
        ck_assert_uint_eq(r.in_flight, 3);
        ck_assert_uint_eq(r.capacity, 4);
        gossip_route_done(&r);

        g.state = "suspect";
        ck_assert_int_eq(gossip_member_route(&g, &r, &reason), 1);
        ck_assert(!r.up);
        ck_assert_str_eq(reason, "suspect");
        gossip_route_done(&r);

        g.state = "dead";
        ck_assert_int_eq(gossip_member_route(&g, &r, &reason), 0);
        g.state = "left";
        ck_assert_int_eq(gossip_member_route(&g, &r, &reason), 0);
        ck_assert_str_eq(reason, "dead or left");
        g.state = "zombie";
        ck_assert_int_eq(gossip_member_route(&g, &r, &reason), 0);
        ck_assert_str_eq(reason, "unknown state");

        /* Without mesh metadata nothing can be forwarded to it. */
        g = member(PEER_B, "alive", "127.0.0.1:40000", NULL, "llama3.2");
        ck_assert_int_eq(gossip_member_route(&g, &r, &reason), 0);
        ck_assert_str_eq(reason, "no mesh address");
        g = member(PEER_B, "alive", "127.0.0.1:40000", "peer.example:40001", "llama3.2");
        ck_assert_int_eq(gossip_member_route(&g, &r, &reason), 0);
        ck_assert_str_eq(reason, "unusable mesh address");
        g = member("", "alive", "127.0.0.1:40000", "127.0.0.1:1", NULL);
        ck_assert_int_eq(gossip_member_route(&g, &r, &reason), 0);
        g = member(PEER_B "ff", "alive", "127.0.0.1:40000", "127.0.0.1:1", NULL);
        ck_assert_int_eq(gossip_member_route(&g, &r, &reason), 0);

        /* No models: still in the table (up), routed to for nothing. */
        g = member(PEER_B, "alive", "127.0.0.1:40000", "127.0.0.1:40001", NULL);
        ck_assert_int_eq(gossip_member_route(&g, &r, &reason), 1);
        ck_assert_uint_eq(r.n_models, 0);
        gossip_route_done(&r);
}
END_TEST

static Suite *gossip_members_suite(void) {
        Suite *s = suite_create("gossip-members");
        TCase *tc = tcase_create("members");

        tcase_add_test(tc, test_mesh_url);
        tcase_add_test(tc, test_models);
        tcase_add_test(tc, test_models_bounds);
        tcase_add_test(tc, test_load);
        tcase_add_test(tc, test_loads_table);
        tcase_add_test(tc, test_member_route);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(gossip_members_suite());
}
