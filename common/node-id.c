/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A node id per state directory, not per machine: two nodes on one host, cloned VMs and images
 * that share /etc/machine-id each get their own (docs/node-identity.md). */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <systemd/sd-id128.h>
#include <unistd.h>

#include "node-id.h"

/* "<32 hex digits>\n"; a little slack for hand-written files with a CR or spaces is not
 * given: a file that is not exactly an id is an error the operator should see. */
static int node_id_read(int dir_fd, sd_id128_t *ret) {
        _cleanup_close_ int fd = -EBADF;
        char buf[NODE_ID_LEN + 3];
        sd_id128_t id;
        ssize_t n;

        fd = openat(dir_fd, NODE_ID_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, sizeof(buf) - 1);
        if (n < 0)
                return -errno;
        buf[n] = '\0';
        if (n == NODE_ID_LEN + 1 && buf[NODE_ID_LEN] == '\n')
                buf[NODE_ID_LEN] = '\0';
        else if (n != NODE_ID_LEN)
                return -EBADMSG;
        if (sd_id128_from_string(buf, &id) < 0 || sd_id128_is_null(id))
                return -EBADMSG;
        *ret = id;
        return 0;
}

/* Writes a fresh random id to a file of its own and links it into place: link() fails rather
 * than replace, so an id another daemon linked first stays. */
static int node_id_create(int dir_fd) {
        _cleanup_close_ int fd = -EBADF;
        char tmp[sizeof(NODE_ID_FILE) + 24], line[NODE_ID_LEN + 2];
        sd_id128_t id;
        int r;

        r = sd_id128_randomize(&id);
        if (r < 0)
                return r;
        sd_id128_to_string(id, line);
        line[NODE_ID_LEN] = '\n';
        line[NODE_ID_LEN + 1] = '\0';

        snprintf(tmp, sizeof(tmp), ".%s.%ld", NODE_ID_FILE, (long) getpid());
        (void) unlinkat(dir_fd, tmp, 0);
        fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return -errno;
        if (write(fd, line, NODE_ID_LEN + 1) != NODE_ID_LEN + 1 || fsync(fd) < 0) {
                r = errno > 0 ? -errno : -EIO;
                (void) unlinkat(dir_fd, tmp, 0);
                return r;
        }
        r = linkat(dir_fd, tmp, dir_fd, NODE_ID_FILE, 0) < 0 ? -errno : 0;
        (void) unlinkat(dir_fd, tmp, 0);
        if (r < 0 && r != -EEXIST)
                return r;
        (void) fsync(dir_fd);
        return 0;
}

int node_id_get(const char *configured, const char *state_dir, char ret[static NODE_ID_LEN + 1]) {
        _cleanup_close_ int dir_fd = -EBADF;
        sd_id128_t id;
        int r;

        if (!isempty(configured)) {
                r = sd_id128_from_string(configured, &id);
                if (r < 0 || sd_id128_is_null(id))
                        return -EINVAL;
                sd_id128_to_string(id, ret);
                return 0;
        }
        if (isempty(state_dir))
                return -EINVAL;

        if (mkdir(state_dir, 0750) < 0 && errno != EEXIST)
                return -errno;
        dir_fd = open(state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dir_fd < 0)
                return -errno;

        r = node_id_read(dir_fd, &id);
        if (r == -ENOENT) {
                r = node_id_create(dir_fd);
                if (r < 0)
                        return r;
                r = node_id_read(dir_fd, &id);
        }
        if (r < 0)
                return r;
        sd_id128_to_string(id, ret);
        return 0;
}
