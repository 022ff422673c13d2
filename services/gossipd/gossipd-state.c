/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reading and atomically writing STATE_DIR/gossip/members. Format, one record a line:
 * "incarnation N", "meta KEY VALUE" (VALUE is the rest of the line) and "member ID ADDR:PORT";
 * '#' starts a comment. */
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

#include "gossipd-state.h"
#include "swim-wire.h"

int gossip_state_path(const char *state_dir, char **ret) {
        if (isempty(state_dir))
                return -EINVAL;
        if (asprintf(ret, "%s/gossip/members", state_dir) < 0)
                return -ENOMEM;
        return 0;
}

static bool id_valid(const char *id) {
        if (strlen(id) != NODE_ID_LEN)
                return false;
        for (const char *p = id; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

int gossip_state_add_meta(GossipState *s, const char *key, const char *value) {
        size_t kl, vl;

        kl = strlen(key);
        vl = strlen(value);
        if (!swim_meta_key_valid(key, kl) || vl == 0 || !swim_meta_value_valid(value, vl))
                return -EINVAL;
        if (s->n_meta >= SWIM_META_KEYS_MAX || kl + vl + 2 > sizeof(s->meta) - s->meta_size)
                return -E2BIG;
        memcpy(s->meta + s->meta_size, key, kl + 1);
        memcpy(s->meta + s->meta_size + kl + 1, value, vl + 1);
        s->meta_size += kl + vl + 2;
        s->n_meta++;
        return 0;
}

void gossip_state_meta(const GossipState *s, size_t i, const char **ret_key, const char **ret_value) {
        const char *p = s->meta;

        assert(i < s->n_meta);
        for (; i > 0; i--) {
                p += strlen(p) + 1;
                p += strlen(p) + 1;
        }
        *ret_key = p;
        *ret_value = p + strlen(p) + 1;
}

static void state_parse_line(GossipState *s, char *line) {
        char *save = NULL, *word, *id, *addr;

        word = strtok_r(line, " \t", &save);
        if (!word || word[0] == '#')
                return;
        if (streq(word, "meta")) {
                /* The value is the rest of the line, spaces and all. */
                char *key = strtok_r(NULL, " ", &save);

                if (key && save)
                        (void) gossip_state_add_meta(s, key, save);
                return;
        }
        if (streq(word, "incarnation")) {
                char *v = strtok_r(NULL, " \t", &save), *end;
                unsigned long long n;

                if (!v || v[0] == '-')
                        return;
                errno = 0;
                n = strtoull(v, &end, 10);
                if (errno == 0 && *end == '\0' && n <= UINT32_MAX)
                        s->incarnation = (uint32_t) n;
                return;
        }
        if (streq(word, "member")) {
                GossipStateMember *m;

                id = strtok_r(NULL, " \t", &save);
                addr = strtok_r(NULL, " \t", &save);
                if (!id || !addr || !id_valid(id) || s->n_members >= GOSSIP_STATE_MEMBERS_MAX)
                        return;
                m = &s->members[s->n_members];
                if (swim_addr_parse(addr, &m->addr) < 0)
                        return;
                snprintf(m->id, sizeof(m->id), "%s", id);
                s->n_members++;
        }
}

int gossip_state_load(const char *path, GossipState *ret) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        char *line, *save = NULL;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        text = malloc(GOSSIP_STATE_FILE_MAX + 1);
        if (!text)
                return -ENOMEM;
        while (size < GOSSIP_STATE_FILE_MAX) {
                ssize_t k = read(fd, text + size, GOSSIP_STATE_FILE_MAX - size);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                size += (size_t) k;
        }
        text[size] = '\0';

        *ret = (GossipState) {};
        for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
                state_parse_line(ret, line);
        return 0;
}

int gossip_state_format(const GossipState *s, char **ret) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        FILE *f;

        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        fprintf(f, "# mycelia-gossipd: the last incarnation used, this node's metadata and the members alive when written.\n");
        fprintf(f, "incarnation %" PRIu32 "\n", s->incarnation);
        for (size_t i = 0; i < s->n_meta; i++) {
                const char *key, *value;

                gossip_state_meta(s, i, &key, &value);
                fprintf(f, "meta %s %s\n", key, value);
        }
        for (size_t i = 0; i < s->n_members && i < GOSSIP_STATE_MEMBERS_MAX; i++) {
                char addr[SWIM_ADDR_STRING_MAX];

                if (swim_addr_format(&s->members[i].addr, addr, sizeof(addr)) < 0)
                        continue;
                fprintf(f, "member %s %s\n", s->members[i].id, addr);
        }
        if (fclose(f) != 0)
                return -ENOMEM;
        *ret = TAKE_PTR(buf);
        return 0;
}

/* Creates STATE_DIR (when started by hand with a fresh --state-dir) and STATE_DIR/gossip. */
static int mkdir_parents(const char *path) {
        _cleanup_free_ char *dir = strdup(path);
        char *slash, *gossip_slash;

        if (!dir)
                return -ENOMEM;
        gossip_slash = strrchr(dir, '/');
        if (!gossip_slash || gossip_slash == dir)
                return 0;
        *gossip_slash = '\0';
        slash = strrchr(dir, '/');
        if (slash && slash != dir) {
                *slash = '\0';
                if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                        return -errno;
                *slash = '/';
        }
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

int gossip_state_write(const char *path, const char *text) {
        char tmp[PATH_MAX];
        _cleanup_close_ int fd = -EBADF;
        size_t len = strlen(text), done = 0;
        int r;

        r = mkdir_parents(path);
        if (r < 0)
                return r;
        if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int) sizeof(tmp))
                return -ENAMETOOLONG;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0644);
        if (fd < 0)
                return -errno;
        while (done < len) {
                ssize_t k = write(fd, text + done, len - done);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        (void) unlink(tmp);
                        return r;
                }
                done += (size_t) k;
        }
        if (fsync(fd) < 0) {
                r = -errno;
                (void) unlink(tmp);
                return r;
        }
        if (rename(tmp, path) < 0) {
                r = -errno;
                (void) unlink(tmp);
                return r;
        }
        return 0;
}
