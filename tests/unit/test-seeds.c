/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for services/discoveryd/seeds.c: the seed list grammar, its limits, and the
 * formatting of resolved addresses; plus discoveryd's pure TXT and service name helpers. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>

#include "discoveryd-avahi.h"
#include "seeds.h"
#include "unit-test.h"

START_TEST(test_split) {
        char *host = NULL;
        uint16_t port = 0;

        ck_assert_int_eq(seed_split("10.0.0.1:11436", &host, &port), 0);
        ck_assert_str_eq(host, "10.0.0.1");
        ck_assert_uint_eq(port, 11436);
        free(host);

        ck_assert_int_eq(seed_split("[fd00::1]:7", &host, &port), 0);
        ck_assert_str_eq(host, "fd00::1");
        ck_assert_uint_eq(port, 7);
        free(host);

        ck_assert_int_eq(seed_split("[fe80::1%eth0]:65535", &host, &port), 0);
        ck_assert_str_eq(host, "fe80::1%eth0");
        ck_assert_uint_eq(port, 65535);
        free(host);

        ck_assert_int_eq(seed_split("node-3.lan:11436", NULL, &port), 0);
        ck_assert_uint_eq(port, 11436);

        const char *bad[] = {
                "", "host", "host:", ":11436", "host:0", "host:65536", "host:12a", "host:-1",
                "fd00::1:11436",        /* bare IPv6 */
                "[fd00::1]11436", "[fd00::1]:", "[]:1", "[1.2.3.4]:1", "[fd00::1%]:1", "[fd00::g]:1",
                "ho st:1", "host:1 ", "a/b:1", "[fd00::1", "host:123456",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                ck_assert_msg(seed_split(bad[i], NULL, NULL) == -EINVAL, "accepted '%s'", bad[i]);

        /* 253 characters of host is the most. */
        char longest[300];
        memset(longest, 'a', 253);
        snprintf(longest + 253, sizeof(longest) - 253, ":1");
        ck_assert_int_eq(seed_split(longest, NULL, NULL), 0);
        memset(longest, 'a', 254);
        snprintf(longest + 254, sizeof(longest) - 254, ":1");
        ck_assert_int_eq(seed_split(longest, NULL, NULL), -EINVAL);
}
END_TEST

START_TEST(test_parse_list) {
        Seed *s = NULL;
        size_t n = 0, bad = 99;

        ck_assert_int_eq(seeds_parse(" 10.0.0.1:11436 ,, [fd00::2]:11436,node.lan:1,10.0.0.1:11436, ", &s, &n, &bad),
                         0);
        ck_assert_uint_eq(n, 3);
        ck_assert_str_eq(s[0].spec, "10.0.0.1:11436");
        ck_assert(s[0].numeric);
        ck_assert_str_eq(s[1].spec, "[fd00::2]:11436");
        ck_assert_str_eq(s[1].host, "fd00::2");
        ck_assert(s[1].numeric);
        ck_assert_str_eq(s[2].host, "node.lan");
        ck_assert(!s[2].numeric);
        seeds_free(s, n);

        ck_assert_int_eq(seeds_parse("", &s, &n, NULL), 0);
        ck_assert_uint_eq(n, 0);
        seeds_free(s, n);
        ck_assert_int_eq(seeds_parse(NULL, &s, &n, NULL), 0);
        ck_assert_uint_eq(n, 0);
        seeds_free(s, n);

        ck_assert_int_eq(seeds_parse("a:1,b:2,c", &s, &n, &bad), -EINVAL);
        ck_assert_uint_eq(bad, 2);
        ck_assert_int_eq(seeds_parse("[fe80::1%eth0]:5", &s, &n, NULL), 0);
        ck_assert(s[0].numeric);
        seeds_free(s, n);
}
END_TEST

START_TEST(test_parse_limits) {
        char list[SEEDS_MAX * 24 + 64] = "";
        Seed *s = NULL;
        size_t n = 0;

        for (unsigned i = 0; i < SEEDS_MAX; i++)
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "10.0.%u.%u:1,", i / 256, i % 256);
        ck_assert_int_eq(seeds_parse(list, &s, &n, NULL), 0);
        ck_assert_uint_eq(n, SEEDS_MAX);
        seeds_free(s, n);
        strcat(list, "10.9.9.9:1");
        ck_assert_int_eq(seeds_parse(list, &s, &n, NULL), -E2BIG);

        /* An entry longer than any valid seed is refused, not cut. */
        char *huge = malloc(100000);
        memset(huge, 'a', 99990);
        strcpy(huge + 99990, ":1");
        ck_assert_int_eq(seeds_parse(huge, &s, &n, NULL), -EINVAL);
        free(huge);
}
END_TEST

START_TEST(test_format) {
        struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(11436) };
        struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_port = htons(5) };
        char buf[SEED_ADDR_STRING_MAX];

        inet_pton(AF_INET, "192.0.2.7", &in.sin_addr);
        ck_assert_int_eq(seed_format_sockaddr((struct sockaddr *) &in, sizeof(in), buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "192.0.2.7:11436");

        inet_pton(AF_INET6, "2001:db8::1", &in6.sin6_addr);
        ck_assert_int_eq(seed_format_sockaddr((struct sockaddr *) &in6, sizeof(in6), buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "[2001:db8::1]:5");

        inet_pton(AF_INET6, "::ffff:10.1.2.3", &in6.sin6_addr);
        ck_assert_int_eq(seed_format_sockaddr((struct sockaddr *) &in6, sizeof(in6), buf, sizeof(buf)), 0);
        ck_assert_str_eq(buf, "10.1.2.3:5");

        inet_pton(AF_INET6, "fe80::1", &in6.sin6_addr);
        ck_assert_int_eq(seed_format_sockaddr((struct sockaddr *) &in6, sizeof(in6), buf, sizeof(buf)),
                         -EADDRNOTAVAIL);

        ck_assert_int_eq(seed_format_sockaddr((struct sockaddr *) &in, sizeof(in), buf, 5), -ENOBUFS);
        ck_assert_int_eq(seed_format_sockaddr((struct sockaddr *) &in, 2, buf, sizeof(buf)), -EAFNOSUPPORT);
}
END_TEST

START_TEST(test_txt_check) {
        const char *id = "0123456789abcdef0123456789ABCDEF";
        unsigned v = 0;
        uint16_t g = 0;

        ck_assert_int_eq(discovery_txt_check(id, "1", "11436", &v, &g), 0);
        ck_assert_uint_eq(v, 1);
        ck_assert_uint_eq(g, 11436);
        ck_assert_int_eq(discovery_txt_check(id, "2", "1", &v, &g), 0);
        ck_assert_uint_eq(v, 2);

        ck_assert_int_eq(discovery_txt_check(NULL, "1", "1", &v, &g), -EINVAL);
        ck_assert_int_eq(discovery_txt_check("0123", "1", "1", &v, &g), -EINVAL);
        ck_assert_int_eq(discovery_txt_check("0123456789abcdef0123456789abcdeg", "1", "1", &v, &g), -EINVAL);
        ck_assert_int_eq(discovery_txt_check(id, NULL, "1", &v, &g), -EINVAL);
        ck_assert_int_eq(discovery_txt_check(id, "x", "1", &v, &g), -EINVAL);
        ck_assert_int_eq(discovery_txt_check(id, "1", "0", &v, &g), -EINVAL);
        ck_assert_int_eq(discovery_txt_check(id, "1", "65536", &v, &g), -EINVAL);
        ck_assert_int_eq(discovery_txt_check(id, "1", "", &v, &g), -EINVAL);
        ck_assert_int_eq(discovery_txt_check(id, "99999999999", "1", &v, &g), -EINVAL);
}
END_TEST

START_TEST(test_name_truncate) {
        char *s;

        s = discovery_service_name_truncate("node1", 63);
        ck_assert_str_eq(s, "node1");
        free(s);
        s = discovery_service_name_truncate("abcdef", 3);
        ck_assert_str_eq(s, "abc");
        free(s);
        /* "é" is two bytes: never cut in the middle. */
        s = discovery_service_name_truncate("ab\xc3\xa9", 3);
        ck_assert_str_eq(s, "ab");
        free(s);
        s = discovery_service_name_truncate(NULL, 3);
        ck_assert_str_eq(s, "");
        free(s);
}
END_TEST

static Suite *seeds_suite(void) {
        Suite *s = suite_create("seeds");
        TCase *tc = tcase_create("seeds");

        tcase_add_test(tc, test_split);
        tcase_add_test(tc, test_parse_list);
        tcase_add_test(tc, test_parse_limits);
        tcase_add_test(tc, test_format);
        tcase_add_test(tc, test_txt_check);
        tcase_add_test(tc, test_name_truncate);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(seeds_suite());
}
