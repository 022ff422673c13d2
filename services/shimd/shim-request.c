/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Request classification, model extraction, header filtering, URL parsing and limits: the
 * decisions of the proxy, kept apart from libevent so unit tests can drive them. */
#include <ctype.h>
#include <inttypes.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <strings.h>

#include "shim-request.h"

typedef struct EndpointInfo {
        const char *path;
        bool routed;            /* POST with a "model" naming where it runs */
        bool streams;
} EndpointInfo;

static const EndpointInfo endpoints[] = {
        { "/api/generate",        true,  true },
        { "/api/chat",            true,  true },
        { "/api/embed",           true,  false },
        { "/api/embeddings",      true,  false },
        { "/v1/chat/completions", true,  true },
        { "/v1/completions",      true,  true },
        { "/v1/embeddings",       true,  false },
        { "/api/pull",            false, true },
        { "/api/push",            false, true },
        { "/api/create",          false, true },
};

void shim_request_classify(const char *method, const char *uri, ShimRequestClass *ret) {
        size_t len;

        *ret = (ShimRequestClass) { .routing = SHIM_ROUTING_LOCAL, .api = SHIM_API_OLLAMA };
        if (!uri)
                return;

        /* Absolute-form targets ("http://host/path") are classified by their path. */
        if (strncasecmp(uri, "http://", 7) == 0) {
                const char *slash = strchr(uri + 7, '/');
                uri = slash ?: "/";
        }
        len = strcspn(uri, "?#");

        if (strneq(uri, "/v1/", 4) || (len == 3 && strneq(uri, "/v1", 3)))
                ret->api = SHIM_API_OPENAI;

        for (size_t i = 0; i < ELEMENTSOF(endpoints); i++)
                if (strlen(endpoints[i].path) == len && strneq(uri, endpoints[i].path, len)) {
                        bool post = method && streq(method, "POST");

                        ret->routing = endpoints[i].routed && post ? SHIM_ROUTING_BY_MODEL : SHIM_ROUTING_LOCAL;
                        ret->streams = endpoints[i].streams && post;
                        return;
                }
}

int shim_request_extract_model(const struct iovec *iov, size_t n_iov, char **ret) {
        json_tokener *tok;
        json_object *obj = NULL, *model;
        const char *name;
        int r;

        tok = json_tokener_new();
        if (!tok)
                return -ENOMEM;

        for (size_t i = 0; i < n_iov && !obj; i++) {
                const char *p = iov[i].iov_base;
                size_t left = iov[i].iov_len;

                /* json-c takes int lengths: feed big pieces in slices. */
                while (left > 0 && !obj) {
                        int n = left > INT_MAX / 2 ? INT_MAX / 2 : (int) left;

                        obj = json_tokener_parse_ex(tok, p, n);
                        if (!obj && json_tokener_get_error(tok) != json_tokener_continue)
                                goto invalid;
                        p += n;
                        left -= (size_t) n;
                }
        }
        json_tokener_free(tok);
        tok = NULL;

        if (!obj || !json_object_is_type(obj, json_type_object)) {
                r = -EINVAL;
                goto out;
        }
        if (!json_object_object_get_ex(obj, "model", &model) || !json_object_is_type(model, json_type_string)) {
                r = -ENOENT;
                goto out;
        }
        name = json_object_get_string(model);
        if (isempty(name)) {
                r = -ENOENT;
                goto out;
        }
        if (strlen(name) > SHIM_MODEL_NAME_MAX) {
                r = -ENAMETOOLONG;
                goto out;
        }
        *ret = strdup(name);
        r = *ret ? 0 : -ENOMEM;
out:
        json_object_put(obj);
        return r;

invalid:
        json_tokener_free(tok);
        return -EINVAL;
}

static const char *const hop_by_hop[] = {
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
};

/* Whether the comma-separated token list contains name (case-insensitive, OWS trimmed). */
static bool token_list_contains(const char *list, const char *name) {
        size_t n = strlen(name);

        for (const char *p = list; *p;) {
                const char *end;
                size_t len;

                while (*p == ' ' || *p == '\t' || *p == ',')
                        p++;
                end = p + strcspn(p, ",");
                len = (size_t) (end - p);
                while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
                        len--;
                if (len == n && len > 0 && strncasecmp(p, name, n) == 0)
                        return true;
                p = end;
        }
        return false;
}

bool shim_header_is_hop_by_hop(const char *name, const char *connection) {
        if (!name)
                return false;
        if (strncasecmp(name, "Proxy-", 6) == 0)
                return true;
        for (size_t i = 0; i < ELEMENTSOF(hop_by_hop); i++)
                if (strcasecmp(name, hop_by_hop[i]) == 0)
                        return true;
        return connection && token_list_contains(connection, name);
}

int shim_url_parse(const char *url, ShimUrl *ret) {
        ShimUrl u = {};
        const char *p, *host_end, *port_start = NULL, *path;
        size_t host_len;

        if (!url || strncasecmp(url, "http://", 7) != 0)
                return -EPROTONOSUPPORT;
        p = url + 7;
        path = p + strcspn(p, "/?#");

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

int shim_content_length_parse(const char *value, uint64_t *ret) {
        uint64_t n = 0;

        if (isempty(value))
                return -EINVAL;
        for (const char *p = value; *p; p++) {
                if (!isdigit((unsigned char) *p))
                        return -EINVAL;
                if (n > (UINT64_MAX - 9) / 10)
                        return -ERANGE;
                n = n * 10 + (uint64_t) (*p - '0');
        }
        *ret = n;
        return 0;
}

void shim_limit_body_message(const char *content_length, uint64_t max, char *buf, size_t size) {
        uint64_t n;

        if (shim_content_length_parse(content_length, &n) >= 0 && n > max)
                snprintf(buf, size, "request body too large: %" PRIu64 " bytes exceeds the limit of %" PRIu64 " bytes",
                         n, max);
        else
                snprintf(buf, size, "request body too large: it exceeds the limit of %" PRIu64 " bytes", max);
}

bool shim_limit_requests_reached(unsigned active, unsigned max) {
        return active >= max;
}
