/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for common/config.c: defaults, the INI file, flags over the file, size and
 * duration parsing, and flags left for the caller. */
#include <stdio.h>
#include <syslog.h>

#include "config.h"
#include "log.h"
#include "unit-test.h"

static MyceliaConfig c;
static char conf_path[64];

static void setup(void) {
        config_init(&c);
        conf_path[0] = '\0';
}

static void teardown(void) {
        config_done(&c);
        if (conf_path[0])
                (void) unlink(conf_path);
        log_set_max_level(LOG_INFO);
}

/* Writes text to a temporary file whose name lands in conf_path. */
static const char *write_conf(const char *text) {
        int fd;

        snprintf(conf_path, sizeof(conf_path), "/tmp/test-config-XXXXXX");
        fd = mkstemp(conf_path);
        ck_assert_int_ge(fd, 0);
        ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        ck_assert_int_eq(close(fd), 0);
        return conf_path;
}

static int load(char **argv, int *unknown, int *n_unknown) {
        int argc = 0;

        while (argv[argc])
                argc++;
        return config_load(&c, argc, argv, unknown, n_unknown);
}

START_TEST(test_defaults) {
        ck_assert_str_eq(c.node_name, "");
        ck_assert_str_eq(c.node_id, "");
        /* Empty: the level then comes from $MYCELIA_LOG_LEVEL, else info. */
        ck_assert_str_eq(c.log_level, "");
        ck_assert_str_eq(c.bus_address, "");
        ck_assert_str_eq(c.api_listen, "127.0.0.1:11434");
        ck_assert_str_eq(c.mesh_listen, "");
        ck_assert_uint_eq(c.max_body_size, 100ULL << 20);
        ck_assert_uint_eq(c.max_header_size, 64ULL << 10);
        ck_assert_uint_eq(c.max_requests, 512);
        ck_assert_uint_eq(c.max_connections, 4096);
        ck_assert_uint_eq(c.max_stream_buffer, 1ULL << 20);
        ck_assert_uint_eq(c.idle_timeout, 60 * USEC_PER_SEC);
        ck_assert_uint_eq(c.connect_timeout, 5 * USEC_PER_SEC);
        ck_assert_uint_eq(c.upstream_timeout, 300 * USEC_PER_SEC);
        ck_assert_str_eq(c.upstream_url, "http://127.0.0.1:11435");
        ck_assert_str_eq(c.route_policy, "gravity");
        ck_assert_str_eq(c.gravity_eps, "0.25");
        ck_assert_uint_eq(c.tags_interval, 10 * USEC_PER_SEC);
        ck_assert_uint_eq(c.probe_interval, 1 * USEC_PER_SEC);
        ck_assert_ptr_nonnull(strstr(c.state_dir, "lib/mycelia"));
}
END_TEST

START_TEST(test_file_overrides_defaults) {
        const char *path = write_conf(
                "# comment\n"
                "; another\n"
                "[node]\n"
                "name = alpha\n"
                "id = 0123456789abcdef0123456789abcdef\n"
                "[shim]\n"
                "max_body_size = 1G\n"
                "max_requests = 64\n"
                "idle_timeout = 250ms\n"
                "[upstream]\n"
                "url = http://127.0.0.1:9999\n"
                "[router]\n"
                "policy = least-loaded\n"
                "tags_interval = 2m\n"
                "unknown_key = tolerated\n"
                "[unknown-section]\n"
                "x = y\n");
        char *argv[] = { (char *) "prog", (char *) "--config", (char *) path, NULL };
        int unknown[4], n_unknown = -1;

        ck_assert_int_eq(load(argv, unknown, &n_unknown), 0);
        ck_assert_int_eq(n_unknown, 0);
        ck_assert_str_eq(c.node_name, "alpha");
        ck_assert_str_eq(c.node_id, "0123456789abcdef0123456789abcdef");
        ck_assert_uint_eq(c.max_body_size, 1ULL << 30);
        ck_assert_uint_eq(c.max_requests, 64);
        ck_assert_uint_eq(c.idle_timeout, 250 * USEC_PER_MSEC);
        ck_assert_str_eq(c.upstream_url, "http://127.0.0.1:9999");
        ck_assert_str_eq(c.route_policy, "least-loaded");
        ck_assert_uint_eq(c.tags_interval, 120 * USEC_PER_SEC);
        /* Untouched keys keep their defaults. */
        ck_assert_uint_eq(c.probe_interval, 1 * USEC_PER_SEC);
        ck_assert_str_eq(c.api_listen, "127.0.0.1:11434");
}
END_TEST

START_TEST(test_flags_override_file) {
        const char *path = write_conf("[router]\npolicy = least-loaded\ntags_interval = 2m\n"
                                      "[upstream]\nurl = http://file\n");
        /* Flags before and after --config, both --flag VALUE and --flag=VALUE. */
        char *argv[] = { (char *) "prog", (char *) "--policy", (char *) "round-robin", (char *) "--config",
                         (char *) path, (char *) "--tags-interval=30s", (char *) "--probe-interval",
                         (char *) "500ms", (char *) "--name=beta", NULL };
        int unknown[16], n_unknown = -1;

        ck_assert_int_eq(load(argv, unknown, &n_unknown), 0);
        ck_assert_int_eq(n_unknown, 0);
        ck_assert_str_eq(c.route_policy, "round-robin");
        ck_assert_uint_eq(c.tags_interval, 30 * USEC_PER_SEC);
        ck_assert_uint_eq(c.probe_interval, 500 * USEC_PER_MSEC);
        ck_assert_str_eq(c.node_name, "beta");
        ck_assert_str_eq(c.upstream_url, "http://file");
}
END_TEST

START_TEST(test_unknown_flags_returned) {
        const char *path = write_conf("");
        char *argv[] = { (char *) "prog", (char *) "--config", (char *) path, (char *) "--libexec-dir",
                         (char *) "/x", (char *) "--upstream", (char *) "http://u", (char *) "positional",
                         (char *) "-v", (char *) "--version", NULL };
        int unknown[16], n_unknown = -1;

        ck_assert_int_eq(load(argv, unknown, &n_unknown), 0);
        ck_assert_str_eq(c.upstream_url, "http://u");
        /* The unknown flag, its value (we cannot know it takes one), and the rest. */
        ck_assert_int_eq(n_unknown, 5);
        ck_assert_int_eq(unknown[0], 3);
        ck_assert_int_eq(unknown[1], 4);
        ck_assert_int_eq(unknown[2], 7);
        ck_assert_int_eq(unknown[3], 8);
        ck_assert_int_eq(unknown[4], 9);

        /* NULL outputs are allowed. */
        ck_assert_int_eq(load(argv, NULL, NULL), 0);
}
END_TEST

START_TEST(test_help) {
        char *argv[] = { (char *) "prog", (char *) "--api", (char *) "x", (char *) "--help", NULL };
        char *argv2[] = { (char *) "prog", (char *) "-h", NULL };

        ck_assert_int_eq(load(argv, NULL, NULL), 1);
        ck_assert_int_eq(load(argv2, NULL, NULL), 1);
}
END_TEST

START_TEST(test_bad_values_rejected) {
        static const char *const bad[][2] = {
                { "--tags-interval", "5x" },
                { "--tags-interval", "" },
                { "--tags-interval", "-5s" },
                { "--tags-interval", "1.5s" },
                { "--probe-interval", "s" },
                { "--max-body-size", "-1" },
                { "--max-body-size", "10Q" },
                { "--max-body-size", "M" },
                { "--max-body-size", "99999999999999999999" },
                { "--max-requests", "5000000000" },
                { "--max-requests", "many" },
                { "--log-level", "chatty" },
        };
        const char *path = write_conf("");

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                char *argv[] = { (char *) "prog", (char *) "--config", (char *) path, (char *) bad[i][0],
                                 (char *) bad[i][1], NULL };

                ck_assert_msg(load(argv, NULL, NULL) < 0, "accepted %s %s", bad[i][0], bad[i][1]);
        }
}
END_TEST

START_TEST(test_missing_value) {
        const char *path = write_conf("");
        char *argv[] = { (char *) "prog", (char *) "--config", (char *) path, (char *) "--upstream", NULL };
        char *argv2[] = { (char *) "prog", (char *) "--config", NULL };

        ck_assert_int_eq(load(argv, NULL, NULL), -EINVAL);
        ck_assert_int_eq(load(argv2, NULL, NULL), -EINVAL);
}
END_TEST

START_TEST(test_bad_file) {
        char *argv[] = { (char *) "prog", (char *) "--config", (char *) "/nonexistent/mycelia.conf", NULL };

        /* A file named on the command line must exist. */
        ck_assert_int_lt(load(argv, NULL, NULL), 0);
        ck_assert_str_eq(c.route_policy, "gravity");
}
END_TEST

START_TEST(test_bad_value_in_file) {
        char *argv[] = { (char *) "prog", (char *) "--config", (char *) write_conf("[router]\ntags_interval = soon\n"), NULL };

        ck_assert_int_eq(load(argv, NULL, NULL), -EINVAL);
        ck_assert_uint_eq(c.tags_interval, 10 * USEC_PER_SEC);
}
END_TEST

START_TEST(test_syntax_error_in_file) {
        char *argv[] = { (char *) "prog", (char *) "--config", (char *) write_conf("[router\npolicy = least-loaded\n"), NULL };

        ck_assert_int_eq(load(argv, NULL, NULL), -EINVAL);
}
END_TEST

START_TEST(test_config_set) {
        ck_assert_int_eq(config_set(&c, "router", "policy", "least-loaded"), 0);
        ck_assert_str_eq(c.route_policy, "least-loaded");
        ck_assert_int_eq(config_set(&c, "router", "nope", "x"), -ENOENT);
        ck_assert_int_eq(config_set(&c, "nope", "policy", "x"), -ENOENT);
        ck_assert_int_eq(config_set(&c, "router", "tags_interval", "bad"), -EINVAL);
        ck_assert_uint_eq(c.tags_interval, 10 * USEC_PER_SEC);
}
END_TEST

START_TEST(test_log_level_applied) {
        const char *path = write_conf("[node]\nlog_level = debug\n");
        char *argv[] = { (char *) "prog", (char *) "--config", (char *) path, NULL };

        ck_assert_int_eq(load(argv, NULL, NULL), 0);
        ck_assert_int_eq(log_get_max_level(), LOG_DEBUG);
}
END_TEST

START_TEST(test_parse_size) {
        static const struct {
                const char *s;
                uint64_t v;
        } good[] = {
                { "0", 0 },
                { "1", 1 },
                { "1K", 1024 },
                { "1k", 1024 },
                { "1KB", 1024 },
                { "2kb", 2048 },
                { "1M", 1ULL << 20 },
                { "100M", 100ULL << 20 },
                { "3G", 3ULL << 30 },
                { "1T", 1ULL << 40 },
                { "7B", 7 },
                { "18446744073709551615", UINT64_MAX },
        };
        static const char *const bad[] = {
                "", "-1", "K", "1X", "1.5M", "1 M", "1MM", "1KBB", "18446744073709551616",
        };
        uint64_t v;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                v = 12345;
                ck_assert_msg(parse_size(good[i].s, &v) == 0, "rejected %s", good[i].s);
                ck_assert_uint_eq(v, good[i].v);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                v = 12345;
                ck_assert_msg(parse_size(bad[i], &v) < 0, "accepted %s", bad[i]);
                ck_assert_uint_eq(v, 12345);
        }
        ck_assert_int_eq(parse_size(NULL, &v), -EINVAL);
        ck_assert_int_eq(parse_size("17179869184G", &v), -ERANGE);
}
END_TEST

START_TEST(test_parse_duration) {
        static const struct {
                const char *s;
                usec_t v;
        } good[] = {
                { "0", 0 },
                { "7", 7 * USEC_PER_SEC },
                { "5s", 5 * USEC_PER_SEC },
                { "250ms", 250 * USEC_PER_MSEC },
                { "10us", 10 },
                { "2m", 120 * USEC_PER_SEC },
                { "3min", 180 * USEC_PER_SEC },
                { "1h", 3600 * USEC_PER_SEC },
        };
        static const char *const bad[] = {
                "", "s", "-5s", "5x", "1.5s", "5 s", "5S", "5sec", "5msx", "99999999999999999999",
        };
        usec_t v;

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                v = 12345;
                ck_assert_msg(parse_duration(good[i].s, &v) == 0, "rejected %s", good[i].s);
                ck_assert_uint_eq(v, good[i].v);
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                v = 12345;
                ck_assert_msg(parse_duration(bad[i], &v) < 0, "accepted %s", bad[i]);
                ck_assert_uint_eq(v, 12345);
        }
        ck_assert_int_eq(parse_duration(NULL, &v), -EINVAL);
        ck_assert_int_eq(parse_duration("18446744073709552h", &v), -ERANGE);
}
END_TEST

START_TEST(test_mesh_defaults) {
        ck_assert_str_eq(c.gossip_listen, "0.0.0.0:11436");
        ck_assert_str_eq(c.gossip_advertise, "");
        ck_assert_uint_eq(c.gossip_probe_interval, 200 * USEC_PER_MSEC);
        ck_assert_uint_eq(c.gossip_probe_timeout, 100 * USEC_PER_MSEC);
        ck_assert_uint_eq(c.gossip_suspicion_mult, 4);
        ck_assert_uint_eq(c.gossip_push_pull_interval, 30 * USEC_PER_SEC);
        ck_assert_str_eq(c.seeds, "");
        ck_assert(c.mdns);
        ck_assert(strstr(c.mesh_key, "/mycelia/mesh.key"));
}
END_TEST

/* --seed accumulates; the file's list is replaced by the first flag, not appended to. */
START_TEST(test_seed_flags_accumulate) {
        char *argv[] = { "prog", "--config", (char *) write_conf("[discovery]\nseeds=file:1\nmdns=off\n"),
                         "--seed", "a:1", "--seed=[::1]:2", "--seed", "c:3,d:4", NULL };

        ck_assert_int_eq(load(argv, NULL, NULL), 0);
        ck_assert_str_eq(c.seeds, "a:1,[::1]:2,c:3,d:4");
        ck_assert(!c.mdns);
}
END_TEST

START_TEST(test_seeds_from_file) {
        char *argv[] = { "prog", "--config", (char *) write_conf("[discovery]\nseeds=h1:11436,h2:11436\n"), NULL };

        ck_assert_int_eq(load(argv, NULL, NULL), 0);
        ck_assert_str_eq(c.seeds, "h1:11436,h2:11436");
}
END_TEST

START_TEST(test_parse_boolean) {
        ck_assert_int_eq(parse_boolean("yes"), 1);
        ck_assert_int_eq(parse_boolean("On"), 1);
        ck_assert_int_eq(parse_boolean("1"), 1);
        ck_assert_int_eq(parse_boolean("false"), 0);
        ck_assert_int_eq(parse_boolean("off"), 0);
        ck_assert_int_eq(parse_boolean(""), -EINVAL);
        ck_assert_int_eq(parse_boolean("maybe"), -EINVAL);
        ck_assert_int_eq(parse_boolean(NULL), -EINVAL);
}
END_TEST

START_TEST(test_bad_bool_flag) {
        char *argv[] = { "prog", "--mdns", "perhaps", NULL };

        ck_assert_int_eq(load(argv, NULL, NULL), -EINVAL);
}
END_TEST

START_TEST(test_help_text) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        ck_assert_ptr_nonnull(f);
        config_help(f);
        ck_assert_int_eq(fclose(f), 0);
        ck_assert_ptr_nonnull(strstr(buf, "--config FILE"));
        ck_assert_ptr_nonnull(strstr(buf, "--upstream VALUE"));
        ck_assert_ptr_nonnull(strstr(buf, "--tags-interval VALUE"));
        ck_assert_ptr_nonnull(strstr(buf, "[router] policy"));
        free(buf);
}
END_TEST

static Suite *config_suite(void) {
        Suite *s = suite_create("config");
        TCase *tc = tcase_create("config");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_defaults);
        tcase_add_test(tc, test_file_overrides_defaults);
        tcase_add_test(tc, test_flags_override_file);
        tcase_add_test(tc, test_unknown_flags_returned);
        tcase_add_test(tc, test_help);
        tcase_add_test(tc, test_bad_values_rejected);
        tcase_add_test(tc, test_missing_value);
        tcase_add_test(tc, test_bad_file);
        tcase_add_test(tc, test_bad_value_in_file);
        tcase_add_test(tc, test_syntax_error_in_file);
        tcase_add_test(tc, test_config_set);
        tcase_add_test(tc, test_log_level_applied);
        tcase_add_test(tc, test_parse_size);
        tcase_add_test(tc, test_parse_duration);
        tcase_add_test(tc, test_mesh_defaults);
        tcase_add_test(tc, test_seed_flags_accumulate);
        tcase_add_test(tc, test_seeds_from_file);
        tcase_add_test(tc, test_parse_boolean);
        tcase_add_test(tc, test_bad_bool_flag);
        tcase_add_test(tc, test_help_text);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(config_suite());
}
