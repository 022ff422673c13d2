/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The files of /mycelia/: a fixed list, so that no path a client sends reaches the file system;
 * each opened when asked (they are small, and a package upgrade replaces them under a running
 * shimd). Strict headers: a CSP that allows only this origin, no sniffing, no framing. */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "shim-request.h"
#include "shimd-errors.h"
#include "shimd-www.h"

/* Larger files are not served: the page's own are a few dozen KiB. */
#define WWW_FILE_MAX (1U << 20)

static const struct {
        const char *name;
        const char *content_type;
} www_files[] = {
        { "index.html", "text/html; charset=utf-8" },
        { "mycelia.js", "text/javascript; charset=utf-8" },
        { "mycelia.css", "text/css; charset=utf-8" },
        { "favicon.svg", "image/svg+xml" },
};

/* The path of uri, without its query: "/mycelia/x.js?v=1" -> "/mycelia/x.js". */
static size_t uri_path_length(const char *uri) {
        return strcspn(uri, "?#");
}

static void www_add_headers(struct evkeyvalq *out, const char *content_type) {
        (void) evhttp_add_header(out, "Content-Type", content_type);
        /* Small files, and an upgrade must show at once: always revalidated. */
        (void) evhttp_add_header(out, "Cache-Control", "no-cache");
        (void) evhttp_add_header(out, "X-Content-Type-Options", "nosniff");
        (void) evhttp_add_header(out, "Referrer-Policy", "no-referrer");
        (void) evhttp_add_header(out, "Content-Security-Policy",
                                 "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                 "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
}

static void www_send_file(Manager *m, struct evhttp_request *req, const char *name, const char *content_type) {
        struct evbuffer *buf;
        char path[PATH_MAX];
        struct stat st;
        int fd;

        if (isempty(m->config->www_dir) ||
            (size_t) snprintf(path, sizeof(path), "%s/%s", m->config->www_dir, name) >= sizeof(path)) {
                shim_reply_error(req, 404, SHIM_ERROR_JSON, "the topology page is not installed ([shim] www_dir)",
                                 false);
                return;
        }
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > WWW_FILE_MAX) {
                if (fd < 0)
                        log_debug_errno(-errno, "Cannot open %s: %m", path);
                if (fd >= 0)
                        (void) close(fd);
                shim_reply_error(req, 404, SHIM_ERROR_JSON, "the topology page is not installed ([shim] www_dir)",
                                 false);
                return;
        }
        www_add_headers(evhttp_request_get_output_headers(req), content_type);
        if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
                (void) close(fd);
                shim_reply_head(req, (uint64_t) st.st_size);
                return;
        }
        buf = evbuffer_new();
        /* evbuffer_add_file() takes fd, also when it fails. */
        if (!buf || evbuffer_add_file(buf, fd, 0, st.st_size) < 0) {
                if (!buf)
                        (void) close(fd);
                if (buf)
                        evbuffer_free(buf);
                shim_reply_error(req, 500, SHIM_ERROR_JSON, "could not read the page", false);
                return;
        }
        m->counters.bytes_to_clients += (uint64_t) st.st_size;
        evhttp_send_reply(req, 200, NULL, buf);
        evbuffer_free(buf);
}

bool www_handle(Manager *m, struct evhttp_request *req, const char *uri) {
        enum evhttp_cmd_type method = evhttp_request_get_command(req);
        size_t n = uri_path_length(uri);
        const char *name;

        if (n < 8 || !strneq(uri, "/mycelia", 8) || (n > 8 && uri[8] != '/'))
                return false;
        if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
                shim_reply_error_with_header(req, 405, SHIM_ERROR_JSON, "method not allowed", false, "Allow",
                                             "GET, HEAD");
                return true;
        }
        if (n == 8) {
                /* Relative links in the page need the slash. */
                (void) evhttp_add_header(evhttp_request_get_output_headers(req), "Location", "/mycelia/");
                evhttp_send_reply(req, 301, "Moved Permanently", NULL);
                return true;
        }
        name = uri + 9;
        n -= 9;
        if (n == 0) {
                www_send_file(m, req, www_files[0].name, www_files[0].content_type);
                return true;
        }
        for (size_t i = 0; i < ELEMENTSOF(www_files); i++)
                if (strlen(www_files[i].name) == n && strneq(name, www_files[i].name, n)) {
                        www_send_file(m, req, www_files[i].name, www_files[i].content_type);
                        return true;
                }
        shim_reply_error(req, 404, SHIM_ERROR_JSON, "no such file of the topology page", false);
        return true;
}
