/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The peer table of mycelia-discoveryd: peers keyed by (source, name), each made of the
 * sightings that back it (one per mDNS interface/protocol, one per seed). Pure: diffs tell the
 * caller which PeerDiscovered/PeerVanished signals to send. */
#pragma once

#include "macro.h"

#define PEERS_MAX 1024
/* Sightings of one peer: an mDNS service seen on several interfaces and protocols. */
#define PEER_SIGHTINGS_MAX 8
/* Gossip addresses of one peer, all sightings together. */
#define PEER_GOSSIP_MAX 16
/* A DNS-SD instance name is at most 63 bytes; a seed name is the seed as written. */
#define PEER_NAME_MAX 270
#define PEER_ID_MAX 32
#define PEER_ADDR_MAX 80
#define PEER_KEY_MAX 32

typedef enum PeerSource {
        PEER_SOURCE_MDNS,
        PEER_SOURCE_SEED,
        _PEER_SOURCE_MAX,
        _PEER_SOURCE_INVALID = -EINVAL,
} PeerSource;

/* "mdns", "seed" */
const char *peer_source_to_string(PeerSource s);

/* One way a peer was found: key tells sightings of one peer apart ("ifindex/protocol" for
 * mDNS, "" for a seed). */
typedef struct PeerSighting {
        char key[PEER_KEY_MAX + 1];
        char *id;
        char *mesh;
        char **gossip;
        size_t n_gossip;
} PeerSighting;

/* What Discovery1 shows: the merge of the sightings. id and mesh of the newest sighting that
 * has them; gossip the union in sighting order, newest first, at most PEER_GOSSIP_MAX. */
typedef struct Peer {
        PeerSource source;
        char *name;
        char *id;
        char *mesh;
        char **gossip;
        size_t n_gossip;

        PeerSighting *sightings;        /* newest first */
        size_t n_sightings;
} Peer;

typedef enum PeerEvent {
        PEER_DISCOVERED,                /* new, or id, mesh or gossip changed */
        PEER_VANISHED,                  /* last sighting gone; p is valid during the call only */
} PeerEvent;

typedef void (*PeerEventFn)(PeerEvent event, const Peer *p, void *userdata);

typedef struct PeerTable {
        Peer *peers;
        size_t n_peers;
        size_t max_peers;
        PeerEventFn event_fn;
        void *userdata;
        uint64_t n_refused;             /* sightings refused because a limit was hit */
} PeerTable;

void peer_table_init(PeerTable *t, size_t max_peers, PeerEventFn fn, void *userdata);
void peer_table_clear(PeerTable *t);    /* no events */

Peer *peer_table_find(PeerTable *t, PeerSource source, const char *name);

/* Adds or replaces the sighting (source, name, key). gossip addresses are copied; empty ones
 * and duplicates skipped. Returns 1 when a PeerDiscovered went out, 0 when nothing changed,
 * -E2BIG when the table or the peer's sightings are full, -EINVAL for bad arguments (name
 * empty or too long, strings over their limits). */
int peer_table_put(PeerTable *t, PeerSource source, const char *name, const char *key, const char *id,
                   const char *mesh, char *const *gossip, size_t n_gossip);

/* Removes one sighting. Returns 1 when the peer vanished with it, 0 otherwise. */
int peer_table_drop(PeerTable *t, PeerSource source, const char *name, const char *key);

/* Removes every peer of a source (mDNS when avahi-daemon goes away). */
void peer_table_drop_source(PeerTable *t, PeerSource source);

/* One entry of a full picture for peer_table_sync(). */
typedef struct PeerSpec {
        const char *name;
        const char *id;
        const char *mesh;
        char *const *gossip;
        size_t n_gossip;
} PeerSpec;

/* Makes the peers of source exactly specs (one sighting with key "" each): new and changed
 * ones are discovered, missing ones vanish. Specs with no gossip address count as missing.
 * Returns the number of events or a negative errno (the table is left consistent). */
int peer_table_sync(PeerTable *t, PeerSource source, const PeerSpec *specs, size_t n_specs);
