/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/routerd/routerd-upstream.c against an in-process evhttp server on
 * 127.0.0.1: what is sent, and up/down for each way a fetch can fail. */
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>

#include "routerd-upstream.h"
#include "unit-test.h"

typedef struct FakeOllama {
        int status;             /* 0: never answer */
        const char *body;
        unsigned n_requests;
        char host[128];
        char path[128];
} FakeOllama;

typedef struct Result {
        unsigned n_calls;
        unsigned n_wanted;
        int error;
        bool state_changed;
        size_t n_models;
        char first_model[64];
        usec_t when;
} Result;

static struct event_base *base;
static struct evhttp *http;
static FakeOllama fake;
static Result res;
static uint16_t port;

static void fake_cb(struct evhttp_request *req, void *userdata) {
        const char *host = evhttp_find_header(evhttp_request_get_input_headers(req), "Host");
        struct evbuffer *b;

        fake.n_requests++;
        snprintf(fake.host, sizeof(fake.host), "%s", host ?: "");
        snprintf(fake.path, sizeof(fake.path), "%s", evhttp_request_get_uri(req));
        if (fake.status == 0)
                return; /* stall; evhttp frees it with the connection */
        b = evbuffer_new();
        evbuffer_add(b, fake.body, strlen(fake.body));
        evhttp_send_reply(req, fake.status, "X", b);
        evbuffer_free(b);
}

static void setup(void) {
        struct evhttp_bound_socket *s;
        struct sockaddr_in sa;
        socklen_t len = sizeof(sa);

        base = event_base_new();
        ck_assert_ptr_nonnull(base);
        http = evhttp_new(base);
        s = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
        ck_assert_ptr_nonnull(s);
        ck_assert_int_eq(getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *) &sa, &len), 0);
        port = ntohs(sa.sin_port);
        evhttp_set_gencb(http, fake_cb, NULL);
        fake = (FakeOllama) { .status = 200, .body = "{\"models\":[{\"name\":\"llama3.2:latest\"}]}" };
        res = (Result) {};
}

static void teardown(void) {
        evhttp_free(http);
        event_base_free(base);
}

static void poller_cb(UpstreamPoller *p, int error, const char *reason, const TagsList *tags, bool state_changed,
                      void *userdata) {
        res.n_calls++;
        res.error = error;
        res.state_changed = state_changed;
        res.n_models = tags ? tags->n_models : 0;
        snprintf(res.first_model, sizeof(res.first_model), "%s", tags && tags->n_models > 0 ? tags->models[0] : "");
        res.when = now_usec();
        ck_assert(error == 0 || !isempty(reason));
        if (res.n_calls >= res.n_wanted)
                event_base_loopbreak(base);
}

/* Runs the loop until n more poller callbacks came, or 5 s passed. */
static void run_until(unsigned n) {
        struct timeval tv = { .tv_sec = 5 };

        res.n_wanted = res.n_calls + n;
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
        ck_assert_uint_eq(res.n_calls, res.n_wanted);
}

static UpstreamPoller *poller_new(const char *path, usec_t tags_interval) {
        UpstreamPoller *p = NULL;
        char url[128];

        snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
        ck_assert_int_eq(upstream_poller_new(base, url, 300 * USEC_PER_MSEC, tags_interval, 50 * USEC_PER_MSEC,
                                             poller_cb, NULL, &p),
                         0);
        ck_assert_int_eq(upstream_poller_start(p), 0);
        return p;
}

START_TEST(test_fetch_ok) {
        UpstreamPoller *p = poller_new("", 10 * USEC_PER_SEC);
        char host[64];

        run_until(1);
        ck_assert_int_eq(res.error, 0);
        ck_assert(res.state_changed);
        ck_assert_uint_eq(res.n_models, 1);
        ck_assert_str_eq(res.first_model, "llama3.2:latest");
        ck_assert_int_eq(upstream_poller_get_health(p)->state, UPSTREAM_UP);
        snprintf(host, sizeof(host), "127.0.0.1:%u", port);
        ck_assert_str_eq(fake.host, host);
        ck_assert_str_eq(fake.path, "/api/tags");
        upstream_poller_free(p);
}
END_TEST

START_TEST(test_prefix) {
        UpstreamPoller *p = poller_new("/ollama/", 10 * USEC_PER_SEC);

        ck_assert_str_eq(upstream_poller_get_path(p), "/ollama/api/tags");
        run_until(1);
        ck_assert_str_eq(fake.path, "/ollama/api/tags");
        upstream_poller_free(p);
}
END_TEST

START_TEST(test_failures_then_recovery) {
        static const struct {
                int status;
                const char *body;
                int error;
        } cases[] = {
                { 500, "{\"error\":\"boom\"}", -EPROTO },
                { 404, "404 page not found", -EPROTO },
                { 200, "<html>not json</html>", -EBADMSG },
                { 200, "{\"models\":[{\"name\":\"x\"}]", -EBADMSG },
                { 0, NULL, -ETIMEDOUT },
        };
        UpstreamPoller *p = poller_new("", 60 * USEC_PER_SEC);

        run_until(1);
        ck_assert_int_eq(res.error, 0);

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                usec_t start;

                fake.status = cases[i].status;
                fake.body = cases[i].body;
                /* Up with a 60 s refresh: a report brings the next fetch forward. */
                upstream_poller_report_failure(p);
                start = now_usec();
                run_until(1);
                ck_assert_msg(res.error == cases[i].error, "case %zu: %d", i, res.error);
                ck_assert(res.state_changed);
                ck_assert_int_eq(upstream_poller_get_health(p)->state, UPSTREAM_DOWN);
                if (cases[i].status == 0) {
                        /* The whole fetch is bounded by the timeout (300 ms). */
                        ck_assert_uint_ge(res.when - start, 250 * USEC_PER_MSEC);
                        ck_assert_uint_le(res.when - start, 1000 * USEC_PER_MSEC);
                }

                /* Still failing: probed every probe_interval (50 ms), no state change. */
                start = now_usec();
                run_until(1);
                ck_assert(!res.state_changed);
                ck_assert_uint_ge(res.when - start, 40 * USEC_PER_MSEC);

                /* Answers again: up at once, with its models. */
                fake.status = 200;
                fake.body = "{\"models\":[{\"name\":\"qwen2.5:7b\"}]}";
                run_until(1);
                ck_assert_int_eq(res.error, 0);
                ck_assert(res.state_changed);
                ck_assert_str_eq(res.first_model, "qwen2.5:7b");
                ck_assert_int_eq(upstream_poller_get_health(p)->state, UPSTREAM_UP);
        }
        upstream_poller_free(p);
}
END_TEST

START_TEST(test_connection_refused) {
        UpstreamPoller *p = NULL;

        /* Port 1 on loopback: nobody listens. */
        ck_assert_int_eq(upstream_poller_new(base, "http://127.0.0.1:1", 300 * USEC_PER_MSEC, USEC_PER_SEC,
                                             50 * USEC_PER_MSEC, poller_cb, NULL, &p),
                         0);
        ck_assert_int_eq(upstream_poller_start(p), 0);
        run_until(2);
        ck_assert_int_lt(res.error, 0);
        ck_assert_int_eq(upstream_poller_get_health(p)->state, UPSTREAM_DOWN);
        ck_assert_uint_eq(upstream_poller_get_health(p)->consecutive_failures, 2);
        upstream_poller_free(p);
}
END_TEST

START_TEST(test_free_while_fetching) {
        UpstreamPoller *p;
        struct timeval tv = { .tv_usec = 100000 };

        fake.status = 0;
        p = poller_new("", USEC_PER_SEC);
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
        ck_assert_uint_eq(fake.n_requests, 1);
        ck_assert_uint_eq(res.n_calls, 0);
        upstream_poller_free(p);
        /* Nothing of the poller may run after it is gone. */
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
        ck_assert_uint_eq(res.n_calls, 0);
}
END_TEST

START_TEST(test_url_parsing) {
        static const char *const bad[] = {
                "", "127.0.0.1:11435", "https://127.0.0.1", "ftp://h/", "http://", "http://h:0",
                "http://h:99999", "http://user@h/", "http://h/?x=1", "http:///api",
        };
        UpstreamPoller *p = NULL;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(upstream_poller_new(base, bad[i], USEC_PER_SEC, USEC_PER_SEC, USEC_PER_SEC, poller_cb,
                                                  NULL, &p) == -EINVAL,
                              "accepted %s", bad[i]);
        ck_assert_ptr_null(p);

        ck_assert_int_eq(upstream_poller_new(base, "http://[::1]:11435", USEC_PER_SEC, USEC_PER_SEC, USEC_PER_SEC,
                                             poller_cb, NULL, &p),
                         0);
        ck_assert_str_eq(upstream_poller_get_host_port(p), "[::1]:11435");
        ck_assert_str_eq(upstream_poller_get_path(p), "/api/tags");
        p = upstream_poller_free(p);

        ck_assert_int_eq(upstream_poller_new(base, "HTTP://localhost", USEC_PER_SEC, USEC_PER_SEC, USEC_PER_SEC,
                                             poller_cb, NULL, &p),
                         0);
        ck_assert_str_eq(upstream_poller_get_host_port(p), "localhost:80");
        p = upstream_poller_free(p);

        /* Zero intervals would spin. */
        ck_assert_int_eq(upstream_poller_new(base, "http://h", 0, USEC_PER_SEC, USEC_PER_SEC, poller_cb, NULL, &p),
                         -EINVAL);
        ck_assert_int_eq(upstream_poller_new(base, "http://h", USEC_PER_SEC, USEC_PER_SEC, 0, poller_cb, NULL, &p),
                         -EINVAL);
}
END_TEST

static Suite *upstream_suite(void) {
        Suite *s = suite_create("routerd-upstream");
        TCase *tc = tcase_create("upstream");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_set_timeout(tc, 20);
        tcase_add_test(tc, test_fetch_ok);
        tcase_add_test(tc, test_prefix);
        tcase_add_test(tc, test_failures_then_recovery);
        tcase_add_test(tc, test_connection_refused);
        tcase_add_test(tc, test_free_while_fetching);
        tcase_add_test(tc, test_url_parsing);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(upstream_suite());
}
