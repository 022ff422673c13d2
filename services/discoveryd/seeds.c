/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Parses the seed list of the configuration strictly and with limits, and formats resolved
 * socket addresses the way Gossip1.Join and Discovery1 expect them. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>

#include "seeds.h"

static bool host_char_ok(char c) {
        return isalnum((unsigned char) c) || c == '-' || c == '.' || c == '_';
}

static bool v6_char_ok(char c) {
        return isxdigit((unsigned char) c) || c == ':' || c == '.';
}

static int port_parse(const char *s, uint16_t *ret) {
        unsigned long v = 0;

        if (isempty(s) || strlen(s) > 5)
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (!isdigit((unsigned char) *p))
                        return -EINVAL;
                v = v * 10 + (unsigned long) (*p - '0');
        }
        if (v == 0 || v > 65535)
                return -EINVAL;
        *ret = (uint16_t) v;
        return 0;
}

int seed_split(const char *s, char **ret_host, uint16_t *ret_port) {
        const char *colon, *host_start, *host_end;
        uint16_t port;
        int r;

        if (isempty(s) || strlen(s) > SEED_SPEC_MAX)
                return -EINVAL;

        if (s[0] == '[') {
                const char *close = strchr(s, ']');

                if (!close || close[1] != ':')
                        return -EINVAL;
                host_start = s + 1;
                host_end = close;
                colon = close + 1;
                if (host_end == host_start)
                        return -EINVAL;
                for (const char *p = host_start; p < host_end; p++) {
                        if (*p == '%') {
                                /* A zone (interface name) ends the address. */
                                if (p + 1 == host_end)
                                        return -EINVAL;
                                for (const char *z = p + 1; z < host_end; z++)
                                        if (!host_char_ok(*z))
                                                return -EINVAL;
                                break;
                        }
                        if (!v6_char_ok(*p))
                                return -EINVAL;
                }
                if (!memchr(host_start, ':', (size_t) (host_end - host_start)))
                        return -EINVAL;
        } else {
                colon = strrchr(s, ':');
                if (!colon || colon == s)
                        return -EINVAL;
                host_start = s;
                host_end = colon;
                for (const char *p = host_start; p < host_end; p++)
                        if (!host_char_ok(*p))
                                return -EINVAL; /* also refuses a bare IPv6 address */
        }
        if ((size_t) (host_end - host_start) > SEED_HOST_MAX)
                return -EINVAL;

        r = port_parse(colon + 1, &port);
        if (r < 0)
                return r;

        if (ret_host) {
                char *h = strndup(host_start, (size_t) (host_end - host_start));
                if (!h)
                        return -ENOMEM;
                *ret_host = h;
        }
        if (ret_port)
                *ret_port = port;
        return 0;
}

static bool host_is_numeric(const char *host) {
        struct in6_addr a6;
        struct in_addr a4;
        char buf[SEED_HOST_MAX + 1];
        const char *pct;

        if (inet_pton(AF_INET, host, &a4) == 1)
                return true;
        pct = strchr(host, '%');
        if (pct) {
                snprintf(buf, sizeof(buf), "%.*s", (int) (pct - host), host);
                host = buf;
        }
        return inet_pton(AF_INET6, host, &a6) == 1;
}

void seeds_free(Seed *seeds, size_t n) {
        for (size_t i = 0; seeds && i < n; i++) {
                free(seeds[i].spec);
                free(seeds[i].host);
        }
        free(seeds);
}

int seeds_parse(const char *list, Seed **ret, size_t *ret_n, size_t *ret_bad) {
        Seed *seeds = NULL;
        size_t n = 0, index = 0;
        const char *p = list ?: "";
        int r;

        seeds = calloc(SEEDS_MAX, sizeof(Seed));
        if (!seeds)
                return -ENOMEM;

        while (*p) {
                const char *end = strchrnul(p, ',');
                const char *a = p, *b = end;
                char spec[SEED_SPEC_MAX + 1];
                bool dup = false;
                Seed s = {};

                while (a < b && isspace((unsigned char) *a))
                        a++;
                while (b > a && isspace((unsigned char) b[-1]))
                        b--;
                p = *end ? end + 1 : end;
                if (a == b)
                        continue;
                index++;
                if ((size_t) (b - a) > SEED_SPEC_MAX) {
                        r = -EINVAL;
                        goto fail;
                }
                memcpy(spec, a, (size_t) (b - a));
                spec[b - a] = '\0';

                r = seed_split(spec, &s.host, &s.port);
                if (r < 0)
                        goto fail;
                for (size_t i = 0; i < n; i++)
                        if (streq(seeds[i].spec, spec))
                                dup = true;
                if (dup) {
                        free(s.host);
                        continue;
                }
                if (n >= SEEDS_MAX) {
                        free(s.host);
                        seeds_free(seeds, n);
                        return -E2BIG;
                }
                s.spec = strdup(spec);
                if (!s.spec) {
                        free(s.host);
                        seeds_free(seeds, n);
                        return -ENOMEM;
                }
                s.numeric = host_is_numeric(s.host);
                seeds[n++] = s;
        }

        *ret = seeds;
        *ret_n = n;
        return 0;

fail:
        if (ret_bad)
                *ret_bad = index - 1;
        seeds_free(seeds, n);
        return r;
}

int seed_format_sockaddr(const struct sockaddr *sa, socklen_t len, char *buf, size_t size) {
        char host[INET6_ADDRSTRLEN];
        int n;

        if (!sa)
                return -EINVAL;
        if (sa->sa_family == AF_INET && len >= (socklen_t) sizeof(struct sockaddr_in)) {
                const struct sockaddr_in *in = (const struct sockaddr_in *) sa;

                if (!inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host)))
                        return -EINVAL;
                n = snprintf(buf, size, "%s:%u", host, ntohs(in->sin_port));
        } else if (sa->sa_family == AF_INET6 && len >= (socklen_t) sizeof(struct sockaddr_in6)) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) sa;

                if (IN6_IS_ADDR_LINKLOCAL(&in6->sin6_addr))
                        return -EADDRNOTAVAIL;
                if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
                        if (!inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], host, sizeof(host)))
                                return -EINVAL;
                        n = snprintf(buf, size, "%s:%u", host, ntohs(in6->sin6_port));
                } else {
                        if (!inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host)))
                                return -EINVAL;
                        n = snprintf(buf, size, "[%s]:%u", host, ntohs(in6->sin6_port));
                }
        } else
                return -EAFNOSUPPORT;
        if (n < 0 || (size_t) n >= size)
                return -ENOBUFS;
        return 0;
}
