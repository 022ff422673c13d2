/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mycelia-discoveryd's side of avahi-daemon: the client (reconnecting), the entry group that
 * publishes this node as _mycelia._tcp, and the browser and resolvers that find the others. */
#pragma once

#include <event2/event.h>

#include "macro.h"

#define DISCOVERY_SERVICE_TYPE "_mycelia._tcp"
/* TXT v=: the gossip protocol version; equal to SWIM_PROTOCOL_VERSION of gossipd/swim.h. */
#define DISCOVERY_PROTOCOL_VERSION 1
/* Browse results (interface, protocol, name) followed at once, each with a resolver. */
#define DISCOVERY_ITEMS_MAX 256
/* TXT entries of a resolved service looked at; more and the service is skipped. */
#define DISCOVERY_TXT_ENTRIES_MAX 64
/* DNS-SD instance names are at most 63 bytes. */
#define DISCOVERY_SERVICE_NAME_MAX 63
/* Reconnect to avahi-daemon after a failure: first delay, doubling up to the max. */
#define DISCOVERY_RECONNECT_MIN_USEC (1 * USEC_PER_SEC)
#define DISCOVERY_RECONNECT_MAX_USEC (30 * USEC_PER_SEC)
/* Resolvers that failed (timed out) are retried this often while the item is browsed. */
#define DISCOVERY_RESOLVE_RETRY_USEC (30 * USEC_PER_SEC)

typedef struct DiscoveryAvahi DiscoveryAvahi;

typedef struct DiscoveryAvahiOps {
        /* A service resolved: a sighting of peer name (key tells interface/protocol apart). */
        void (*found)(void *userdata, const char *name, const char *key, const char *id, const char *mesh,
                      const char *gossip);
        /* The browse result went away, or no longer resolves to a usable peer. */
        void (*lost)(void *userdata, const char *name, const char *key);
        /* Every browse result is gone (avahi-daemon went away). */
        void (*lost_all)(void *userdata);
} DiscoveryAvahiOps;

typedef struct DiscoveryAvahiStats {
        uint64_t n_resolved;
        uint64_t n_self;                /* our own service */
        uint64_t n_version_mismatch;    /* v= other than ours */
        uint64_t n_invalid;             /* TXT missing/bad, link-local only, ... */
        uint64_t n_items_refused;       /* over DISCOVERY_ITEMS_MAX */
        uint64_t n_collisions;
        uint64_t n_reconnects;
} DiscoveryAvahiStats;

/* own_id: this node's id, to skip our own service. Starts connecting at once (in the
 * background; avahi-daemon need not be there). */
int discovery_avahi_new(struct event_base *base, const char *own_id, const DiscoveryAvahiOps *ops, void *userdata,
                        DiscoveryAvahi **ret);
DiscoveryAvahi *discovery_avahi_free(DiscoveryAvahi *a);
DEFINE_TRIVIAL_CLEANUP_FUNC(DiscoveryAvahi *, discovery_avahi_free);

/* What to publish. Publishes (or republishes when anything changed) as soon as the client
 * runs and both ports are non-zero; a zero port withdraws the service. name is cut to 63
 * bytes at a UTF-8 boundary. */
int discovery_avahi_set_service(DiscoveryAvahi *a, const char *name, uint16_t mesh_port, uint16_t gossip_port);

bool discovery_avahi_is_published(DiscoveryAvahi *a);
/* The name published now (after collisions), or NULL. */
const char *discovery_avahi_get_published_name(DiscoveryAvahi *a);
const DiscoveryAvahiStats *discovery_avahi_get_stats(DiscoveryAvahi *a);

/* Pure helpers, exported for the unit tests. */
/* Cuts s to at most max bytes without splitting a UTF-8 sequence; returns a new string. */
char *discovery_service_name_truncate(const char *s, size_t max);
/* Parses TXT values: id (32 hex digits), v and g (decimal); -EINVAL when unusable. */
int discovery_txt_check(const char *id, const char *v, const char *g, unsigned *ret_version, uint16_t *ret_gossip_port);
