/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The base URL of an Ollama or a peer ("http://HOST[:PORT][/PREFIX]"), parsed once, for the
 * Host header, the connection pool key and request paths. Used by shimd and routerd. */
#pragma once

#include "macro.h"

typedef struct HttpBaseUrl {
        char host[256];         /* without brackets for IPv6 */
        uint16_t port;
        char hostport[264];     /* for the Host header and the connection pool key */
        char prefix[256];       /* path prefix without trailing '/', usually "" */
} HttpBaseUrl;

/* -EPROTONOSUPPORT for anything but http://, -EINVAL for a malformed URL or one with user
 * info, a query or a fragment, -ERANGE for a port past 65535, -ENAMETOOLONG for a long prefix. */
int http_base_url_parse(const char *url, HttpBaseUrl *ret);
