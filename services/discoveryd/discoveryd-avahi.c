/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Talks to avahi-daemon through avahi-client on the daemon's libevent loop: publishes this node,
 * browses and resolves the others, and reconnects whenever avahi-daemon goes away. */
#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <stdio.h>

#include <avahi-client/client.h>
#include <avahi-client/lookup.h>
#include <avahi-client/publish.h>
#include <avahi-common/alternative.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>

#include "avahi-event.h"
#include "discoveryd-avahi.h"
#include "log.h"

typedef struct BrowseItem {
        DiscoveryAvahi *owner;
        AvahiIfIndex interface;
        AvahiProtocol protocol;
        char *name;
        char *domain;
        char key[32];                   /* "IFINDEX/PROTO": the sighting key */
        AvahiServiceResolver *resolver;
        bool reported;                  /* a sighting went to ops->found */
        struct BrowseItem *next;
} BrowseItem;

struct DiscoveryAvahi {
        struct event_base *base;
        AvahiEvent *poll;
        AvahiClient *client;
        AvahiEntryGroup *group;
        AvahiServiceBrowser *browser;
        bool browser_failed;
        BrowseItem *items;
        size_t n_items;

        char own_id[33];
        const DiscoveryAvahiOps *ops;
        void *userdata;

        char *name;                     /* wanted name (node name, cut) */
        char *published_name;           /* name after collisions; reset when name changes */
        uint16_t mesh_port, gossip_port;
        bool published;
        bool group_dirty;               /* what to publish changed since the last commit */

        struct event *reconnect_timer;
        usec_t reconnect_delay;
        bool client_failed;
        struct event *retry_timer;      /* browser re-creation, failed resolvers, group failures */
        bool logged_unavailable;

        DiscoveryAvahiStats stats;
};

static void tv_from_usec(struct timeval *tv, usec_t u) {
        tv->tv_sec = (time_t) (u / USEC_PER_SEC);
        tv->tv_usec = (suseconds_t) (u % USEC_PER_SEC);
}

char *discovery_service_name_truncate(const char *s, size_t max) {
        size_t n = strlen(strempty(s));

        if (n > max) {
                n = max;
                /* Step back over continuation bytes (10xxxxxx) to a sequence start. */
                while (n > 0 && ((unsigned char) s[n] & 0xC0) == 0x80)
                        n--;
        }
        return strndup(strempty(s), n);
}

static int parse_uint(const char *s, unsigned long max, unsigned long *ret) {
        unsigned long v = 0;

        if (isempty(s) || strlen(s) > 10)
                return -EINVAL;
        for (const char *p = s; *p; p++) {
                if (!isdigit((unsigned char) *p))
                        return -EINVAL;
                v = v * 10 + (unsigned long) (*p - '0');
        }
        if (v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

int discovery_txt_check(const char *id, const char *v, const char *g, unsigned *ret_version, uint16_t *ret_gossip_port) {
        unsigned long version, port;

        if (!id || strlen(id) != 32)
                return -EINVAL;
        for (const char *p = id; *p; p++)
                if (!isxdigit((unsigned char) *p))
                        return -EINVAL;
        if (parse_uint(v, UINT32_MAX, &version) < 0)
                return -EINVAL;
        if (parse_uint(g, 65535, &port) < 0 || port == 0)
                return -EINVAL;
        *ret_version = (unsigned) version;
        *ret_gossip_port = (uint16_t) port;
        return 0;
}

static void discovery_avahi_schedule_retry(DiscoveryAvahi *a) {
        struct timeval tv;

        if (evtimer_pending(a->retry_timer, NULL))
                return;
        tv_from_usec(&tv, DISCOVERY_RESOLVE_RETRY_USEC);
        (void) evtimer_add(a->retry_timer, &tv);
}

/* ---- publishing ---- */

static void discovery_avahi_publish(DiscoveryAvahi *a);

static void group_cb(AvahiEntryGroup *g, AvahiEntryGroupState state, void *userdata) {
        DiscoveryAvahi *a = userdata;

        if (g != a->group && a->group)
                return;
        switch (state) {
        case AVAHI_ENTRY_GROUP_ESTABLISHED:
                if (!a->published)
                        log_info("Published %s as '%s' (mesh port %u, gossip port %u).", DISCOVERY_SERVICE_TYPE,
                                 a->published_name, a->mesh_port, a->gossip_port);
                a->published = true;
                break;
        case AVAHI_ENTRY_GROUP_COLLISION: {
                char *alt = avahi_alternative_service_name(a->published_name);

                a->stats.n_collisions++;
                a->published = false;
                if (!alt) {
                        log_oom();
                        return;
                }
                log_notice("Service name '%s' is taken on the network; trying '%s'.", a->published_name, alt);
                free(a->published_name);
                a->published_name = strdup(alt);
                avahi_free(alt);
                if (!a->published_name) {
                        log_oom();
                        return;
                }
                a->group_dirty = true;
                discovery_avahi_publish(a);
                break;
        }
        case AVAHI_ENTRY_GROUP_FAILURE:
                log_warning("Publishing on mDNS failed: %s; retrying later.",
                            avahi_strerror(avahi_client_errno(avahi_entry_group_get_client(g))));
                a->published = false;
                a->group_dirty = true;
                discovery_avahi_schedule_retry(a);
                break;
        case AVAHI_ENTRY_GROUP_UNCOMMITED:
        case AVAHI_ENTRY_GROUP_REGISTERING:
                break;
        }
}

/* Adds the service to the (empty) group and commits it. Collisions on add pick the next
 * alternative name, a bounded number of times. */
static void discovery_avahi_publish(DiscoveryAvahi *a) {
        char id[64], v[32], g[32];
        int r;

        if (!a->client || a->client_failed || avahi_client_get_state(a->client) != AVAHI_CLIENT_S_RUNNING)
                return;
        if (!a->group_dirty && a->group && !avahi_entry_group_is_empty(a->group))
                return;

        if (a->group)
                (void) avahi_entry_group_reset(a->group);
        a->published = false;
        a->group_dirty = false;
        if (a->mesh_port == 0 || a->gossip_port == 0 || isempty(a->name))
                return;         /* not yet known: withdrawn */

        if (!a->group) {
                a->group = avahi_entry_group_new(a->client, group_cb, a);
                if (!a->group) {
                        log_warning("Failed to create an Avahi entry group: %s",
                                    avahi_strerror(avahi_client_errno(a->client)));
                        a->group_dirty = true;
                        discovery_avahi_schedule_retry(a);
                        return;
                }
        }
        if (!a->published_name) {
                a->published_name = strdup(a->name);
                if (!a->published_name) {
                        log_oom();
                        return;
                }
        }

        snprintf(id, sizeof(id), "id=%s", a->own_id);
        snprintf(v, sizeof(v), "v=%u", DISCOVERY_PROTOCOL_VERSION);
        snprintf(g, sizeof(g), "g=%u", a->gossip_port);
        for (unsigned attempt = 0;; attempt++) {
                r = avahi_entry_group_add_service(a->group, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC, 0, a->published_name,
                                                  DISCOVERY_SERVICE_TYPE, NULL, NULL, a->mesh_port, id, v, g, NULL);
                if (r != AVAHI_ERR_COLLISION || attempt >= 32)
                        break;
                char *alt = avahi_alternative_service_name(a->published_name);
                if (!alt) {
                        log_oom();
                        return;
                }
                a->stats.n_collisions++;
                log_notice("Service name '%s' is taken; trying '%s'.", a->published_name, alt);
                free(a->published_name);
                a->published_name = strdup(alt);
                avahi_free(alt);
                if (!a->published_name) {
                        log_oom();
                        return;
                }
        }
        if (r < 0) {
                log_warning("Failed to add the %s service '%s': %s", DISCOVERY_SERVICE_TYPE, a->published_name,
                            avahi_strerror(r));
                a->group_dirty = true;
                discovery_avahi_schedule_retry(a);
                return;
        }
        r = avahi_entry_group_commit(a->group);
        if (r < 0) {
                log_warning("Failed to commit the Avahi entry group: %s", avahi_strerror(r));
                a->group_dirty = true;
                discovery_avahi_schedule_retry(a);
                return;
        }
        log_debug("Publishing '%s' (%s, port %u, %s %s %s).", a->published_name, DISCOVERY_SERVICE_TYPE,
                  a->mesh_port, id, v, g);
}

int discovery_avahi_set_service(DiscoveryAvahi *a, const char *name, uint16_t mesh_port, uint16_t gossip_port) {
        _cleanup_free_ char *cut = NULL;
        bool name_changed;

        cut = discovery_service_name_truncate(name, DISCOVERY_SERVICE_NAME_MAX);
        if (!cut)
                return -ENOMEM;
        name_changed = !a->name || !streq(a->name, cut);
        if (!name_changed && a->mesh_port == mesh_port && a->gossip_port == gossip_port)
                return 0;
        if (name_changed) {
                free(a->name);
                a->name = TAKE_PTR(cut);
                free(a->published_name);
                a->published_name = NULL;
        }
        a->mesh_port = mesh_port;
        a->gossip_port = gossip_port;
        a->group_dirty = true;
        discovery_avahi_publish(a);
        return 1;
}

/* ---- browsing ---- */

static BrowseItem *browse_item_free(BrowseItem *i) {
        if (!i)
                return NULL;
        if (i->resolver)
                avahi_service_resolver_free(i->resolver);
        free(i->name);
        free(i->domain);
        free(i);
        return NULL;
}

static void browse_item_unlink(DiscoveryAvahi *a, BrowseItem *item) {
        for (BrowseItem **p = &a->items; *p; p = &(*p)->next)
                if (*p == item) {
                        *p = item->next;
                        a->n_items--;
                        return;
                }
}

static BrowseItem *browse_item_find(DiscoveryAvahi *a, AvahiIfIndex interface, AvahiProtocol protocol,
                                    const char *name, const char *domain) {
        for (BrowseItem *i = a->items; i; i = i->next)
                if (i->interface == interface && i->protocol == protocol && streq(i->name, name) &&
                    streq(i->domain, domain))
                        return i;
        return NULL;
}

static void browse_item_lost(BrowseItem *item) {
        DiscoveryAvahi *a = item->owner;

        if (!item->reported)
                return;
        item->reported = false;
        a->ops->lost(a->userdata, item->name, item->key);
}

static bool address_usable(const AvahiAddress *address) {
        if (address->proto == AVAHI_PROTO_INET6) {
                const uint8_t *b = address->data.ipv6.address;

                /* fe80::/10: gossip addresses carry no zone, so a link-local one is useless. */
                if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
                        return false;
        }
        return address->proto == AVAHI_PROTO_INET || address->proto == AVAHI_PROTO_INET6;
}

static int format_addr_port(const AvahiAddress *address, uint16_t port, char *buf, size_t size) {
        char host[AVAHI_ADDRESS_STR_MAX];
        int n;

        if (!avahi_address_snprint(host, sizeof(host), address))
                return -EINVAL;
        if (address->proto == AVAHI_PROTO_INET6)
                n = snprintf(buf, size, "[%s]:%u", host, port);
        else
                n = snprintf(buf, size, "%s:%u", host, port);
        return n < 0 || (size_t) n >= size ? -ENOBUFS : 0;
}

static char *txt_get(AvahiStringList *txt, const char *key) {
        AvahiStringList *e = avahi_string_list_find(txt, key);
        char *k = NULL, *v = NULL;

        if (!e || avahi_string_list_get_pair(e, &k, &v, NULL) < 0)
                return NULL;
        avahi_free(k);
        return v;       /* avahi_free() it; NULL for a key without value */
}

static void resolve_cb(AvahiServiceResolver *r, AvahiIfIndex interface, AvahiProtocol protocol,
                       AvahiResolverEvent event, const char *name, const char *type, const char *domain,
                       const char *host_name, const AvahiAddress *address, uint16_t port, AvahiStringList *txt,
                       AvahiLookupResultFlags flags, void *userdata) {
        BrowseItem *item = userdata;
        DiscoveryAvahi *a = item->owner;
        char *id = NULL, *v = NULL, *g = NULL;
        char mesh[96], gossip[96];
        uint16_t gossip_port;
        unsigned version;

        if (event == AVAHI_RESOLVER_FAILURE) {
                log_debug("Resolving '%s' on interface %d failed: %s; retrying later.", item->name, interface,
                          avahi_strerror(avahi_client_errno(a->client)));
                /* Freeing the resolver from its own callback is what avahi's examples do. */
                avahi_service_resolver_free(item->resolver);
                item->resolver = NULL;
                discovery_avahi_schedule_retry(a);
                return;
        }

        a->stats.n_resolved++;
        if (avahi_string_list_length(txt) > DISCOVERY_TXT_ENTRIES_MAX) {
                a->stats.n_invalid++;
                log_debug("'%s': %u TXT entries, over the limit; skipped.", item->name,
                          avahi_string_list_length(txt));
                browse_item_lost(item);
                return;
        }
        id = txt_get(txt, "id");
        v = txt_get(txt, "v");
        g = txt_get(txt, "g");
        if (discovery_txt_check(id, v, g, &version, &gossip_port) < 0) {
                a->stats.n_invalid++;
                log_debug("'%s' has no usable id=, v=, g= TXT records; skipped.", item->name);
                browse_item_lost(item);
                goto finish;
        }
        if (strcaseeq(id, a->own_id)) {
                a->stats.n_self++;
                log_debug("'%s' on interface %d is this node; skipped.", item->name, interface);
                /* Records can mix while a name changes hands (a collision): an earlier answer
                 * for this name may have looked like a peer. */
                browse_item_lost(item);
                goto finish;
        }
        if (version != DISCOVERY_PROTOCOL_VERSION) {
                a->stats.n_version_mismatch++;
                log_notice("Peer '%s' (%s) speaks protocol version %u, this node %u; skipped.", item->name, id,
                           version, DISCOVERY_PROTOCOL_VERSION);
                browse_item_lost(item);
                goto finish;
        }
        if (!address_usable(address) || port == 0) {
                a->stats.n_invalid++;
                log_debug("'%s' resolved to an unusable (link-local?) address or port 0; skipped.", item->name);
                browse_item_lost(item);
                goto finish;
        }
        if (format_addr_port(address, port, mesh, sizeof(mesh)) < 0 ||
            format_addr_port(address, gossip_port, gossip, sizeof(gossip)) < 0) {
                a->stats.n_invalid++;
                goto finish;
        }
        for (char *p = id; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        item->reported = true;
        a->ops->found(a->userdata, item->name, item->key, id, mesh, gossip);

finish:
        avahi_free(id);
        avahi_free(v);
        avahi_free(g);
}

static void browse_item_resolve(BrowseItem *item) {
        DiscoveryAvahi *a = item->owner;

        if (item->resolver)
                return;
        /* Kept open: avahi calls again whenever the SRV, TXT or address records change. The
         * address family follows the protocol it was browsed on. */
        item->resolver = avahi_service_resolver_new(a->client, item->interface, item->protocol, item->name,
                                                    DISCOVERY_SERVICE_TYPE, item->domain, item->protocol, 0,
                                                    resolve_cb, item);
        if (!item->resolver) {
                log_debug("Failed to start resolving '%s': %s", item->name,
                          avahi_strerror(avahi_client_errno(a->client)));
                discovery_avahi_schedule_retry(a);
        }
}

static void browse_cb(AvahiServiceBrowser *b, AvahiIfIndex interface, AvahiProtocol protocol,
                      AvahiBrowserEvent event, const char *name, const char *type, const char *domain,
                      AvahiLookupResultFlags flags, void *userdata) {
        DiscoveryAvahi *a = userdata;
        BrowseItem *item;

        switch (event) {
        case AVAHI_BROWSER_NEW:
                if (isempty(name) || strlen(name) > DISCOVERY_SERVICE_NAME_MAX || isempty(domain) ||
                    strlen(domain) > 255)
                        return;
                if (browse_item_find(a, interface, protocol, name, domain))
                        return;
                if (a->n_items >= DISCOVERY_ITEMS_MAX) {
                        if (a->stats.n_items_refused++ == 0)
                                log_warning("More than %u %s services on the network; ignoring the rest.",
                                            DISCOVERY_ITEMS_MAX, DISCOVERY_SERVICE_TYPE);
                        return;
                }
                item = calloc(1, sizeof(*item));
                if (!item) {
                        log_oom();
                        return;
                }
                item->owner = a;
                item->interface = interface;
                item->protocol = protocol;
                item->name = strdup(name);
                item->domain = strdup(domain);
                if (!item->name || !item->domain) {
                        browse_item_free(item);
                        log_oom();
                        return;
                }
                snprintf(item->key, sizeof(item->key), "%d/%d", interface, protocol);
                item->next = a->items;
                a->items = item;
                a->n_items++;
                log_debug("Browsed '%s' on interface %d protocol %d.", name, interface, protocol);
                browse_item_resolve(item);
                break;

        case AVAHI_BROWSER_REMOVE:
                item = browse_item_find(a, interface, protocol, strempty(name), strempty(domain));
                if (!item)
                        return;
                log_debug("'%s' on interface %d protocol %d went away.", name, interface, protocol);
                browse_item_unlink(a, item);
                browse_item_lost(item);
                browse_item_free(item);
                break;

        case AVAHI_BROWSER_FAILURE:
                log_warning("Browsing %s failed: %s; retrying later.", DISCOVERY_SERVICE_TYPE,
                            avahi_strerror(avahi_client_errno(a->client)));
                /* Freed outside this callback, by the retry timer. */
                a->browser_failed = true;
                discovery_avahi_schedule_retry(a);
                break;

        case AVAHI_BROWSER_ALL_FOR_NOW:
        case AVAHI_BROWSER_CACHE_EXHAUSTED:
                break;
        }
}

static void discovery_avahi_drop_browse(DiscoveryAvahi *a, bool report) {
        bool any = false;

        while (a->items) {
                BrowseItem *i = a->items;

                a->items = i->next;
                a->n_items--;
                any = any || i->reported;
                i->reported = false;
                browse_item_free(i);
        }
        if (a->browser) {
                avahi_service_browser_free(a->browser);
                a->browser = NULL;
        }
        a->browser_failed = false;
        if (report && any)
                a->ops->lost_all(a->userdata);
}

static void discovery_avahi_browse(DiscoveryAvahi *a) {
        if (a->browser || !a->client || a->client_failed)
                return;
        a->browser = avahi_service_browser_new(a->client, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC,
                                               DISCOVERY_SERVICE_TYPE, NULL, 0, browse_cb, a);
        if (!a->browser) {
                log_warning("Failed to browse %s: %s; retrying later.", DISCOVERY_SERVICE_TYPE,
                            avahi_strerror(avahi_client_errno(a->client)));
                discovery_avahi_schedule_retry(a);
        }
}

static void retry_cb(evutil_socket_t fd, short what, void *userdata) {
        DiscoveryAvahi *a = userdata;

        if (!a->client || a->client_failed)
                return;
        if (a->browser_failed) {
                /* A failed browser stays failed: start over, and its results with it. */
                discovery_avahi_drop_browse(a, true);
                a->browser_failed = false;
        }
        discovery_avahi_browse(a);
        for (BrowseItem *i = a->items; i; i = i->next)
                browse_item_resolve(i);
        if (a->group_dirty)
                discovery_avahi_publish(a);
}

/* ---- the client ---- */

static void discovery_avahi_connect(DiscoveryAvahi *a);

static void client_cb(AvahiClient *c, AvahiClientState state, void *userdata) {
        DiscoveryAvahi *a = userdata;
        struct timeval tv;

        /* With AVAHI_CLIENT_NO_FAIL this runs inside avahi_client_new(), before it returns. */
        if (!a->client)
                a->client = c;

        switch (state) {
        case AVAHI_CLIENT_S_RUNNING:
                log_info("Connected to avahi-daemon (host name %s).", strempty(avahi_client_get_host_name(c)));
                a->reconnect_delay = 0;
                a->logged_unavailable = false;
                a->group_dirty = true;
                discovery_avahi_browse(a);
                discovery_avahi_publish(a);
                break;
        case AVAHI_CLIENT_S_REGISTERING:
        case AVAHI_CLIENT_S_COLLISION:
                /* The host name is (re)registering: our records go until it is done. */
                if (a->group)
                        (void) avahi_entry_group_reset(a->group);
                a->published = false;
                a->group_dirty = true;
                discovery_avahi_browse(a);
                break;
        case AVAHI_CLIENT_CONNECTING:
                if (!a->logged_unavailable)
                        log_notice("avahi-daemon is not running; waiting for it (mDNS off until then).");
                a->logged_unavailable = true;
                a->published = false;
                break;
        case AVAHI_CLIENT_FAILURE:
                log_warning("Lost avahi-daemon: %s; reconnecting.", avahi_strerror(avahi_client_errno(c)));
                a->published = false;
                a->client_failed = true;
                /* The client is freed and made again from the timer, outside its callback. */
                a->reconnect_delay = a->reconnect_delay == 0 ? DISCOVERY_RECONNECT_MIN_USEC
                                                             : MIN(a->reconnect_delay * 2, DISCOVERY_RECONNECT_MAX_USEC);
                tv_from_usec(&tv, a->reconnect_delay);
                (void) evtimer_add(a->reconnect_timer, &tv);
                break;
        }
}

static void discovery_avahi_disconnect(DiscoveryAvahi *a, bool report) {
        discovery_avahi_drop_browse(a, report);
        if (a->group) {
                avahi_entry_group_free(a->group);
                a->group = NULL;
        }
        if (a->client) {
                avahi_client_free(a->client);
                a->client = NULL;
        }
        a->published = false;
        a->client_failed = false;
}

static void discovery_avahi_connect(DiscoveryAvahi *a) {
        AvahiClient *c;
        struct timeval tv;
        int error = 0;

        assert(!a->client);
        /* NO_FAIL: no avahi-daemon yet is CONNECTING, not an error. Only a missing bus fails. */
        c = avahi_client_new(avahi_event_get_poll(a->poll), AVAHI_CLIENT_NO_FAIL, client_cb, a, &error);
        if (!c) {
                a->client = NULL;
                a->client_failed = false;
                if (!a->logged_unavailable)
                        log_notice("Cannot reach avahi-daemon's bus: %s; mDNS off, retrying.", avahi_strerror(error));
                else
                        log_debug("Still cannot reach avahi-daemon's bus: %s", avahi_strerror(error));
                a->logged_unavailable = true;
                a->reconnect_delay = a->reconnect_delay == 0 ? DISCOVERY_RECONNECT_MIN_USEC
                                                             : MIN(a->reconnect_delay * 2, DISCOVERY_RECONNECT_MAX_USEC);
                tv_from_usec(&tv, a->reconnect_delay);
                (void) evtimer_add(a->reconnect_timer, &tv);
                return;
        }
        a->client = c;
}

static void reconnect_cb(evutil_socket_t fd, short what, void *userdata) {
        DiscoveryAvahi *a = userdata;

        if (a->client) {
                a->stats.n_reconnects++;
                discovery_avahi_disconnect(a, true);
        }
        discovery_avahi_connect(a);
}

int discovery_avahi_new(struct event_base *base, const char *own_id, const DiscoveryAvahiOps *ops, void *userdata,
                        DiscoveryAvahi **ret) {
        _cleanup_(discovery_avahi_freep) DiscoveryAvahi *a = NULL;
        int r;

        assert(base && own_id && ops && ops->found && ops->lost && ops->lost_all && ret);

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->base = base;
        a->ops = ops;
        a->userdata = userdata;
        snprintf(a->own_id, sizeof(a->own_id), "%s", own_id);
        r = avahi_event_new(base, &a->poll);
        if (r < 0)
                return r;
        a->reconnect_timer = evtimer_new(base, reconnect_cb, a);
        a->retry_timer = evtimer_new(base, retry_cb, a);
        if (!a->reconnect_timer || !a->retry_timer)
                return -ENOMEM;

        discovery_avahi_connect(a);
        *ret = TAKE_PTR(a);
        return 0;
}

DiscoveryAvahi *discovery_avahi_free(DiscoveryAvahi *a) {
        if (!a)
                return NULL;
        discovery_avahi_disconnect(a, false);
        if (a->reconnect_timer)
                event_free(a->reconnect_timer);
        if (a->retry_timer)
                event_free(a->retry_timer);
        avahi_event_free(a->poll);
        free(a->name);
        free(a->published_name);
        free(a);
        return NULL;
}

bool discovery_avahi_is_published(DiscoveryAvahi *a) {
        return a && a->published;
}

const char *discovery_avahi_get_published_name(DiscoveryAvahi *a) {
        return a && a->published ? a->published_name : NULL;
}

const DiscoveryAvahiStats *discovery_avahi_get_stats(DiscoveryAvahi *a) {
        return &a->stats;
}
