/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* routerd's side of org.mycelia.Gossip1: peers from Members and the Member* signals, and their
 * loads from Loads and LoadsChanged, into the routing table; this node's models (and capacity)
 * published as gossip metadata, its load with SetLocalLoad. */
#pragma once

#include <event2/event.h>
#include <systemd/sd-bus.h>

#include "gossip-members.h"

/* This node's load goes to gossipd at most this often, and only when it changed. SetLocalLoad
 * costs no gossip traffic (the value rides in datagrams sent anyway), so this only bounds the
 * bus calls; it matches the probe interval. */
#define ROUTER_GOSSIP_LOAD_INTERVAL_USEC (200 * USEC_PER_MSEC)
/* A hung gossipd delays routerd's start by at most this (the name is requested after the first
 * Members read). */
#define ROUTER_GOSSIP_GET_TIMEOUT_USEC (2 * USEC_PER_SEC)
/* Members read from one Members reply; more are ignored (the table holds ROUTE_MAX_NODES). */
#define ROUTER_GOSSIP_MEMBERS_MAX 4096

typedef struct Manager Manager;

typedef struct RouterGossip {
        sd_bus_slot *owner_slot;
        sd_bus_slot *signal_slot;
        sd_bus_slot *get_slot;
        sd_bus_slot *loads_slot;        /* the read of Loads */
        bool present;                   /* gossipd owns its name (as far as we know) */
        struct event *load_timer;
        char *published_models;         /* last "models" value sent; NULL: none since it appeared */
        bool load_published;            /* SetLocalLoad sent since gossipd appeared */
        unsigned published_in_flight;
        unsigned published_capacity;
        bool capacity_published;        /* metadata "capacity" sent since gossipd appeared */
        unsigned published_meta_capacity;
        GossipLoads loads;              /* peers' loads as their datagrams told gossipd */
        uint64_t n_events;
        uint64_t n_syncs;
        uint64_t n_publishes;           /* SetLocalMetadata calls */
        uint64_t n_load_publishes;      /* SetLocalLoad calls */
        uint64_t n_loads;               /* peers' loads taken from Loads and LoadsChanged */
} RouterGossip;

int router_gossip_init(Manager *m);
void router_gossip_done(Manager *m);

/* Subscribes to Gossip1's signals and its name, reads Members. Needs m->bus. */
int router_gossip_start(Manager *m);

/* The bus is gone: drops the slots made on it and forgets that gossipd is there (everything is
 * read and published anew on the next connection). The table is kept. */
void router_gossip_bus_lost(Manager *m);

/* The local node's models or state changed: publish "models" if its value changed. */
void router_gossip_local_changed(Manager *m);

/* Applies one member (no bus needed; unit tests call these): adds, updates or removes its
 * RouteNode. removed: it came with MemberLeft/MemberFailed. The local node is skipped.
 * Returns 1 when it is in the table afterwards, 0 when not, negative errno. */
int router_gossip_apply(Manager *m, const GossipMember *g, bool removed);
/* After a full Members read: removes every peer whose id is not in seen. */
void router_gossip_sweep(Manager *m, char (*seen)[NODE_ID_LEN + 1], size_t n_seen);
/* Applies one peer's load from Loads or LoadsChanged (no bus needed): kept for the member
 * updates to come (it wins over metadata in_flight and capacity, which only nodes of earlier
 * versions publish), and set on the peer's RouteNode when it is in the table. The local node is
 * skipped. Returns 1 when the load changed, 0 when not, negative errno. */
int router_gossip_apply_load(Manager *m, const char *id, uint64_t in_flight, uint64_t capacity);
