/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for common/mesh-auth.c: the X-Mycelia-Auth authenticator signs and verifies, and
 * rejects wrong keys, changed requests, stale or future times and malformed values. */
#include <stdio.h>

#include "mesh-auth.h"
#include "unit-test.h"

#define NODE_B "fedcba9876543210fedcba9876543210"
#define NODE_C "00112233445566778899aabbccddeeff"
#define NOW 1700000000ULL

static const uint8_t mesh_key[32] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                      17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32 };
static const uint8_t nonce[MESH_AUTH_NONCE_SIZE] = { 0xde, 0xad, 0xbe, 0xef, 0x01, 0x23, 0x45, 0x67 };
static char body_text[] = "{\"model\":\"llama3.2\",\"prompt\":\"hi\"}";

static MeshAuthKey key;

static void setup(void) {
        ck_assert_int_eq(mesh_auth_key_derive(mesh_key, sizeof(mesh_key), &key), 0);
}

static MeshAuthRequest request(struct iovec *iov) {
        iov[0] = (struct iovec) { body_text, 10 };
        iov[1] = (struct iovec) { body_text + 10, sizeof(body_text) - 1 - 10 };
        return (MeshAuthRequest) {
                .method = "POST", .uri = "/api/generate", .node_id = NODE_B, .body = iov, .n_body = 2,
        };
}

static void sign(const MeshAuthRequest *req, uint64_t t, char *buf) {
        ck_assert_int_eq(mesh_auth_sign(&key, req, t, nonce, buf, MESH_AUTH_VALUE_MAX), 0);
}

START_TEST(test_valid) {
        struct iovec iov[2], whole;
        MeshAuthRequest req = request(iov), req2;
        char v[MESH_AUTH_VALUE_MAX];

        sign(&req, NOW, v);
        ck_assert(strneq(v, "v1 1700000000 deadbeef01234567 ", 31));
        ck_assert_uint_eq(strlen(v), 31 + 64);
        ck_assert_int_eq(mesh_auth_verify(&key, &req, NOW, v), 0);
        /* Within the window either way. */
        ck_assert_int_eq(mesh_auth_verify(&key, &req, NOW + MESH_AUTH_WINDOW_SEC, v), 0);
        ck_assert_int_eq(mesh_auth_verify(&key, &req, NOW - MESH_AUTH_WINDOW_SEC, v), 0);

        /* The body is hashed as a stream: split differently, same MAC. */
        req2 = req;
        whole = (struct iovec) { body_text, sizeof(body_text) - 1 };
        req2.body = &whole;
        req2.n_body = 1;
        ck_assert_int_eq(mesh_auth_verify(&key, &req2, NOW, v), 0);

        /* No body. */
        req.n_body = 0;
        req.method = "GET";
        req.uri = "/api/tags";
        sign(&req, NOW, v);
        ck_assert_int_eq(mesh_auth_verify(&key, &req, NOW, v), 0);
}
END_TEST

START_TEST(test_wrong_key) {
        uint8_t other[32];
        MeshAuthKey k2;
        struct iovec iov[2];
        MeshAuthRequest req = request(iov);
        char v[MESH_AUTH_VALUE_MAX];

        memcpy(other, mesh_key, sizeof(other));
        other[31] ^= 1;
        ck_assert_int_eq(mesh_auth_key_derive(other, sizeof(other), &k2), 0);
        ck_assert(memcmp(k2.key, key.key, sizeof(key.key)) != 0);
        /* The subkey is not the mesh key itself. */
        ck_assert(memcmp(key.key, mesh_key, sizeof(mesh_key)) != 0);

        sign(&req, NOW, v);
        ck_assert_int_eq(mesh_auth_verify(&k2, &req, NOW, v), -EKEYREJECTED);
        ck_assert_int_eq(mesh_auth_key_derive(NULL, 32, &k2), -EINVAL);
        ck_assert_int_eq(mesh_auth_key_derive(mesh_key, 4, &k2), -EINVAL);
}
END_TEST

START_TEST(test_tampered) {
        struct iovec iov[2], iov2[2];
        MeshAuthRequest req = request(iov), t;
        char v[MESH_AUTH_VALUE_MAX], w[MESH_AUTH_VALUE_MAX];
        char other_body[sizeof(body_text)];

        sign(&req, NOW, v);

        t = req;
        t.method = "PUT";
        ck_assert_int_eq(mesh_auth_verify(&key, &t, NOW, v), -EKEYREJECTED);
        t = req;
        t.uri = "/api/chat";
        ck_assert_int_eq(mesh_auth_verify(&key, &t, NOW, v), -EKEYREJECTED);
        t = req;
        t.uri = "/api/generate?x=1";
        ck_assert_int_eq(mesh_auth_verify(&key, &t, NOW, v), -EKEYREJECTED);
        /* Meant for node B, replayed at node C. */
        t = req;
        t.node_id = NODE_C;
        ck_assert_int_eq(mesh_auth_verify(&key, &t, NOW, v), -EKEYREJECTED);
        /* Body changed by one byte. */
        memcpy(other_body, body_text, sizeof(body_text));
        other_body[15] ^= 1;
        iov2[0] = (struct iovec) { other_body, sizeof(other_body) - 1 };
        t = req;
        t.body = iov2;
        t.n_body = 1;
        ck_assert_int_eq(mesh_auth_verify(&key, &t, NOW, v), -EKEYREJECTED);
        /* Body dropped. */
        t = req;
        t.n_body = 0;
        ck_assert_int_eq(mesh_auth_verify(&key, &t, NOW, v), -EKEYREJECTED);

        /* The time or nonce in the header changed: the MAC covers them. */
        snprintf(w, sizeof(w), "%s", v);
        w[12] = w[12] == '0' ? '1' : '0';       /* last digit of the time */
        ck_assert_int_eq(mesh_auth_verify(&key, &req, NOW, w), -EKEYREJECTED);
        snprintf(w, sizeof(w), "%s", v);
        w[14] = w[14] == 'a' ? 'b' : 'a';       /* first nonce digit */
        ck_assert_int_eq(mesh_auth_verify(&key, &req, NOW, w), -EKEYREJECTED);
        snprintf(w, sizeof(w), "%s", v);
        w[strlen(w) - 1] = w[strlen(w) - 1] == '0' ? '1' : '0';
        ck_assert_int_eq(mesh_auth_verify(&key, &req, NOW, w), -EKEYREJECTED);
}
END_TEST

START_TEST(test_expired_and_future) {
        struct iovec iov[2];
        MeshAuthRequest req = request(iov);
        char v[MESH_AUTH_VALUE_MAX];

        sign(&req, NOW, v);
        ck_assert_int_eq(mesh_auth_verify(&key, &req, NOW + MESH_AUTH_WINDOW_SEC + 1, v), -ETIME);
        ck_assert_int_eq(mesh_auth_verify(&key, &req, NOW + 3600, v), -ETIME);
        ck_assert_int_eq(mesh_auth_verify(&key, &req, NOW - MESH_AUTH_WINDOW_SEC - 1, v), -ETIME);
        ck_assert_int_eq(mesh_auth_verify(&key, &req, 0, v), -ETIME);

        /* Extreme times do not wrap around. */
        sign(&req, UINT64_MAX, v);
        ck_assert_int_eq(mesh_auth_verify(&key, &req, 0, v), -ETIME);
        ck_assert_int_eq(mesh_auth_verify(&key, &req, UINT64_MAX, v), 0);
        sign(&req, 0, v);
        ck_assert_int_eq(mesh_auth_verify(&key, &req, UINT64_MAX, v), -ETIME);
        ck_assert_int_eq(mesh_auth_verify(&key, &req, 30, v), 0);
}
END_TEST

START_TEST(test_garbage) {
        struct iovec iov[2];
        MeshAuthRequest req = request(iov);
        char v[MESH_AUTH_VALUE_MAX], w[MESH_AUTH_VALUE_MAX + 16];
        static const char *const bad[] = {
                "",
                "v1",
                "v1 ",
                "garbage",
                "Bearer abc",
                "v2 1700000000 deadbeef01234567 00",
                "v1 -1700000000 deadbeef01234567 0000000000000000000000000000000000000000000000000000000000000000",
                "v1 +1700000000 deadbeef01234567 0000000000000000000000000000000000000000000000000000000000000000",
                "v1 01700000000 deadbeef01234567 0000000000000000000000000000000000000000000000000000000000000000",
                "v1 1700000000 deadbeef0123456 0000000000000000000000000000000000000000000000000000000000000000",
                "v1 1700000000 DEADBEEF01234567 0000000000000000000000000000000000000000000000000000000000000000",
                "v1 1700000000 deadbeef01234567  0000000000000000000000000000000000000000000000000000000000000000",
                "v1  1700000000 deadbeef01234567 0000000000000000000000000000000000000000000000000000000000000000",
                "v1 1700000000 deadbeef01234567 0000000000000000000000000000000000000000000000000000000000000000 ",
                "v1 1700000000 deadbeef01234567 000000000000000000000000000000000000000000000000000000000000000g",
                "v1 99999999999999999999999 deadbeef01234567 0000000000000000000000000000000000000000000000000000000000000000",
                "v1 18446744073709551616 deadbeef01234567 0000000000000000000000000000000000000000000000000000000000000000",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(mesh_auth_verify(&key, &req, NOW, bad[i]) == -EBADMSG, "accepted '%s'", bad[i]);
        ck_assert_int_eq(mesh_auth_verify(&key, &req, NOW, NULL), -ENOKEY);

        /* Truncated at every length. */
        sign(&req, NOW, v);
        for (size_t n = 0; n < strlen(v); n++) {
                snprintf(w, sizeof(w), "%.*s", (int) n, v);
                ck_assert_msg(mesh_auth_verify(&key, &req, NOW, w) == -EBADMSG, "accepted truncated '%s'", w);
        }
        /* Too long. */
        snprintf(w, sizeof(w), "%s00", v);
        ck_assert_int_eq(mesh_auth_verify(&key, &req, NOW, w), -EBADMSG);
        memset(w, 'a', sizeof(w) - 1);
        w[sizeof(w) - 1] = '\0';
        ck_assert_int_eq(mesh_auth_verify(&key, &req, NOW, w), -EBADMSG);
}
END_TEST

START_TEST(test_bad_arguments) {
        struct iovec iov[2];
        MeshAuthRequest req = request(iov), t;
        char v[MESH_AUTH_VALUE_MAX];

        ck_assert_int_eq(mesh_auth_sign(&key, &req, NOW, nonce, v, 40), -ENOBUFS);
        t = req;
        t.method = "";
        ck_assert_int_eq(mesh_auth_sign(&key, &t, NOW, nonce, v, sizeof(v)), -EINVAL);
        t = req;
        t.node_id = NULL;
        ck_assert_int_eq(mesh_auth_sign(&key, &t, NOW, nonce, v, sizeof(v)), -EINVAL);
        ck_assert_int_eq(mesh_auth_verify(&key, &t, NOW, "v1"), -EINVAL);
}
END_TEST

START_TEST(test_header_names) {
        ck_assert(mesh_header_is_ours("X-Mycelia-Auth"));
        ck_assert(mesh_header_is_ours("x-mycelia-hop"));
        ck_assert(mesh_header_is_ours("X-MYCELIA-Anything"));
        ck_assert(!mesh_header_is_ours("X-Mycelia"));
        ck_assert(!mesh_header_is_ours("X-Forwarded-For"));
        ck_assert(!mesh_header_is_ours(""));
        ck_assert(!mesh_header_is_ours(NULL));
}
END_TEST

static Suite *mesh_auth_suite(void) {
        Suite *s = suite_create("mesh-auth");
        TCase *tc = tcase_create("core");

        tcase_add_checked_fixture(tc, setup, NULL);
        tcase_add_test(tc, test_valid);
        tcase_add_test(tc, test_wrong_key);
        tcase_add_test(tc, test_tampered);
        tcase_add_test(tc, test_expired_and_future);
        tcase_add_test(tc, test_garbage);
        tcase_add_test(tc, test_bad_arguments);
        tcase_add_test(tc, test_header_names);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(mesh_auth_suite());
}
