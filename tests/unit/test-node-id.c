/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for common/node-id.c: a configured id wins, otherwise one is made on first use and
 * kept in the state directory, daemons starting at once agree on it, bad files are refused. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "node-id.h"
#include "unit-test.h"

static char dir[64];
static char state[128];
static char path[192];

static void setup(void) {
        snprintf(dir, sizeof(dir), "/tmp/test-node-id-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(state, sizeof(state), "%s/state", dir);
        snprintf(path, sizeof(path), "%s/" NODE_ID_FILE, state);
}

static void teardown(void) {
        (void) unlink(path);
        (void) rmdir(state);
        (void) rmdir(dir);
}

static void write_file(const char *text) {
        FILE *f;

        (void) mkdir(state, 0750);
        f = fopen(path, "we");
        ck_assert_ptr_nonnull(f);
        ck_assert_int_ge(fputs(text, f), 0);
        fclose(f);
}

static bool is_id(const char *s) {
        if (strlen(s) != NODE_ID_LEN)
                return false;
        for (size_t i = 0; i < NODE_ID_LEN; i++)
                if (!strchr("0123456789abcdef", s[i]))
                        return false;
        return true;
}

START_TEST(test_configured_wins) {
        char id[NODE_ID_LEN + 1];

        ck_assert_int_eq(node_id_get("0123456789ABCDEF0123456789abcdef", state, id), 0);
        ck_assert_str_eq(id, "0123456789abcdef0123456789abcdef");
        /* Nothing is written when the id is configured. */
        ck_assert_int_eq(access(state, F_OK), -1);

        strcpy(id, "untouched");
        ck_assert_int_eq(node_id_get("0123", state, id), -EINVAL);
        ck_assert_int_eq(node_id_get("00000000000000000000000000000000", state, id), -EINVAL);
        ck_assert_int_eq(node_id_get("0123456789abcdef0123456789abcdeg", state, id), -EINVAL);
        ck_assert_str_eq(id, "untouched");
}
END_TEST

START_TEST(test_made_once_and_kept) {
        char a[NODE_ID_LEN + 1], b[NODE_ID_LEN + 1], text[64] = "";
        struct stat st;
        FILE *f;

        /* The state directory itself is made (one level), then the file in it. */
        ck_assert_int_eq(node_id_get(NULL, state, a), 0);
        ck_assert(is_id(a));
        ck_assert_int_eq(stat(state, &st), 0);
        ck_assert(S_ISDIR(st.st_mode));
        ck_assert_int_eq(stat(path, &st), 0);
        ck_assert_uint_eq(st.st_size, NODE_ID_LEN + 1);
        f = fopen(path, "re");
        ck_assert_ptr_nonnull(f);
        ck_assert_ptr_nonnull(fgets(text, sizeof(text), f));
        fclose(f);
        ck_assert_uint_eq(strlen(text), NODE_ID_LEN + 1);
        ck_assert_int_eq(text[NODE_ID_LEN], '\n');
        ck_assert_int_eq(strncmp(text, a, NODE_ID_LEN), 0);

        /* The next start reads the same id; "" counts as not configured. */
        ck_assert_int_eq(node_id_get("", state, b), 0);
        ck_assert_str_eq(a, b);

        /* Another state directory is another node. */
        (void) unlink(path);
        ck_assert_int_eq(node_id_get(NULL, state, b), 0);
        ck_assert(is_id(b));
        ck_assert_str_ne(a, b);
}
END_TEST

START_TEST(test_hand_written_file) {
        char id[NODE_ID_LEN + 1];

        /* Without the newline is fine too. */
        write_file("fedcba9876543210fedcba9876543210");
        ck_assert_int_eq(node_id_get(NULL, state, id), 0);
        ck_assert_str_eq(id, "fedcba9876543210fedcba9876543210");
}
END_TEST

START_TEST(test_bad_file_refused) {
        static const char *const bad[] = {
                "",
                "\n",
                "hello\n",
                "00000000000000000000000000000000\n",
                "fedcba9876543210fedcba987654321\n",            /* 31 digits */
                "fedcba9876543210fedcba9876543210f\n",          /* 33 */
                "fedcba9876543210fedcba9876543210\n\n",
                " fedcba9876543210fedcba9876543210",
                "fedcba98-7654-3210-fedc-ba9876543210\n",
        };
        char id[NODE_ID_LEN + 1];

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                write_file(bad[i]);
                strcpy(id, "untouched");
                ck_assert_msg(node_id_get(NULL, state, id) == -EBADMSG, "accepted '%s'", bad[i]);
                ck_assert_str_eq(id, "untouched");
        }
}
END_TEST

START_TEST(test_unusable_state_dir) {
        char id[NODE_ID_LEN + 1], deep[256];

        ck_assert_int_eq(node_id_get(NULL, NULL, id), -EINVAL);
        ck_assert_int_eq(node_id_get(NULL, "", id), -EINVAL);
        /* Only one missing level is made. */
        snprintf(deep, sizeof(deep), "%s/a/b", dir);
        ck_assert_int_eq(node_id_get(NULL, deep, id), -ENOENT);
        /* A file where the directory should be. */
        ck_assert_int_eq(close(open(state, O_WRONLY | O_CREAT | O_CLOEXEC, 0644)), 0);
        ck_assert_int_eq(node_id_get(NULL, state, id), -ENOTDIR);
        ck_assert_int_eq(unlink(state), 0);
}
END_TEST

/* The daemons of a node start at once under systemd: each must end with the same id. */
START_TEST(test_concurrent_first_start) {
        enum { N = 16 };
        char ids[N][NODE_ID_LEN + 1];
        int fds[N][2];
        pid_t pids[N];

        for (int i = 0; i < N; i++) {
                ck_assert_int_eq(pipe(fds[i]), 0);
                pids[i] = fork();
                ck_assert_int_ge(pids[i], 0);
                if (pids[i] == 0) {
                        char id[NODE_ID_LEN + 1] = "";
                        int r = node_id_get(NULL, state, id);

                        _exit(r == 0 && write(fds[i][1], id, NODE_ID_LEN) == NODE_ID_LEN ? 0 : 1);
                }
                close(fds[i][1]);
        }
        for (int i = 0; i < N; i++) {
                int status;

                ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
                ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                ck_assert_int_eq(read(fds[i][0], ids[i], NODE_ID_LEN), NODE_ID_LEN);
                ids[i][NODE_ID_LEN] = '\0';
                close(fds[i][0]);
                ck_assert_str_eq(ids[i], ids[0]);
        }
        /* No temporary file is left behind. */
        {
                char id[NODE_ID_LEN + 1];

                ck_assert_int_eq(node_id_get(NULL, state, id), 0);
                ck_assert_str_eq(id, ids[0]);
                ck_assert_int_eq(unlink(path), 0);
                ck_assert_int_eq(rmdir(state), 0);
        }
}
END_TEST

static Suite *suite(void) {
        Suite *s = suite_create("node-id");
        TCase *tc = tcase_create("core");

        tcase_add_checked_fixture(tc, setup, teardown);
        tcase_add_test(tc, test_configured_wins);
        tcase_add_test(tc, test_made_once_and_kept);
        tcase_add_test(tc, test_hand_written_file);
        tcase_add_test(tc, test_bad_file_refused);
        tcase_add_test(tc, test_unusable_state_dir);
        tcase_add_test(tc, test_concurrent_first_start);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(suite());
}
