/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for mycelia-node's sd_notify parser (services/node/node-notify.c): the fields
 * it acts on, and that hostile datagrams are bounded and never crash it. */
#include <stdio.h>

#include "node-notify.h"
#include "unit-test.h"

static int parse(const char *s, NotifyMessage *m) {
        return notify_message_parse(s, strlen(s), m);
}

START_TEST(test_ready_with_api) {
        NotifyMessage m;

        ck_assert_int_eq(parse("READY=1\nSTATUS=Serving on 127.0.0.1:11434\nX_MYCELIA_API=127.0.0.1:11434", &m), 0);
        ck_assert(m.ready);
        ck_assert(!m.watchdog);
        ck_assert(!m.stopping);
        ck_assert(m.has_status);
        ck_assert_str_eq(m.status, "Serving on 127.0.0.1:11434");
        ck_assert(m.has_api);
        ck_assert_str_eq(m.api, "127.0.0.1:11434");
        ck_assert(!m.has_mesh);
        ck_assert_uint_eq(m.n_ignored, 0);
}
END_TEST

START_TEST(test_all_fields) {
        NotifyMessage m;

        ck_assert_int_eq(parse("WATCHDOG=1\nSTOPPING=1\nX_MYCELIA_MESH=[::1]:11436\nX_MYCELIA_API=[fe80::1%eth0]:80\n", &m), 0);
        ck_assert(!m.ready);
        ck_assert(m.watchdog);
        ck_assert(m.stopping);
        ck_assert(m.has_mesh);
        ck_assert_str_eq(m.mesh, "[::1]:11436");
        ck_assert(m.has_api);
        ck_assert_str_eq(m.api, "[fe80::1%eth0]:80");
        ck_assert(!m.has_status);
}
END_TEST

START_TEST(test_values_must_match) {
        NotifyMessage m;

        /* Only "1" counts, as in systemd. */
        ck_assert_int_eq(parse("READY=0\nWATCHDOG=yes\nSTOPPING=\nREADY=11", &m), 0);
        ck_assert(!m.ready);
        ck_assert(!m.watchdog);
        ck_assert(!m.stopping);
        ck_assert_uint_eq(m.n_ignored, 4);
}
END_TEST

START_TEST(test_unknown_and_malformed_lines) {
        NotifyMessage m;

        ck_assert_int_eq(parse("MAINPID=42\n\n\ngarbage\nERRNO=2\n=1\nREADY=1\n", &m), 0);
        ck_assert(m.ready);
        ck_assert_uint_eq(m.n_ignored, 4);
}
END_TEST

START_TEST(test_empty) {
        NotifyMessage m;

        ck_assert_int_eq(notify_message_parse("", 0, &m), 0);
        ck_assert(!m.ready);
        ck_assert_uint_eq(m.n_ignored, 0);
}
END_TEST

START_TEST(test_not_nul_terminated) {
        NotifyMessage m;
        const char buf[] = { 'R', 'E', 'A', 'D', 'Y', '=', '1', 'X' };

        /* Only len bytes are read: "READY=1" without the trailing X. */
        ck_assert_int_eq(notify_message_parse(buf, 7, &m), 0);
        ck_assert(m.ready);
        ck_assert_int_eq(notify_message_parse(buf, 8, &m), 0);
        ck_assert(!m.ready);
}
END_TEST

START_TEST(test_rejects_nul_and_oversize) {
        NotifyMessage m = { .ready = true, .n_ignored = 77 };
        static char big[NOTIFY_MESSAGE_MAX + 2];

        ck_assert_int_eq(notify_message_parse("READY=1\0X", 9, &m), -EBADMSG);
        memset(big, 'A', sizeof(big));
        ck_assert_int_eq(notify_message_parse(big, NOTIFY_MESSAGE_MAX + 1, &m), -EMSGSIZE);
        /* Untouched on failure. */
        ck_assert(m.ready);
        ck_assert_uint_eq(m.n_ignored, 77);
        /* Exactly the limit is fine. */
        memcpy(big, "READY=1\n", 8);
        ck_assert_int_eq(notify_message_parse(big, NOTIFY_MESSAGE_MAX, &m), 0);
        ck_assert(m.ready);
}
END_TEST

START_TEST(test_status_bounded_and_sanitized) {
        char msg[NOTIFY_MESSAGE_MAX];
        NotifyMessage m;

        snprintf(msg, sizeof(msg), "STATUS=%0*d", 1000, 0);
        ck_assert_int_eq(parse(msg, &m), 0);
        ck_assert_uint_eq(strlen(m.status), NOTIFY_STATUS_MAX - 1);

        ck_assert_int_eq(parse("STATUS=a\tb\rc\x1b[31m\x7f", &m), 0);
        ck_assert_str_eq(m.status, "a?b?c?[31m?");
        ck_assert_int_eq(parse("STATUS=caf\xc3\xa9", &m), 0);
        ck_assert_str_eq(m.status, "caf\xc3\xa9");
        /* The last one wins. */
        ck_assert_int_eq(parse("STATUS=one\nSTATUS=two", &m), 0);
        ck_assert_str_eq(m.status, "two");
}
END_TEST

START_TEST(test_bad_addresses_ignored) {
        const char *bad[] = {
                "X_MYCELIA_API=",
                "X_MYCELIA_API=127.0.0.1",
                "X_MYCELIA_API=127.0.0.1:",
                "X_MYCELIA_API=127.0.0.1:0",
                "X_MYCELIA_API=127.0.0.1:65536",
                "X_MYCELIA_API=127.0.0.1:123456",
                "X_MYCELIA_API=127.0.0.1:80x",
                "X_MYCELIA_API=:80",
                "X_MYCELIA_API=[]:80",
                "X_MYCELIA_API=[::1:80",
                "X_MYCELIA_API=[::1]80",
                "X_MYCELIA_API=host name:80",
                "X_MYCELIA_API=a/b:80",
                "X_MYCELIA_API=<script>:80",
                "X_MYCELIA_API=127.0.0.1:80\r",
                "X_MYCELIA_MESH=nope",
        };
        char longaddr[NOTIFY_ADDRESS_MAX + 32];
        NotifyMessage m;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                ck_assert_int_eq(parse(bad[i], &m), 0);
                ck_assert_msg(!m.has_api && !m.has_mesh, "accepted %s", bad[i]);
                ck_assert_uint_eq(m.n_ignored, 1);
        }

        memset(longaddr, 'a', sizeof(longaddr));
        memcpy(longaddr, "X_MYCELIA_API=", 14);
        strcpy(longaddr + sizeof(longaddr) - 4, ":80");
        ck_assert_int_eq(parse(longaddr, &m), 0);
        ck_assert(!m.has_api);
}
END_TEST

START_TEST(test_address_valid) {
        ck_assert(notify_address_valid("127.0.0.1:11434"));
        ck_assert(notify_address_valid("localhost:1"));
        ck_assert(notify_address_valid("0.0.0.0:65535"));
        ck_assert(notify_address_valid("[::]:11434"));
        ck_assert(notify_address_valid("node-1.local:8080"));
        ck_assert(!notify_address_valid(NULL));
        ck_assert(!notify_address_valid(""));
        ck_assert(!notify_address_valid("::1:80"));
        ck_assert(!notify_address_valid("127.0.0.1:-1"));
}
END_TEST

static Suite *notify_suite(void) {
        Suite *s = suite_create("node-notify");
        TCase *tc = tcase_create("parse");

        tcase_add_test(tc, test_ready_with_api);
        tcase_add_test(tc, test_all_fields);
        tcase_add_test(tc, test_values_must_match);
        tcase_add_test(tc, test_unknown_and_malformed_lines);
        tcase_add_test(tc, test_empty);
        tcase_add_test(tc, test_not_nul_terminated);
        tcase_add_test(tc, test_rejects_nul_and_oversize);
        tcase_add_test(tc, test_status_bounded_and_sanitized);
        tcase_add_test(tc, test_bad_addresses_ignored);
        tcase_add_test(tc, test_address_valid);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(notify_suite());
}
