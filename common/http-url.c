/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Strict parsing of upstream base URLs: digits-only ports, bracketed IPv6, no user info, query
 * or fragment. No allocation, no DNS: the host is resolved when connecting. */
#include <ctype.h>
#include <stdio.h>
#include <strings.h>

#include "http-url.h"

int http_base_url_parse(const char *url, HttpBaseUrl *ret) {
        HttpBaseUrl u = {};
        const char *p, *host_end, *port_start = NULL, *path;
        size_t host_len;

        if (!url || strncasecmp(url, "http://", 7) != 0)
                return -EPROTONOSUPPORT;
        p = url + 7;
        path = p + strcspn(p, "/?#");
        /* A base URL names a server and a path prefix; a query or fragment has no place in it. */
        if (strpbrk(path, "?#"))
                return -EINVAL;

        if (*p == '[') {
                host_end = memchr(p, ']', (size_t) (path - p));
                if (!host_end)
                        return -EINVAL;
                host_len = (size_t) (host_end - p - 1);
                if (host_len == 0 || host_len >= sizeof(u.host))
                        return -EINVAL;
                memcpy(u.host, p + 1, host_len);
                if (host_end + 1 < path) {
                        if (host_end[1] != ':')
                                return -EINVAL;
                        port_start = host_end + 2;
                }
        } else {
                const char *colon = memchr(p, ':', (size_t) (path - p));

                host_end = colon ?: path;
                host_len = (size_t) (host_end - p);
                if (host_len == 0 || host_len >= sizeof(u.host))
                        return -EINVAL;
                memcpy(u.host, p, host_len);
                if (colon)
                        port_start = colon + 1;
        }
        if (strpbrk(u.host, " \t@"))
                return -EINVAL;

        if (port_start) {
                unsigned long port = 0;

                if (port_start == path)
                        return -EINVAL;
                for (const char *q = port_start; q < path; q++) {
                        if (!isdigit((unsigned char) *q))
                                return -EINVAL;
                        port = port * 10 + (unsigned long) (*q - '0');
                        if (port > 65535)
                                return -ERANGE;
                }
                if (port == 0)
                        return -EINVAL;
                u.port = (uint16_t) port;
        } else
                u.port = 80;

        if (*path == '/') {
                size_t n = strcspn(path, "?#");

                while (n > 0 && path[n - 1] == '/')
                        n--;
                if (n >= sizeof(u.prefix))
                        return -ENAMETOOLONG;
                memcpy(u.prefix, path, n);
        }

        if (strchr(u.host, ':'))
                snprintf(u.hostport, sizeof(u.hostport), "[%s]:%u", u.host, u.port);
        else
                snprintf(u.hostport, sizeof(u.hostport), "%s:%u", u.host, u.port);
        *ret = u;
        return 0;
}
