/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for common/mesh-auth.c: the X-Mycelia-Auth authenticator signs and verifies, rejects
 * wrong keys, changed requests, stale or future times and malformed values, and matches its vectors. */
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

/* --- Known-answer vectors ---
 * The expected bytes come from tests/unit/kat-vectors.py, which computes them from
 * docs/mesh-forwarding.md with Python's hashlib and hmac, not from this code. A sender and a
 * receiver of different versions must agree on every byte: when one of these fails, the format
 * changed, and a mixed-version mesh would refuse every forwarded request. */

/* The mesh key 00 01 .. 1f, and another mesh's key 20 21 .. 3f. */
static void kat_keys(MeshAuthKey *ret, MeshAuthKey *ret_other) {
        uint8_t k[32];

        for (size_t i = 0; i < sizeof(k); i++)
                k[i] = (uint8_t) i;
        ck_assert_int_eq(mesh_auth_key_derive(k, sizeof(k), ret), 0);
        for (size_t i = 0; i < sizeof(k); i++)
                k[i] = (uint8_t) (0x20 + i);
        ck_assert_int_eq(mesh_auth_key_derive(k, sizeof(k), ret_other), 0);
}

static void hex_of(const uint8_t *p, size_t n, char *ret) {
        static const char hex[] = "0123456789abcdef";

        for (size_t i = 0; i < n; i++) {
                ret[2 * i] = hex[p[i] >> 4];
                ret[2 * i + 1] = hex[p[i] & 15];
        }
        ret[2 * n] = '\0';
}

/* BLAKE2b-256(key = mesh key, message = "mycelia-http-v1"). */
#define KAT_SUBKEY "fa984b0bb4a0b7282dba310ab2cb594858248bcefcf20b6339c71ee9e8fbe3de"
#define KAT_SUBKEY_OTHER "3bb074f05defc9fbb85ef3c48d15d474786b02b4d191c1bad713f36df02d289f"

/* Signs "v1\n1700000000\ndeadbeef01234567\nPOST\n/api/generate\nfedcba9876543210fedcba9876543210\n"
 * followed by the BLAKE2b-256 of the body in hex (04a05411...9ccd0bf8). */
#define KAT_POST \
        "v1 1700000000 deadbeef01234567 b7a2eddd5135b1f3d55c2e769b90024a10c810dd6db9801eb977165130911d05"
/* No body (BLAKE2b-256 of nothing: 0e5751c0...f12fe3a8), the largest time, a query string. */
#define KAT_GET \
        "v1 18446744073709551615 0001020304050607 9dbc70ce54b171b3ed0e618ce63e23f1d3d61f9f5b06e182474f606244fe15dc"

START_TEST(test_kat_key) {
        MeshAuthKey k, other;
        char h[MESH_AUTH_KEY_SIZE * 2 + 1];

        kat_keys(&k, &other);
        hex_of(k.key, sizeof(k.key), h);
        ck_assert_str_eq(h, KAT_SUBKEY);
        hex_of(other.key, sizeof(other.key), h);
        ck_assert_str_eq(h, KAT_SUBKEY_OTHER);
}
END_TEST

START_TEST(test_kat_sign_verify) {
        static const uint8_t post_nonce[MESH_AUTH_NONCE_SIZE] = { 0xde, 0xad, 0xbe, 0xef, 0x01, 0x23, 0x45, 0x67 };
        static const uint8_t get_nonce[MESH_AUTH_NONCE_SIZE] = { 0, 1, 2, 3, 4, 5, 6, 7 };
        struct iovec iov[2];
        MeshAuthRequest post = request(iov), get = {
                .method = "GET", .uri = "/api/tags?verbose=1", .node_id = NODE_C,
        };
        MeshAuthKey k, other;
        char v[MESH_AUTH_VALUE_MAX];

        kat_keys(&k, &other);

        /* Sign gives exactly these bytes; the body in two pieces hashes as one stream. */
        ck_assert_int_eq(mesh_auth_sign(&k, &post, NOW, post_nonce, v, sizeof(v)), 0);
        ck_assert_str_eq(v, KAT_POST);
        ck_assert_int_eq(mesh_auth_sign(&k, &get, UINT64_MAX, get_nonce, v, sizeof(v)), 0);
        ck_assert_str_eq(v, KAT_GET);

        /* These bytes verify, and only under this mesh key. */
        ck_assert_int_eq(mesh_auth_verify(&k, &post, NOW, KAT_POST), 0);
        ck_assert_int_eq(mesh_auth_verify(&k, &get, UINT64_MAX, KAT_GET), 0);
        ck_assert_int_eq(mesh_auth_verify(&other, &post, NOW, KAT_POST), -EKEYREJECTED);
        ck_assert_int_eq(mesh_auth_verify(&other, &get, UINT64_MAX, KAT_GET), -EKEYREJECTED);
        /* Each vector is bound to its own request. */
        ck_assert_int_eq(mesh_auth_verify(&k, &get, NOW, KAT_POST), -EKEYREJECTED);
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

        /* No fixture: the vectors bring their own keys. */
        tc = tcase_create("known-answer");
        tcase_add_test(tc, test_kat_key);
        tcase_add_test(tc, test_kat_sign_verify);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(mesh_auth_suite());
}
