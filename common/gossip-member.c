/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reading a Gossip1 member (ssassua{ss}) or load (suut) from a bus message into borrowed strings,
 * bounded, publishing local metadata and load to Gossip1, and the URL of an address a member
 * advertises. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>

#include "bus-event.h"
#include "gossip-member.h"
#include "log.h"

int gossip_member_read(sd_bus_message *msg, GossipMember *g) {
        int r;

        *g = (GossipMember) {};
        r = sd_bus_message_enter_container(msg, 'r', "ssassua{ss}");
        if (r <= 0)
                return r;
        r = sd_bus_message_read(msg, "ss", &g->id, &g->name);
        if (r < 0)
                return r;
        r = bus_message_read_strv_bounded(msg, g->addresses, GOSSIP_MEMBER_ADDRESSES_MAX, &g->n_addresses, NULL);
        if (r < 0)
                return r;
        r = sd_bus_message_read(msg, "su", &g->state, &g->incarnation);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(msg, 'a', "{ss}");
        if (r < 0)
                return r;
        for (;;) {
                const char *k, *v;

                r = sd_bus_message_read(msg, "{ss}", &k, &v);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                if (g->n_meta < GOSSIP_MEMBER_META_MAX) {
                        g->meta_keys[g->n_meta] = k;
                        g->meta_values[g->n_meta++] = v;
                }
        }
        r = sd_bus_message_exit_container(msg);
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(msg);
        if (r < 0)
                return r;
        return 1;
}

int gossip_member_load_read(sd_bus_message *msg, GossipMemberLoad *ret) {
        GossipMemberLoad l = {};
        int r;

        r = sd_bus_message_read(msg, GOSSIP_LOAD_SIGNATURE, &l.id, &l.in_flight, &l.capacity, &l.age_usec);
        if (r <= 0)
                return r;
        *ret = l;
        return 1;
}

int gossip_member_signal_read(sd_bus_message *msg, GossipMember *g, bool *ret_removed) {
        const char *member = sd_bus_message_get_member(msg);
        int r;

        if (!member)
                return 0;
        if (streq(member, "MemberJoined") || streq(member, "MemberUpdated"))
                *ret_removed = false;
        else if (streq(member, "MemberLeft") || streq(member, "MemberFailed"))
                *ret_removed = true;
        else
                return 0;
        r = gossip_member_read(msg, g);
        if (r <= 0)
                return log_debug_errno(r ?: -EBADMSG, "Ignoring a malformed %s signal: %m", member);
        return 1;
}

const char *gossip_member_meta(const GossipMember *m, const char *key) {
        for (size_t i = 0; i < m->n_meta; i++)
                if (m->meta_keys[i] && streq(m->meta_keys[i], key))
                        return m->meta_values[i];
        return NULL;
}

static int set_local_metadata_reply_cb(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (e)
                log_debug("%s.SetLocalMetadata failed: %s", GOSSIP1_INTERFACE, e->message ?: e->name);
        return 0;
}

int gossip_set_local_metadata(sd_bus *bus, const char *key, const char *value) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &msg, GOSSIP1_BUS_NAME, GOSSIP1_OBJECT_PATH, GOSSIP1_INTERFACE,
                                           "SetLocalMetadata");
        if (r < 0)
                return r;
        (void) sd_bus_message_set_auto_start(msg, false);
        r = sd_bus_message_append(msg, "ss", key, value);
        if (r < 0)
                return r;
        return sd_bus_call_async(bus, NULL, msg, set_local_metadata_reply_cb, NULL, 0);
}

static int set_local_load_reply_cb(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);

        if (e)
                log_debug("%s.SetLocalLoad failed: %s", GOSSIP1_INTERFACE, e->message ?: e->name);
        return 0;
}

int gossip_set_local_load(sd_bus *bus, uint32_t in_flight, uint32_t capacity) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &msg, GOSSIP1_BUS_NAME, GOSSIP1_OBJECT_PATH, GOSSIP1_INTERFACE,
                                           "SetLocalLoad");
        if (r < 0)
                return r;
        (void) sd_bus_message_set_auto_start(msg, false);
        r = sd_bus_message_append(msg, "uu", in_flight, capacity);
        if (r < 0)
                return r;
        return sd_bus_call_async(bus, NULL, msg, set_local_load_reply_cb, NULL, 0);
}

/* Splits "HOST:PORT" or "[V6]:PORT" into host (no brackets) and port. */
static int split_host_port(const char *s, char *host, size_t host_size, uint16_t *ret_port) {
        const char *colon, *h;
        unsigned long port = 0;
        size_t n;

        if (isempty(s))
                return -EINVAL;
        if (s[0] == '[') {
                const char *end = strchr(s, ']');

                if (!end || end[1] != ':')
                        return -EINVAL;
                h = s + 1;
                n = (size_t) (end - h);
                colon = end + 1;
        } else {
                colon = strrchr(s, ':');
                if (!colon || memchr(s, ':', (size_t) (colon - s)))
                        return -EINVAL;     /* no port, or IPv6 without brackets */
                h = s;
                n = (size_t) (colon - s);
        }
        if (n >= host_size)
                return -EINVAL;
        memcpy(host, h, n);
        host[n] = '\0';

        if (colon[1] == '\0' || strlen(colon + 1) > 5)
                return -EINVAL;
        for (const char *p = colon + 1; *p; p++) {
                if (!isdigit((unsigned char) *p))
                        return -EINVAL;
                port = port * 10 + (unsigned long) (*p - '0');
        }
        if (port == 0 || port > 65535)
                return -EINVAL;
        *ret_port = (uint16_t) port;
        return 0;
}

/* AF_INET or AF_INET6 for a numeric host, -EINVAL otherwise; *ret_unspecified for 0.0.0.0/::. */
static int host_family(const char *host, bool *ret_unspecified) {
        uint8_t a[16];

        if (inet_pton(AF_INET, host, a) == 1) {
                *ret_unspecified = memcmp(a, (uint8_t[4]) {}, 4) == 0;
                return AF_INET;
        }
        if (inet_pton(AF_INET6, host, a) == 1) {
                *ret_unspecified = memcmp(a, (uint8_t[16]) {}, 16) == 0;
                return AF_INET6;
        }
        return -EINVAL;
}

int gossip_meta_url(const char *advertised, const char *gossip_addr, char *buf, size_t size) {
        char host[INET6_ADDRSTRLEN + 1], ghost[INET6_ADDRSTRLEN + 1];
        bool unspecified = true;
        uint16_t port, gport;
        int family, r;

        r = split_host_port(advertised, host, sizeof(host), &port);
        if (r < 0)
                return r;
        if (host[0] != '\0') {
                family = host_family(host, &unspecified);
                if (family < 0)
                        return -EINVAL;
        }
        if (unspecified) {
                /* "Same host as the gossip address" (the metadata contract). */
                if (split_host_port(gossip_addr, ghost, sizeof(ghost), &gport) < 0)
                        return -EINVAL;
                family = host_family(ghost, &unspecified);
                if (family < 0 || unspecified)
                        return -EINVAL;
                memcpy(host, ghost, sizeof(host));
        }
        r = snprintf(buf, size, strchr(host, ':') ? "http://[%s]:%u" : "http://%s:%u", host, port);
        if (r < 0 || (size_t) r >= size)
                return -ENOBUFS;
        return 0;
}

int gossip_get_members_async(sd_bus *bus, sd_bus_slot **slot, sd_bus_message_handler_t cb, void *userdata,
                             uint64_t timeout_usec) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        int r;

        *slot = sd_bus_slot_unref(*slot);
        r = sd_bus_message_new_method_call(bus, &msg, GOSSIP1_BUS_NAME, GOSSIP1_OBJECT_PATH,
                                           "org.freedesktop.DBus.Properties", "Get");
        if (r < 0)
                return r;
        (void) sd_bus_message_set_auto_start(msg, false);
        r = sd_bus_message_append(msg, "ss", GOSSIP1_INTERFACE, "Members");
        if (r < 0)
                return r;
        return sd_bus_call_async(bus, slot, msg, cb, userdata, timeout_usec);
}
