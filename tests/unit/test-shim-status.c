/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* GET /api/mycelia/status's pure part: the ring of recent flows (a retry moves a flow, an ended
 * one stays SHIM_FLOWS_KEEP_USEC, the oldest entries are reused), a node's health word from
 * gossip's and the routing table's states, and a node's JSON. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "shim-status.h"
#include "unit-test.h"

#define NODE_A "0000000000000000000000000000000a"
#define NODE_B "0000000000000000000000000000000b"
#define T0 (1000 * USEC_PER_SEC)

static json_object *get(json_object *o, const char *key) {
        json_object *v = NULL;

        ck_assert_msg(json_object_object_get_ex(o, key, &v), "no %s", key);
        return v;
}

START_TEST(test_flow_retry_and_end) {
        ShimFlows f = {};
        json_object *a, *e;

        shim_flows_target(&f, 7, NODE_A, "a", "m", "chat", T0);
        /* A failover to b: the same flow, now to b, two attempts. */
        shim_flows_target(&f, 7, NODE_B, "b", "m", "chat", T0 + 10 * USEC_PER_MSEC);
        a = shim_flows_json(&f, "self", T0 + 50 * USEC_PER_MSEC);
        ck_assert_uint_eq(json_object_array_length(a), 1);
        e = json_object_array_get_idx(a, 0);
        ck_assert_str_eq(json_object_get_string(get(e, "to")), NODE_B);
        ck_assert_str_eq(json_object_get_string(get(e, "to_name")), "b");
        ck_assert_str_eq(json_object_get_string(get(e, "from")), "self");
        ck_assert_str_eq(json_object_get_string(get(e, "endpoint")), "chat");
        ck_assert(json_object_get_boolean(get(e, "active")));
        ck_assert_int_eq(json_object_get_int64(get(e, "attempts")), 2);
        ck_assert_int_eq(json_object_get_int64(get(e, "age_ms")), 50);
        ck_assert_int_eq(json_object_get_int64(get(e, "duration_ms")), 50);
        json_object_put(a);

        shim_flows_end(&f, 7, 200, 16, T0 + 2 * USEC_PER_SEC);
        /* Ending twice, or an id never routed: nothing changes. */
        shim_flows_end(&f, 7, 500, 99, T0 + 3 * USEC_PER_SEC);
        shim_flows_end(&f, 8, 500, 99, T0 + 3 * USEC_PER_SEC);
        a = shim_flows_json(&f, "self", T0 + 2 * USEC_PER_SEC + SHIM_FLOWS_KEEP_USEC);
        ck_assert_uint_eq(json_object_array_length(a), 1);
        e = json_object_array_get_idx(a, 0);
        ck_assert(!json_object_get_boolean(get(e, "active")));
        ck_assert_int_eq(json_object_get_int64(get(e, "status")), 200);
        ck_assert_int_eq(json_object_get_int64(get(e, "tokens")), 16);
        ck_assert_int_eq(json_object_get_int64(get(e, "duration_ms")), 2000);
        json_object_put(a);
        /* Past the keep time it is gone. */
        a = shim_flows_json(&f, "self", T0 + 2 * USEC_PER_SEC + SHIM_FLOWS_KEEP_USEC + 1);
        ck_assert_uint_eq(json_object_array_length(a), 0);
        json_object_put(a);
}
END_TEST

START_TEST(test_flow_ring_reuses_the_oldest) {
        ShimFlows f = {};
        char model[300];
        json_object *a;

        /* A model name longer than the entry: cut, never overflowing. */
        memset(model, 'x', sizeof(model) - 1);
        model[sizeof(model) - 1] = '\0';
        for (uint64_t id = 1; id <= SHIM_FLOWS_MAX + 5; id++)
                shim_flows_target(&f, id, NODE_A, "a", model, "generate", T0 + id);
        /* id 0 is "no request": ignored. */
        shim_flows_target(&f, 0, NODE_A, "a", NULL, "generate", T0);
        a = shim_flows_json(&f, "self", T0 + 1000);
        ck_assert_uint_eq(json_object_array_length(a), SHIM_FLOWS_MAX);
        /* Oldest first: 6 .. SHIM_FLOWS_MAX + 5. */
        ck_assert_int_eq(json_object_get_int64(get(json_object_array_get_idx(a, 0), "id")), 6);
        ck_assert_int_eq(json_object_get_int64(get(json_object_array_get_idx(a, SHIM_FLOWS_MAX - 1), "id")),
                         SHIM_FLOWS_MAX + 5);
        ck_assert_uint_eq(strlen(json_object_get_string(get(json_object_array_get_idx(a, 0), "model"))), 128);
        json_object_put(a);
        /* The reused entry of id 1 does not end id 6's flow. */
        shim_flows_end(&f, 1, 200, 0, T0 + 2000);
        a = shim_flows_json(&f, "self", T0 + 3000);
        ck_assert(json_object_get_boolean(get(json_object_array_get_idx(a, 0), "active")));
        json_object_put(a);
}
END_TEST

START_TEST(test_health) {
        /* Gossip's verdict first: routerd drops dead members from its table. */
        ck_assert_str_eq(shim_status_health("dead", NULL), "dead");
        ck_assert_str_eq(shim_status_health("dead", "up"), "dead");
        ck_assert_str_eq(shim_status_health("left", "down"), "left");
        ck_assert_str_eq(shim_status_health("alive", "up"), "up");
        ck_assert_str_eq(shim_status_health("suspect", "up"), "up");
        ck_assert_str_eq(shim_status_health("alive", "cooling"), "cooling");
        ck_assert_str_eq(shim_status_health("suspect", "down"), "suspect");
        ck_assert_str_eq(shim_status_health("alive", "down"), "down");
        ck_assert_str_eq(shim_status_health(NULL, "down"), "down");
        ck_assert_str_eq(shim_status_health("alive", NULL), "joining");
        ck_assert_str_eq(shim_status_health(NULL, NULL), "unknown");
        ck_assert_str_eq(shim_status_health("weird", "weird"), "unknown");
}
END_TEST

START_TEST(test_node_json) {
        char *models[] = { "m1:latest", "m2:latest" };
        ShimStatusNode n = {
                .id = NODE_A, .name = "a", .gossip_state = "alive", .route_state = "cooling", .local = true,
                .api = "127.0.0.1:11434", .shard = true, .models = models, .n_models = 2, .in_flight = 3,
                .capacity = 4, .ttft_usec = 1500 * USEC_PER_MSEC, .cooling_left_usec = 2 * USEC_PER_SEC,
        };
        json_object *o = shim_status_node_json(&n);

        ck_assert_ptr_nonnull(o);
        ck_assert_str_eq(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
                         "{\"id\":\"" NODE_A "\",\"name\":\"a\",\"health\":\"cooling\",\"gossip_state\":\"alive\","
                         "\"route_state\":\"cooling\",\"local\":true,\"api\":\"127.0.0.1:11434\",\"mesh\":null,"
                         "\"shard\":true,\"models\":[\"m1:latest\",\"m2:latest\"],\"in_flight\":3,\"capacity\":4,"
                         "\"ttft_ms\":1500,\"cooling_left_ms\":2000}");
        json_object_put(o);
        /* No name: the id stands in. */
        n = (ShimStatusNode) { .id = NODE_B, .gossip_state = "dead" };
        o = shim_status_node_json(&n);
        ck_assert_str_eq(json_object_get_string(get(o, "name")), NODE_B);
        ck_assert_str_eq(json_object_get_string(get(o, "health")), "dead");
        ck_assert_uint_eq(json_object_array_length(get(o, "models")), 0);
        json_object_put(o);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("shim-status");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_flow_retry_and_end);
        tcase_add_test(tc, test_flow_ring_reuses_the_oldest);
        tcase_add_test(tc, test_health);
        tcase_add_test(tc, test_node_json);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
