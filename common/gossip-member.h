/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The client side of org.mycelia.Gossip1 that other daemons share: a member, (ssassua{ss}), and a
 * member's load, (suut), read from a bus message without copying (routerd, discoveryd and
 * myceliactl read Members, LocalNode, Loads and the signals), and publishing this node's metadata
 * (routerd and shimd) and load (routerd). */
#pragma once

#include <systemd/sd-bus.h>

#include "bus-names.h"
#include "macro.h"

#define GOSSIP_MEMBER_SIGNATURE "(ssassua{ss})"
#define GOSSIP_LOAD_SIGNATURE "(suut)"
/* Addresses and metadata entries read from one member; more are ignored. */
#define GOSSIP_MEMBER_ADDRESSES_MAX 16
#define GOSSIP_MEMBER_META_MAX 64

/* A member as Gossip1 describes it: (id, name, addresses, state, incarnation, metadata).
 * Borrowed strings. */
typedef struct GossipMember {
        const char *id;
        const char *name;
        const char *addresses[GOSSIP_MEMBER_ADDRESSES_MAX];
        size_t n_addresses;
        const char *state;
        uint32_t incarnation;
        const char *meta_keys[GOSSIP_MEMBER_META_MAX];
        const char *meta_values[GOSSIP_MEMBER_META_MAX];
        size_t n_meta;
} GossipMember;

/* Reads one member at the read position of msg; the strings stay in msg. Returns 1, or 0 at
 * the end of an enclosing array, or negative errno. Addresses and metadata beyond the limits
 * above are skipped. */
int gossip_member_read(sd_bus_message *msg, GossipMember *g);

/* Reads a Gossip1 Member* signal: 1 with *g and *ret_removed (MemberLeft or MemberFailed: the
 * member is gone; MemberJoined or MemberUpdated: it is there), 0 for another signal, negative
 * errno (logged at debug) for a malformed one. */
int gossip_member_signal_read(sd_bus_message *msg, GossipMember *g, bool *ret_removed);

/* A member's load as Loads and LoadsChanged carry it: what the member itself last told this
 * node's gossipd (not versioned gossip). Borrowed id. */
typedef struct GossipMemberLoad {
        const char *id;
        uint32_t in_flight;
        uint32_t capacity;
        uint64_t age_usec;      /* how long before the message was sent gossipd heard it */
} GossipMemberLoad;

/* Reads one (suut) at the read position of msg. Returns 1, 0 at the end of an enclosing array,
 * or negative errno. */
int gossip_member_load_read(sd_bus_message *msg, GossipMemberLoad *ret);

/* The value of metadata key, NULL when absent. */
const char *gossip_member_meta(const GossipMember *m, const char *key);

/* Gossip1.SetLocalMetadata(key, value), asynchronously and without starting gossipd (systemd or
 * the launcher does that). A failure is only logged at debug: the publisher sends everything
 * again when gossipd (re)appears on the bus. The caller re-arms its BusEvent. */
int gossip_set_local_metadata(sd_bus *bus, const char *key, const char *value);
/* Gossip1.SetLocalLoad(in_flight, capacity), the same way. */
int gossip_set_local_load(sd_bus *bus, uint32_t in_flight, uint32_t capacity);

/* "http://HOST:PORT" from an address a member advertises in its metadata ("mesh" for its shim's
 * mesh API, "shard" for its shardd), "ADDR:PORT"; an unspecified host (0.0.0.0, ::, or empty) is
 * replaced by the host of gossip_addr ("ADDR:PORT", may be NULL). Hosts must be numeric (no DNS
 * from what a peer says). -EINVAL when unusable, -ENOBUFS when buf is too small. */
int gossip_meta_url(const char *advertised, const char *gossip_addr, char *buf, size_t size);

/* Asks for Gossip1.Members (Properties.Get), asynchronously and without starting gossipd: cb gets
 * the reply (or its error); *slot holds the call. The caller re-arms its BusEvent. */
int gossip_get_members_async(sd_bus *bus, sd_bus_slot **slot, sd_bus_message_handler_t cb, void *userdata,
                             uint64_t timeout_usec);
