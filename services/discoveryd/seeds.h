/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The static seeds of [discovery] seeds ("HOST:PORT,[v6]:PORT,..."): parsing with limits and
 * formatting of resolved addresses. Pure: no I/O, no name resolution. */
#pragma once

#include <sys/socket.h>

#include "macro.h"

/* Seeds accepted in the configuration. */
#define SEEDS_MAX 64
/* Longest host name (RFC 1035) or bracketed IPv6 literal with a zone. */
#define SEED_HOST_MAX 253
/* Longest "HOST:PORT" as written, so the seed string also fits a peer name. */
#define SEED_SPEC_MAX (SEED_HOST_MAX + 2 + 1 + 5)
/* "[ipv6%zone]:65535" */
#define SEED_ADDR_STRING_MAX 80

typedef struct Seed {
        char *spec;             /* as written, whitespace trimmed: the peer's name */
        char *host;             /* without brackets */
        uint16_t port;
        bool numeric;           /* an IPv4 or IPv6 literal: resolving it never blocks */
} Seed;

/* Splits "HOST:PORT" or "[V6]:PORT" (port 1..65535, host non-empty, no bare IPv6). On success
 * *ret_host is a new string (may be NULL when not wanted). */
int seed_split(const char *s, char **ret_host, uint16_t *ret_port);

/* Parses a comma-separated list; blanks around entries and empty entries are ignored,
 * duplicates dropped. -EINVAL names the first bad entry's index in *ret_bad (if not NULL);
 * -E2BIG for more than SEEDS_MAX entries. */
int seeds_parse(const char *list, Seed **ret, size_t *ret_n, size_t *ret_bad);
void seeds_free(Seed *seeds, size_t n);

/* "10.0.0.1:11436", "[fd00::1]:11436". IPv6 link-local addresses are refused (-EADDRNOTAVAIL):
 * gossip addresses carry no zone. */
int seed_format_sockaddr(const struct sockaddr *sa, socklen_t len, char *buf, size_t size);
