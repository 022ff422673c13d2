/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for common/mesh-tls.c: the derivation (a key and a label per purpose), and real
 * TLS 1.3 handshakes on loopback through bufferevent_openssl: the same key talks, another key
 * or another purpose is refused at the handshake and counted on both sides. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <sodium.h>
#include <string.h>

#include "mesh-tls.h"
#include "unit-test.h"

START_TEST(test_derive) {
        uint8_t key[MESH_KEY_SIZE], other[MESH_KEY_SIZE], psk1[MESH_TLS_PSK_SIZE], psk2[MESH_TLS_PSK_SIZE],
                psk3[MESH_TLS_PSK_SIZE];
        char id1[MESH_TLS_IDENTITY_MAX], id2[MESH_TLS_IDENTITY_MAX], id3[MESH_TLS_IDENTITY_MAX];

        memset(key, 7, sizeof(key));
        memset(other, 8, sizeof(other));
        ck_assert_int_eq(mesh_tls_derive(key, MESH_TLS_API, psk1, id1), 0);
        ck_assert_int_eq(mesh_tls_derive(key, MESH_TLS_SHARD, psk2, id2), 0);
        ck_assert_int_eq(mesh_tls_derive(other, MESH_TLS_API, psk3, id3), 0);
        /* A key per purpose; the key id is the key's, whatever the purpose. */
        ck_assert(memcmp(psk1, psk2, sizeof(psk1)) != 0);
        ck_assert(memcmp(psk1, psk3, sizeof(psk1)) != 0);
        ck_assert(strncmp(id1, "mycelia-tls-api-v1 ", 19) == 0);
        ck_assert(strncmp(id2, "mycelia-tls-shard-v1 ", 21) == 0);
        ck_assert_str_eq(strchr(id1, ' '), strchr(id2, ' '));
        ck_assert_str_ne(strchr(id1, ' '), strchr(id3, ' '));
        ck_assert_uint_eq(strlen(strchr(id1, ' ') + 1), 16);
        /* Deterministic, and not the key itself. */
        ck_assert_int_eq(mesh_tls_derive(key, MESH_TLS_API, psk2, id2), 0);
        ck_assert(memcmp(psk1, psk2, sizeof(psk1)) == 0);
        ck_assert(memcmp(psk1, key, sizeof(key)) != 0);
        ck_assert_int_eq(mesh_tls_derive(key, _MESH_TLS_PURPOSE_MAX, psk1, id1), -EINVAL);
}
END_TEST

/* One exchange: a client sends "ping" over a fresh connection to a listener that answers
 * "pong" and closes. */
typedef struct Exchange {
        struct event_base *base;
        MeshTls *server_tls;
        struct bufferevent *server;
        struct bufferevent *client;
        char got[16];
        bool client_connected;
        bool client_failed;
        bool server_failed;
} Exchange;

static void server_read_cb(struct bufferevent *bev, void *userdata) {
        char buf[16] = "";

        if (evbuffer_get_length(bufferevent_get_input(bev)) < 4)
                return;
        bufferevent_read(bev, buf, 4);
        if (memcmp(buf, "ping", 4) == 0)
                bufferevent_write(bev, "pong", 4);
}

static void server_event_cb(struct bufferevent *bev, short what, void *userdata) {
        Exchange *x = userdata;

        if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
                if (what & BEV_EVENT_ERROR)
                        x->server_failed = true;
                bufferevent_free(bev);
                x->server = NULL;
        }
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *userdata) {
        Exchange *x = userdata;

        x->server = mesh_tls_bev_accepting(x->server_tls, x->base);
        ck_assert_ptr_nonnull(x->server);
        ck_assert_int_eq(bufferevent_setfd(x->server, fd), 0);
        bufferevent_setcb(x->server, server_read_cb, NULL, server_event_cb, x);
        bufferevent_enable(x->server, EV_READ | EV_WRITE);
}

static void client_read_cb(struct bufferevent *bev, void *userdata) {
        Exchange *x = userdata;
        size_t n = evbuffer_get_length(bufferevent_get_input(bev));

        if (n < 4)
                return;
        bufferevent_read(bev, x->got, 4);
        event_base_loopbreak(x->base);
}

static void client_event_cb(struct bufferevent *bev, short what, void *userdata) {
        Exchange *x = userdata;

        if (what & BEV_EVENT_CONNECTED)
                x->client_connected = true;
        if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
                x->client_failed = true;
                event_base_loopbreak(x->base);
        }
}

static void timeout_cb(evutil_socket_t fd, short what, void *userdata) {
        event_base_loopbreak(userdata);
}

/* Runs one exchange between server_tls's listener and client_tls; the counters tell the rest. */
static void exchange(MeshTls *server_tls, MeshTls *client_tls, Exchange *x) {
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sin);
        struct evconnlistener *l;
        struct timeval five = { .tv_sec = 5 };
        struct event *timeout;

        *x = (Exchange) { .base = event_base_new(), .server_tls = server_tls };
        ck_assert_ptr_nonnull(x->base);
        l = evconnlistener_new_bind(x->base, accept_cb, x, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
                                    (struct sockaddr *) &sin, sizeof(sin));
        ck_assert_ptr_nonnull(l);
        ck_assert_int_eq(getsockname(evconnlistener_get_fd(l), (struct sockaddr *) &sin, &len), 0);

        /* As the shim connects to a peer: bufferevent_socket_connect() on the TLS bufferevent,
         * the request written before the handshake is over. */
        x->client = mesh_tls_bev_connecting(client_tls, x->base);
        ck_assert_ptr_nonnull(x->client);
        bufferevent_setcb(x->client, client_read_cb, NULL, client_event_cb, x);
        bufferevent_enable(x->client, EV_READ | EV_WRITE);
        ck_assert_int_eq(bufferevent_socket_connect(x->client, (struct sockaddr *) &sin, (int) len), 0);
        bufferevent_write(x->client, "ping", 4);

        timeout = evtimer_new(x->base, timeout_cb, x->base);
        evtimer_add(timeout, &five);
        event_base_dispatch(x->base);
        /* Let the server side see the end too. */
        bufferevent_free(x->client);
        evtimer_add(timeout, &(struct timeval) { .tv_usec = 100000 });
        event_base_dispatch(x->base);
        if (x->server)
                bufferevent_free(x->server);
        event_free(timeout);
        evconnlistener_free(l);
        event_base_free(x->base);
}

START_TEST(test_handshake) {
        MeshKeyring key = { .n = 1 }, other = { .n = 1 };
        MeshTls *server = NULL, *client = NULL, *stranger = NULL, *shard = NULL;
        Exchange x;

        randombytes_buf(key.keys[0], MESH_KEY_SIZE);
        randombytes_buf(other.keys[0], MESH_KEY_SIZE);
        ck_assert_int_eq(mesh_tls_new(&key, MESH_TLS_API, &server), 0);
        ck_assert_int_eq(mesh_tls_new(&key, MESH_TLS_API, &client), 0);
        ck_assert_int_eq(mesh_tls_new(&other, MESH_TLS_API, &stranger), 0);
        ck_assert_int_eq(mesh_tls_new(&key, MESH_TLS_SHARD, &shard), 0);

        /* Same key, same purpose: the bytes go through. */
        exchange(server, client, &x);
        ck_assert(x.client_connected);
        ck_assert_str_eq(x.got, "pong");
        ck_assert_uint_eq(mesh_tls_counters(server)->accepted, 1);
        ck_assert_uint_eq(mesh_tls_counters(client)->connected, 1);
        ck_assert_uint_eq(mesh_tls_counters(server)->refused, 0);

        /* Another key: refused at the handshake, nothing delivered, counted on both sides. */
        exchange(server, stranger, &x);
        ck_assert(!x.client_connected);
        ck_assert(x.client_failed);
        ck_assert_str_eq(x.got, "");
        ck_assert_uint_eq(mesh_tls_counters(server)->refused, 1);
        ck_assert_uint_eq(mesh_tls_counters(server)->accepted, 1);
        ck_assert_uint_eq(mesh_tls_counters(stranger)->failed, 1);

        /* The right key for another purpose: refused too. */
        exchange(server, shard, &x);
        ck_assert(!x.client_connected);
        ck_assert_str_eq(x.got, "");
        ck_assert_uint_eq(mesh_tls_counters(server)->refused, 2);

        /* A keyring on the server (the stranger's key installed, ours still primary): both are
         * accepted; the stranger, made primary on the client, talks too. This is a rotation. */
        {
                MeshKeyring both = { .n = 2 };

                memcpy(both.keys[0], key.keys[0], MESH_KEY_SIZE);
                memcpy(both.keys[1], other.keys[0], MESH_KEY_SIZE);
                ck_assert_int_eq(mesh_tls_set_keys(server, &both), 0);
                exchange(server, client, &x);
                ck_assert_str_eq(x.got, "pong");
                exchange(server, stranger, &x);
                ck_assert_str_eq(x.got, "pong");
                /* The old key removed: the client still on it is refused. */
                ck_assert_int_eq(mesh_tls_set_keys(server, &other), 0);
                exchange(server, client, &x);
                ck_assert_str_eq(x.got, "");
                exchange(server, stranger, &x);
                ck_assert_str_eq(x.got, "pong");
                ck_assert_int_eq(mesh_tls_set_keys(server, &(MeshKeyring) {}), -EINVAL);
        }

        mesh_tls_free(server);
        mesh_tls_free(client);
        mesh_tls_free(stranger);
        mesh_tls_free(shard);
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("mesh-tls");
        TCase *tc = tcase_create("core");

        tcase_add_test(tc, test_derive);
        tcase_add_test(tc, test_handshake);
        tcase_set_timeout(tc, 30);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        if (sodium_init() < 0)
                return 1;
        return unit_test_run(suite());
}
