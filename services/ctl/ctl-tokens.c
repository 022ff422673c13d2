/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* myceliactl token add|list|revoke: the API's bearer tokens file (docs/api-auth.md). Only the
 * SHA-256 of a secret is written; the secret is printed once, by add. Changes are atomic (a new
 * file renamed over the old one, under a lock on its directory), and mycelia-shimd notices them
 * within a second, without a restart. */
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "build-config.h"
#include "config.h"
#include "ctl-table.h"
#include "myceliactl.h"
#include "api-tokens.h"

/* The group the daemons run as (units/sysusers.d-mycelia.conf): it reads the file. */
#define TOKENS_GROUP "mycelia"

const char *arg_tokens = NULL;
const char *arg_models = NULL;

/* --tokens, else [shim] tokens of mycelia.conf, else the default. */
static int tokens_path(char **ret) {
        _cleanup_(config_done) MyceliaConfig c = {};
        char *argv[] = { (char *) "myceliactl", NULL };
        int r;

        if (arg_tokens) {
                *ret = strdup(arg_tokens);
                return *ret ? 0 : -ENOMEM;
        }
        config_init(&c);
        r = config_load(&c, 1, argv, NULL, NULL);
        if (r < 0)
                return r;
        *ret = strdup(c.tokens_file);
        return *ret ? 0 : -ENOMEM;
}

static void print_problem(unsigned line, const char *problem, void *userdata) {
        fprintf(stderr, "%s:%u: %s; mycelia-shimd ignores this line.\n", (const char *) userdata, line, problem);
}

/* The file's text; "" when it does not exist. */
static int tokens_read(const char *path, char **ret, size_t *ret_size) {
        _cleanup_free_ char *text = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        size_t size = 0;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0 && errno == ENOENT) {
                *ret = strdup("");
                *ret_size = 0;
                return *ret ? 0 : -ENOMEM;
        }
        if (fd < 0 || fstat(fd, &st) < 0)
                return -errno;
        if (st.st_size > (off_t) API_TOKENS_FILE_MAX)
                return -EFBIG;
        text = malloc((size_t) st.st_size + 1);
        if (!text)
                return -ENOMEM;
        for (;;) {
                ssize_t n = read(fd, text + size, (size_t) st.st_size - size);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0 || (size += (size_t) n) == (size_t) st.st_size)
                        break;
        }
        text[size] = '\0';
        *ret = TAKE_PTR(text);
        *ret_size = size;
        return 0;
}

/* An exclusive lock on the file's directory, so that two changes do not lose one another. */
static int tokens_lock(const char *path, int *ret_fd) {
        _cleanup_free_ char *copy = strdup(path);
        int fd;

        if (!copy)
                return -ENOMEM;
        fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (flock(fd, LOCK_EX) < 0) {
                int r = -errno;
                (void) close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

/* Replaces path with text: a new file beside it (0640, group mycelia when it exists) renamed
 * over it. ret_group: the group it got, or NULL. */
static int tokens_write(const char *path, int dir_fd, const char *text, size_t size, const char **ret_group) {
        char tmp[PATH_MAX];
        _cleanup_close_ int fd = -EBADF;
        struct group *g;
        size_t done = 0;
        int r;

        if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int) getpid()) >= (int) sizeof(tmp))
                return -ENAMETOOLONG;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0640);
        if (fd < 0)
                return -errno;
        *ret_group = NULL;
        /* The daemons run as the mycelia user and read the file through its group. */
        g = getgrnam(TOKENS_GROUP);
        if (g && fchown(fd, (uid_t) -1, g->gr_gid) >= 0)
                *ret_group = TOKENS_GROUP;
        if (fchmod(fd, 0640) < 0)
                goto fail;
        while (done < size) {
                ssize_t n = write(fd, text + done, size - done);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        goto fail;
                done += (size_t) n;
        }
        if (fsync(fd) < 0 || rename(tmp, path) < 0)
                goto fail;
        (void) fsync(dir_fd);
        return 0;
fail:
        r = errno > 0 ? -errno : -EIO;
        (void) unlink(tmp);
        return r;
}

static char *models_joined(const ApiToken *t) {
        size_t need = 1;
        char *s;

        for (size_t i = 0; i < t->n_models; i++)
                need += strlen(t->models[i]) + 1;
        s = calloc(1, need);
        if (!s)
                return NULL;
        for (size_t i = 0; i < t->n_models; i++) {
                if (i > 0)
                        strcat(s, ",");
                strcat(s, t->models[i]);
        }
        return s;
}

static json_object *models_json(char *const *models, size_t n) {
        json_object *a;

        if (n == 0)
                return NULL;
        a = json_object_new_array();
        for (size_t i = 0; a && i < n; i++)
                json_object_array_add(a, json_object_new_string(models[i]));
        return a;
}

static int token_add(const char *path, const char *name) {
        _cleanup_(api_tokens_freep) ApiTokens *tokens = NULL;
        _cleanup_free_ char *text = NULL, *line = NULL, *updated = NULL;
        _cleanup_close_ int dir_fd = -EBADF;
        char **models = NULL;
        size_t n_models = 0, size;
        uint8_t raw[API_TOKEN_SECRET_BYTES], hash[API_TOKEN_HASH_SIZE];
        char secret[sizeof(API_TOKEN_SECRET_PREFIX) + sodium_base64_ENCODED_LEN(API_TOKEN_SECRET_BYTES,
                                                                                 sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
        const char *group = NULL;
        int r;

        if (!api_token_name_valid(name)) {
                fprintf(stderr, "Invalid token name '%s': 1 to %d of A-Z a-z 0-9 _ . -\n", name, API_TOKEN_NAME_MAX);
                return -EXIT_USAGE;
        }
        if (arg_models) {
                r = api_token_models_parse(arg_models, &models, &n_models);
                if (r < 0) {
                        fprintf(stderr, "Invalid --models '%s': model names separated by commas, no spaces.\n",
                                arg_models);
                        return -EXIT_USAGE;
                }
        }
        if (sodium_init() < 0) {
                fprintf(stderr, "libsodium failed to initialise.\n");
                r = -EXIT_FAILURE;
                goto finish;
        }

        r = tokens_lock(path, &dir_fd);
        if (r >= 0)
                r = tokens_read(path, &text, &size);
        if (r >= 0)
                r = api_tokens_parse(text, size, print_problem, (void *) path, &tokens);
        if (r < 0) {
                fprintf(stderr, "Failed to read %s: %s\n", path, strerror(-r));
                r = -EXIT_FAILURE;
                goto finish;
        }
        if (api_tokens_find_name(tokens, name)) {
                fprintf(stderr, "%s already has a token '%s'; revoke it first (myceliactl token revoke %s).\n", path,
                        name, name);
                r = -EXIT_FAILURE;
                goto finish;
        }

        randombytes_buf(raw, sizeof(raw));
        memcpy(secret, API_TOKEN_SECRET_PREFIX, strlen(API_TOKEN_SECRET_PREFIX));
        sodium_bin2base64(secret + strlen(API_TOKEN_SECRET_PREFIX), sizeof(secret) - strlen(API_TOKEN_SECRET_PREFIX),
                          raw, sizeof(raw), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        sodium_memzero(raw, sizeof(raw));
        api_token_hash(secret, strlen(secret), hash);
        r = api_token_line_format(name, hash, models, n_models, &line);
        if (r >= 0 && asprintf(&updated, "%s%s%s%s\n",
                               size == 0 ? "# Mycelia API tokens: NAME SHA256(secret) [MODEL,...], one a line; "
                                           "written by myceliactl token (docs/api-auth.md).\n" : "",
                               text, size > 0 && text[size - 1] != '\n' ? "\n" : "", line) < 0) {
                updated = NULL;
                r = -ENOMEM;
        }
        if (r >= 0)
                r = tokens_write(path, dir_fd, updated, strlen(updated), &group);
        if (r < 0) {
                sodium_memzero(secret, sizeof(secret));
                fprintf(stderr, "Failed to write %s: %s\n", path, strerror(-r));
                r = -EXIT_FAILURE;
                goto finish;
        }

        if (arg_json) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "name", json_object_new_string(name));
                json_object_object_add(o, "secret", json_object_new_string(secret));
                json_object_object_add(o, "models", models_json(models, n_models));
                json_object_object_add(o, "path", json_object_new_string(path));
                json_object_object_add(o, "group", group ? json_object_new_string(group) : NULL);
                r = json_print(o);
        } else {
                /* The secret alone on stdout (SECRET=$(myceliactl token add NAME)); the rest is for
                 * the person at the terminal. */
                printf("%s\n", secret);
                fflush(stdout);
                fprintf(stderr, "Added token '%s' to %s (%s%s%s). The secret above is shown only now: "
                        "clients send it as 'Authorization: Bearer SECRET' (the openai client's apiKey).\n",
                        name, path, n_models > 0 ? "models " : "any model", n_models > 0 ? arg_models : "",
                        group ? "" : "; no group " TOKENS_GROUP ", so only its owner reads it");
                r = 0;
        }
        sodium_memzero(secret, sizeof(secret));
finish:
        for (size_t i = 0; i < n_models; i++)
                free(models[i]);
        free(models);
        return r;
}

static int token_list(const char *path) {
        _cleanup_(api_tokens_freep) ApiTokens *tokens = NULL;
        _cleanup_(ctl_table_freep) CtlTable *t = NULL;
        _cleanup_free_ char *text = NULL;
        size_t size;
        int r;

        r = tokens_read(path, &text, &size);
        if (r >= 0)
                r = api_tokens_parse(text, size, print_problem, (void *) path, &tokens);
        if (r < 0) {
                fprintf(stderr, "Failed to read %s: %s\n", path, strerror(-r));
                return -EXIT_FAILURE;
        }
        if (arg_json) {
                json_object *a = json_object_new_array();

                for (size_t i = 0; i < tokens->n; i++) {
                        json_object *o = json_object_new_object();
                        json_object_object_add(o, "name", json_object_new_string(tokens->tokens[i].name));
                        json_object_object_add(o, "models", models_json(tokens->tokens[i].models,
                                                                         tokens->tokens[i].n_models));
                        json_object_array_add(a, o);
                }
                return json_print(a);
        }
        t = ctl_table_new("NAME", "MODELS", NULL);
        if (!t)
                return -ENOMEM;
        ctl_table_set_max_width(t, 1, 80);
        for (size_t i = 0; i < tokens->n; i++) {
                _cleanup_free_ char *models = models_joined(&tokens->tokens[i]);

                if (!models)
                        return -ENOMEM;
                (void) ctl_table_add(t, tokens->tokens[i].name);
                (void) ctl_table_add(t, isempty(models) ? "(any)" : models);
        }
        if (ctl_table_rows(t) > 0)
                (void) ctl_table_print(t, stdout, arg_legend);
        if (arg_legend)
                printf("%s%zu tokens in %s.\n", ctl_table_rows(t) > 0 ? "\n" : "", tokens->n, path);
        return 0;
}

/* Whether the line's first field is name (comments and blank lines have none). */
static bool line_names(const char *line, size_t len, const char *name) {
        size_t i = 0, n = strlen(name);

        while (i < len && (line[i] == ' ' || line[i] == '\t'))
                i++;
        return len - i > n && strneq(line + i, name, n) && (line[i + n] == ' ' || line[i + n] == '\t');
}

static int token_revoke(const char *path, const char *name) {
        _cleanup_free_ char *text = NULL, *kept = NULL;
        _cleanup_close_ int dir_fd = -EBADF;
        const char *group = NULL;
        size_t size, pos = 0, out = 0;
        unsigned dropped = 0;
        int r;

        if (!api_token_name_valid(name)) {
                fprintf(stderr, "Invalid token name '%s': 1 to %d of A-Z a-z 0-9 _ . -\n", name, API_TOKEN_NAME_MAX);
                return -EXIT_USAGE;
        }
        r = tokens_lock(path, &dir_fd);
        if (r >= 0)
                r = tokens_read(path, &text, &size);
        if (r < 0) {
                fprintf(stderr, "Failed to read %s: %s\n", path, strerror(-r));
                return -EXIT_FAILURE;
        }
        kept = malloc(size + 1);
        if (!kept)
                return -ENOMEM;
        /* Every other line stays as it was, comments too. */
        while (pos < size) {
                const char *nl = memchr(text + pos, '\n', size - pos);
                size_t len = nl ? (size_t) (nl - (text + pos)) + 1 : size - pos;

                if (line_names(text + pos, len, name))
                        dropped++;
                else {
                        memcpy(kept + out, text + pos, len);
                        out += len;
                }
                pos += len;
        }
        if (dropped == 0) {
                fprintf(stderr, "No token '%s' in %s.\n", name, path);
                return -EXIT_FAILURE;
        }
        r = tokens_write(path, dir_fd, kept, out, &group);
        if (r < 0) {
                fprintf(stderr, "Failed to write %s: %s\n", path, strerror(-r));
                return -EXIT_FAILURE;
        }
        if (arg_json) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "name", json_object_new_string(name));
                json_object_object_add(o, "path", json_object_new_string(path));
                return json_print(o);
        }
        printf("Revoked token '%s' (%s); mycelia-shimd refuses it within a second.\n", name, path);
        return 0;
}

int verb_token(sd_bus *bus, int argc, char **argv) {
        _cleanup_free_ char *path = NULL;
        const char *sub = argv[1];
        int r;

        if (!streq(sub, "add") && !streq(sub, "list") && !streq(sub, "revoke")) {
                fprintf(stderr, "Unknown 'token' command '%s': add NAME [--models M1,M2], list, revoke NAME.\n", sub);
                return -EXIT_USAGE;
        }
        if ((streq(sub, "list") && argc != 2) || (!streq(sub, "list") && argc != 3)) {
                fprintf(stderr, "'token %s' takes %s. See 'myceliactl --help'.\n", sub,
                        streq(sub, "list") ? "no arguments" : "a NAME");
                return -EXIT_USAGE;
        }
        if (arg_models && !streq(sub, "add")) {
                fprintf(stderr, "--models goes with 'token add' only.\n");
                return -EXIT_USAGE;
        }
        r = tokens_path(&path);
        if (r < 0) {
                if (r == -ENOMEM)
                        fprintf(stderr, "Out of memory.\n");
                return -EXIT_FAILURE;
        }
        if (streq(sub, "add"))
                return token_add(path, argv[2]);
        if (streq(sub, "revoke"))
                return token_revoke(path, argv[2]);
        return token_list(path);
}
