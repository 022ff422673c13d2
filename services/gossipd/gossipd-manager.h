/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The Manager of mycelia-gossipd: owns the event loop and drives the SWIM core from it (timer,
 * sockets), joins what discoveryd finds, serves org.mycelia.Gossip1 and keeps the state file. */
#pragma once

#include <event2/event.h>
#include <systemd/sd-bus.h>

#include "bus-event.h"
#include "bus-names.h"
#include "config.h"
#include "daemon.h"
#include "gossipd-net.h"
#include "gossipd-state.h"
#include "mesh-keyring.h"
#include "swim.h"

/* Push-pulls waiting for one of the GOSSIP_PUSH_PULL_OUT_MAX slots; more are dropped (the
 * datagram announce still goes). */
#define GOSSIP_JOIN_PENDING_MAX 64U
/* Addresses given to Join() that are retried while this node is alone. */
#define GOSSIP_JOIN_REMEMBERED_MAX 64U
/* Addresses one Join() call may carry. */
#define GOSSIP_JOIN_ARGS_MAX 256U
/* Peers from discoveryd kept for the retries, and gossip addresses kept per peer. */
#define GOSSIP_DISCOVERY_PEERS_MAX 256U
#define GOSSIP_PEER_ADDRS_MAX 8U
/* While no other member is alive, every known address is tried this often. */
#define GOSSIP_ALONE_RETRY_USEC (5 * USEC_PER_SEC)
/* The state file is written at most this often (and at exit). */
#define GOSSIP_SAVE_INTERVAL_USEC (2 * USEC_PER_SEC)
/* The swim timer fires at least this often, a safety net should a deadline be missed. */
#define GOSSIP_TIMER_MAX_USEC (1 * USEC_PER_SEC)
/* After a restart with saved members, Gossip1 (and READY) waits at most this long for one of
 * them to answer a push-pull. */
#define GOSSIP_REJOIN_WAIT_USEC (3 * USEC_PER_SEC)
/* LoadsChanged goes out at most this often, with every member whose load changed since. */
#define GOSSIP_LOADS_EMIT_INTERVAL_USEC (200 * USEC_PER_MSEC)

typedef struct DiscoveryPeer {
        char *key;              /* the node id, or the name for a seed (id "") */
        char id[NODE_ID_LEN + 1];
        SwimAddr addrs[GOSSIP_PEER_ADDRS_MAX];
        size_t n_addrs;
} DiscoveryPeer;

/* The daemon's own counters, shown beside swim's in Counters. */
typedef struct ManagerCounters {
        uint64_t joins;                 /* addresses joined (Join, discovery, saved, retries) */
        uint64_t joins_dropped;         /* pending push-pull queue full */
        uint64_t signals_failed;        /* member signals that could not be sent */
} ManagerCounters;

typedef struct Manager {
        struct event_base *base;
        DaemonLoop *loop;
        const MyceliaConfig *config;
        char local_id[NODE_ID_LEN + 1];
        char *local_name;
        SwimAddr advertise;
        char advertise_string[SWIM_ADDR_STRING_MAX];

        Swim *swim;
        GossipNet *net;
        struct event *swim_timer;
        struct event *alone_timer;
        struct event *save_timer;
        struct event *loads_timer;
        struct event *rejoin_timer;
        /* swim_load_serial() when LoadsChanged last went out: members with a higher load_serial
         * changed since. */
        uint64_t loads_emitted_serial;
        usec_t loads_emitted_at;

        SwimAddr pending[GOSSIP_JOIN_PENDING_MAX];
        size_t n_pending;
        SwimAddr remembered[GOSSIP_JOIN_REMEMBERED_MAX];
        size_t n_remembered;
        DiscoveryPeer *peers;
        size_t n_peers;
        GossipState *saved;             /* from the state file at start; NULL when none */
        MeshKeyring keyring;            /* the keys gossip accepts, the primary (sealing) first */
        char *keyring_path;             /* STATE_DIR/keyring; NULL without a state dir */
        bool rejoining;                 /* the name waits for a saved member to answer */
        size_t rejoin_waiting;          /* push-pulls to saved members not yet failed */

        char *state_path;
        char *state_written;            /* text last written, to skip identical rewrites */
        bool state_dirty;
        bool state_warned;
        usec_t last_save;

        BusReconnect *bus_reconnect;    /* the connection, made again after a loss */
        BusEvent *bus_event;            /* borrowed from bus_reconnect; NULL while the bus is lost */
        sd_bus *bus;                    /* borrowed from bus_event; NULL while the bus is lost */
        sd_bus_slot *vtable_slot;
        sd_bus_slot *name_slot;
        sd_bus_slot *discovery_owner_slot;
        sd_bus_slot *discovery_signal_slot;
        sd_bus_slot *discovery_peers_slot;
        bool ready;
        char last_status[256];
        /* The address of another node with our id, as last logged and shown in IdConflict;
         * "" when there is none. */
        char id_conflict[SWIM_ADDR_STRING_MAX];

        bool left;
        int exit_code;
        ManagerCounters counters;
} Manager;

/* The event loop, configuration, key, sockets and the swim instance; no bus yet. Logs what
 * failed. */
int manager_new(const MyceliaConfig *config, Manager **ret);
/* Frees the event loop last. */
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Connects to the bus, serves Gossip1, requests the name (READY follows), follows discoveryd
 * and rejoins the saved members. */
int manager_start(Manager *m);
/* Runs the loop until SIGTERM/SIGINT or Leave() (0: then leaves gracefully, unless Leave() did
 * already, and writes the state file) or losing the name to another process (EXIT_FAILURE). A
 * lost bus is not the end: gossip goes on, and the connection, name and subscriptions are made
 * again when the bus is back. */
int manager_run(Manager *m);

/* Parses and joins "ADDR:PORT" strings; returns how many parsed. */
unsigned manager_join_strings(Manager *m, char *const *addrs, size_t n, bool remember);
/* Leave(): swim_leave(), flush the datagrams, write the state, end the loop with 0. */
void manager_leave(Manager *m);
/* SetLocalMetadata(): swim_set_local_meta()'s result. */
int manager_set_local_meta(Manager *m, const char *key, const char *value);
typedef enum ManagerKeyOp {
        MANAGER_KEY_INSTALL,
        MANAGER_KEY_USE,
        MANAGER_KEY_REMOVE,
} ManagerKeyOp;

/* InstallKey(), UseKey(), RemoveKey() (docs/key-rotation.md): the keyring changed, written to
 * STATE_DIR/keyring, used by gossip at once, KeysChanged emitted. Errors as mesh_keyring_*();
 * -EROFS without a state dir. Using the primary key again is 0. */
int manager_key_change(Manager *m, ManagerKeyOp op, const char *key_or_id);

/* SetLocalLoad(): swim_set_local_load()'s result; -ESHUTDOWN after Leave(). */
int manager_set_local_load(Manager *m, uint32_t in_flight, uint32_t capacity);

/* Call after every call into swim: sends its datagrams, emits its events, starts a due
 * push-pull and re-arms the timer. */
void manager_after_swim(Manager *m);

/* gossipd-bus.c */
int manager_bus_register(Manager *m);
int manager_bus_emit_member(Manager *m, const SwimEvent *event);
int manager_bus_emit_id_conflict(Manager *m);
int manager_bus_emit_keys_changed(Manager *m);
/* LoadsChanged with every member (not this node) whose load_serial is above since. */
int manager_bus_emit_loads(Manager *m, uint64_t since);
int manager_bus_follow_discovery(Manager *m);
int manager_bus_read_discovery_peers(Manager *m);
/* A peer from the PeerDiscovered signal or the Peers property: remembered for the retries and
 * joined unless it is an alive member already. */
void manager_discovery_peer(Manager *m, const char *id, const char *name, char *const *gossip, size_t n_gossip);
/* Forgets the discovery peers (before a fresh read of the Peers property). */
void manager_discovery_reset(Manager *m);
