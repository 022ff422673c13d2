/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for common/mesh-replay.c: a second use of an authenticator within its window is
 * refused, after it is not; the table stays bounded and says when it forgot early. */
#include <string.h>

#include "mesh-auth.h"
#include "mesh-replay.h"
#include "unit-test.h"

static void mac_of(uint32_t n, uint8_t mac[32]) {
        /* Spread like a real MAC: no two share their first bytes by accident. */
        for (size_t i = 0; i < 32; i++)
                mac[i] = (uint8_t) ((n * 2654435761u) >> ((i % 4) * 8)) ^ (uint8_t) (i * 31 + n);
}

START_TEST(test_second_use_refused) {
        _cleanup_(mesh_replay_freep) MeshReplay *r = NULL;
        uint8_t a[32], b[32];
        uint64_t now = 1000000;

        ck_assert_int_eq(mesh_replay_new(1024, &r), 0);
        mac_of(1, a);
        mac_of(2, b);
        ck_assert_int_eq(mesh_replay_check(r, now, a, sizeof(a), now), 0);
        ck_assert_int_eq(mesh_replay_check(r, now, a, sizeof(a), now + 1), -EALREADY);
        ck_assert_int_eq(mesh_replay_check(r, now, b, sizeof(b), now + 1), 0);
        /* Until the end of its window (it would be refused as stale after that anyway)... */
        ck_assert_int_eq(mesh_replay_check(r, now, a, sizeof(a), now + MESH_AUTH_WINDOW_SEC), -EALREADY);
        /* ...and a time in the future is kept as long. */
        ck_assert_int_eq(mesh_replay_check(r, now + 50, b, 16, now), -EALREADY);
        ck_assert_int_eq(mesh_replay_check(r, now, a, sizeof(a), now + MESH_AUTH_WINDOW_SEC + 1), 0);
        ck_assert_uint_eq(mesh_replay_evicted(r), 0);
        ck_assert_int_eq(mesh_replay_new(1000, &(MeshReplay *) { NULL }), -EINVAL);
}
END_TEST

START_TEST(test_bounded) {
        _cleanup_(mesh_replay_freep) MeshReplay *r = NULL;
        uint64_t now = 5000;
        uint8_t mac[32];
        unsigned refused = 0;

        ck_assert_int_eq(mesh_replay_new(256, &r), 0);
        /* Within one window, more than the table holds: every one is new, so all are taken;
         * the overflow is counted, never refused. */
        for (uint32_t i = 0; i < 1000; i++) {
                mac_of(i, mac);
                ck_assert_int_eq(mesh_replay_check(r, now, mac, sizeof(mac), now), 0);
        }
        ck_assert_uint_ge(mesh_replay_evicted(r), 1000 - 256);
        /* The most recent ones are still refused a second time. */
        for (uint32_t i = 990; i < 1000; i++) {
                mac_of(i, mac);
                refused += mesh_replay_check(r, now, mac, sizeof(mac), now) == -EALREADY;
        }
        ck_assert_uint_ge(refused, 8);
        /* A window later the slots are free again: nothing more is evicted. */
        {
                uint64_t before = mesh_replay_evicted(r);

                for (uint32_t i = 5000; i < 5100; i++) {
                        mac_of(i, mac);
                        ck_assert_int_eq(mesh_replay_check(r, now + 200, mac, sizeof(mac), now + 200), 0);
                }
                ck_assert_uint_eq(mesh_replay_evicted(r), before);
        }
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("mesh-replay");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_second_use_refused);
        tcase_add_test(tc, test_bounded);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
